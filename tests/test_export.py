"""The exported TorchScript artefact against the eager pipeline, and the pipeline's guards."""

from __future__ import annotations

import json

import pytest
import torch

from detr_deploy.export.__main__ import main as export_main
from detr_deploy.export.artefact import make_pipeline, sha256_of
from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact, save_artefact, trace_pipeline
from detr_deploy.model.box_ops import box_cxcywh_to_xyxy
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.paths import MODELS_DIR

from conftest import SMALL_PIPELINE


@pytest.fixture(scope="module")
def eager(small_model):
    return make_pipeline(small_model, **SMALL_PIPELINE)


def _run(module, image):
    with torch.inference_mode():
        return module(torch.from_numpy(image))


def _assert_same(got, expected, atol):
    boxes, scores, labels = got
    assert boxes.dtype == torch.float32 and scores.dtype == torch.float32 and labels.dtype == torch.int64
    assert boxes.shape == expected[0].shape
    torch.testing.assert_close(boxes, expected[0], rtol=0, atol=atol)
    torch.testing.assert_close(scores, expected[1], rtol=0, atol=atol)
    assert torch.equal(labels, expected[2])


def test_scripted_artefact_matches_eager_at_every_size(small_artefact, eager, test_images):
    module, metadata = load_artefact(small_artefact)
    assert metadata["class_names"][0] == "textbox" and metadata["export_method"] == "script"
    for image in test_images:
        expected = _run(eager, image)
        assert expected[0].shape[0] == 25  # threshold 0 keeps every query
        # boxes are in input pixels and inside the image
        height, width = image.shape[:2]
        assert float(expected[0][:, 2].max()) <= width and float(expected[0][:, 3].max()) <= height
        _assert_same(_run(module, image), expected, atol=1e-4)  # pixels


def test_frozen_optimized_matches_eager(small_artefact, eager, test_images):
    module, _ = load_artefact(small_artefact)
    fast = freeze_and_optimize(module)
    for image in test_images[:3]:
        got, expected = _run(fast, image), _run(eager, image)
        # oneDNN fusion changes rounding: compare as sets of (label, box) sorted by box
        torch.testing.assert_close(got[1].sort().values, expected[1].sort().values, rtol=0, atol=1e-4)
        torch.testing.assert_close(got[0].sum(), expected[0].sum(), rtol=1e-5, atol=1e-2)


def test_batch_entry_point(small_artefact, eager, test_images):
    module, _ = load_artefact(small_artefact)
    big, small = test_images[0], test_images[2]  # resized 224x298 and 224x224: big is unpadded
    with torch.inference_mode():
        batch = module.forward_batch([torch.from_numpy(big), torch.from_numpy(small)])
    assert len(batch) == 2
    _assert_same(batch[0], _run(eager, big), atol=1e-3)
    assert float(batch[1][0][:, 2].max()) <= small.shape[1]


def test_model_traces_at_any_size_but_pipeline_does_not(small_model, eager, test_images):
    # The model alone traces correctly: its positional encoding is built from tensor ops.
    with torch.no_grad():
        traced_model = torch.jit.trace(small_model, torch.randn(1, 3, 96, 128), strict=False, check_trace=False)
        other = torch.randn(1, 3, 160, 112)
        torch.testing.assert_close(
            traced_model(other)["pred_boxes"], small_model(other)["pred_boxes"], atol=1e-5, rtol=0
        )
    # The pipeline computes the resize target and output scale as Python ints: the trace freezes them.
    traced = trace_pipeline(eager, torch.from_numpy(test_images[0])).module
    _assert_same(_run(traced, test_images[0]), _run(eager, test_images[0]), atol=1e-4)
    portrait = test_images[1]  # 333x250 against the traced 240x320
    wrong, right = _run(traced, portrait), _run(eager, portrait)
    assert wrong[0].shape == right[0].shape  # no error: a silently wrong answer
    assert float((wrong[0] - right[0]).abs().max()) > 5.0
    assert float(wrong[0][:, 3].max()) <= 240.0 < float(right[0][:, 3].max())


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.zeros(32, 32, 3, dtype=torch.float32), "dtype uint8"),
        (torch.zeros(32, 32, 4, dtype=torch.uint8), "3 channels"),
        (torch.zeros(32, 32, dtype=torch.uint8), "3-D uint8 tensor"),
        (torch.zeros(0, 32, 3, dtype=torch.uint8), "image is empty"),
        (torch.zeros(3, 32, 32, dtype=torch.uint8), "3 channels"),  # CHW instead of HWC
        (torch.zeros(1, 9000, 3, dtype=torch.uint8), "exceeds the limit of 8192"),
    ],
)
def test_bad_input_raises_clear_error(bad, message, eager, small_artefact):
    with pytest.raises(ValueError, match=message):
        eager(bad)
    module, _ = load_artefact(small_artefact)
    with pytest.raises(torch.jit.Error, match=message):
        module(bad)


@torch.no_grad()
def test_threshold_and_top_k(small_model, test_images):
    image = torch.from_numpy(test_images[0])
    pipeline = make_pipeline(small_model, **dict(SMALL_PIPELINE, top_k=5))
    boxes, scores, labels = pipeline(image)
    assert boxes.shape == (5, 4) and bool((scores[:-1] >= scores[1:]).all())
    all_scores = make_pipeline(small_model, **SMALL_PIPELINE)(image)[1]
    threshold = float(all_scores.median())
    kept = pipeline(image, threshold)[1]
    assert bool((kept > threshold).all()) and kept.numel() == min(5, int((all_scores > threshold).sum()))
    with pytest.raises(ValueError, match="score_threshold"):
        pipeline(image, 1.5)


def test_postprocess_hand_computed_box(small_model):
    pipeline = DetectionPipeline(small_model, num_classes=6, min_size=64, max_size=128, score_threshold=0.5)
    logits = torch.full((2, 7), -10.0)
    logits[0, 2] = 10.0  # query 0: class 2, confident
    logits[1, 6] = 10.0  # query 1: "no object"
    boxes = torch.tensor([[0.5, 0.25, 0.2, 0.1], [0.5, 0.5, 1.0, 1.0]])
    out_boxes, scores, labels = pipeline.postprocess(logits, boxes, 200, 400, 0.5)
    # cx=0.5*400=200, w=0.2*400=80 -> x 160..240; cy=0.25*200=50, h=0.1*200=20 -> y 40..60
    torch.testing.assert_close(out_boxes, torch.tensor([[160.0, 40.0, 240.0, 60.0]]))
    assert labels.tolist() == [2] and float(scores[0]) > 0.99


def test_resized_size_follows_official_rule(small_model):
    pipeline = DetectionPipeline(small_model, num_classes=6)  # 800 / 1333
    assert pipeline.resized_size(480, 640) == (800, 1066)
    assert pipeline.resized_size(640, 480) == (1066, 800)
    # capped: shorter side round(1333 * 100 / 1000) = 133, longer int(133 * 1000 / 100) = 1330
    assert pipeline.resized_size(100, 1000) == (133, 1330)
    assert pipeline.resized_size(800, 800) == (800, 800)


def test_artefact_files_and_integrity(small_artefact, tmp_path):
    sidecar = json.loads(small_artefact.with_suffix(".json").read_text())
    assert sidecar["sha256"] == sha256_of(small_artefact)
    assert sidecar["size_bytes"] == small_artefact.stat().st_size
    assert sidecar["format"] == "detr_deploy.torchscript"
    tampered = tmp_path / "tampered.pt"
    tampered.write_bytes(small_artefact.read_bytes() + b"\0")
    tampered.with_suffix(".json").write_text(json.dumps(sidecar))
    with pytest.raises(ValueError, match="does not match its sidecar"):
        load_artefact(tampered)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="not a loadable TorchScript artefact"):
        load_artefact(garbage)
    with pytest.raises(FileNotFoundError):
        load_artefact(tmp_path / "missing.pt")
    plain = tmp_path / "plain.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(plain))
    with pytest.raises(ValueError, match="carries no metadata.json"):
        load_artefact(plain)
    wrong_format = tmp_path / "wrong_format.pt"
    module, metadata = load_artefact(small_artefact)
    save_artefact(module, wrong_format, dict(metadata, format_version=99))
    with pytest.raises(ValueError, match="v99"):
        load_artefact(wrong_format)


def test_box_conversion_round_trip():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    from detr_deploy.model.box_ops import box_xyxy_to_cxcywh

    cxcywh = box_xyxy_to_cxcywh(boxes)
    torch.testing.assert_close(cxcywh, torch.tensor([[20.0, 40.0, 20.0, 40.0]]))
    torch.testing.assert_close(box_cxcywh_to_xyxy(cxcywh), boxes)


def test_command_line_exports_the_demo_checkpoint_with_its_settings(tmp_path, capsys):
    """--checkpoint alone: the demo checkpoint, rebuilt from its configuration, with the pipeline
    settings of its demo.json; TorchScript is the default format."""
    out = tmp_path / "demo.pt"
    assert export_main(["--checkpoint", str(MODELS_DIR / "demo_weights.pth"), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    _, metadata = load_artefact(out)
    assert metadata["export_method"] == "script" and metadata["format"] == "detr_deploy.torchscript"
    assert (metadata["preprocess"]["min_size"], metadata["preprocess"]["max_size"]) == (384, 640)
    assert metadata["score_threshold"] == json.loads((MODELS_DIR / "demo.json").read_text())["score_threshold"]


def test_command_line_traces_a_random_architecture(tmp_path):
    out = tmp_path / "small.pt"
    assert (
        export_main(
            [
                "--arch",
                "detr_small",
                "--num-classes",
                "3",
                "--method",
                "trace",
                "--trace-size",
                "64",
                "96",
                "--min-size",
                "64",
                "--max-size",
                "96",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    _, metadata = load_artefact(out)
    assert metadata["traced_input_size"] == [64, 96] and metadata["num_classes"] == 3
    assert (metadata["preprocess"]["min_size"], metadata["score_threshold"]) == (64, 0.5)


def test_command_line_needs_a_model(tmp_path, capsys):
    assert export_main(["--out", str(tmp_path / "x.pt")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: name the model") and "Traceback" not in error
