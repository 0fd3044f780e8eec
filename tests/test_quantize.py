"""int8 through the C++ Detector: PT2E quantization, the AOTInductor package, its CPU check.

The quick tests run a tiny random DETR in Python. The package tests share the demo model's int8
package with chapter 02c (``demo_int8_aoti``, cached under build/quantize: a few minutes to
calibrate and compile once on 2 cores). No test asserts a speed.
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torchao", reason="int8 needs the optional extras: pip install -r requirements-runtimes.txt")

from detr_deploy.export import __main__ as export_command  # noqa: E402
from detr_deploy.export.artefact import make_pipeline  # noqa: E402
from detr_deploy.machine import ISA_FLAGS, cpu_isa_flags  # noqa: E402
from detr_deploy.model.detr import detr_small  # noqa: E402
from detr_deploy.paths import MODELS_DIR  # noqa: E402
from detr_deploy.quantize import measure, pt2e  # noqa: E402

from torch_free import detect_without_torch  # noqa: E402

TINY = dict(min_size=96, max_size=160, score_threshold=0.0)

# int8 against float32 on the sample cards (8 cards, ~130 detections), at the demo model's
# default threshold: at most a share MAX_UNMATCHED_SHARE of the detections lose their partner (same
# label, IoU >= 0.5: a score crossing the threshold), and the pairs stay within these bounds. Measured
# (data/benchmarks/int8_accuracy.json): 4 of 131 unmatched, 10 px, 0.06 (a box edge moving a few
# percent of a card's width); another compile of the same package left 7 of 132 unmatched.
MAX_UNMATCHED_SHARE = 0.1
BOX_TOLERANCE_PX = 20.0
SCORE_TOLERANCE = 0.15


@pytest.fixture(scope="module")
def tiny():
    return detr_small(seed=0, num_encoder_layers=1, num_decoder_layers=1, d_model=64, dim_feedforward=128).eval()


def _images(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (int(rng.integers(80, 200)), int(rng.integers(80, 200)), 3), np.uint8)
        for _ in range(count)
    ]


def test_fuse_for_int8_keeps_the_outputs(tiny):
    fused = pt2e.fuse_for_int8(tiny)
    pixels = torch.randn(2, 3, 96, 128)
    padding = torch.zeros(2, 96, 128, dtype=torch.bool)
    padding[1, :, 100:] = True  # the second image is narrower: its attention masks the padding
    for inputs in ((pixels,), (pixels, padding)):
        with torch.no_grad():
            expected, found = tiny(*inputs), fused(*inputs)
        for key in ("pred_logits", "pred_boxes"):
            torch.testing.assert_close(found[key], expected[key], atol=1e-4, rtol=1e-4)
    # no batch norm left, no ReLU module used twice (the quantizer stops on shared modules), and
    # the attention projections are nn.Linear modules (the quantizer skips them otherwise)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.MultiheadAttention)) for m in fused.modules())
    relus = [m for m in fused.backbone.modules() if isinstance(m, torch.nn.ReLU)]
    assert len(relus) == len({id(m) for m in relus}) and tiny.backbone[0].body.bn1 is not None


@pytest.mark.parametrize("scope", pt2e.SCOPES)
def test_int8_pipeline_runs_in_python_near_float32(tiny, scope):
    images = _images(4)
    quantized = pt2e.int8_pipeline(tiny, images[:3], scope=scope, **TINY)
    reference = make_pipeline(tiny, **TINY)
    operators = {str(node.target) for node in quantized.model.graph.nodes}
    assert "quantized_decomposed.dequantize_per_channel.default" in operators  # int8 weights
    with torch.no_grad():
        for image in images:  # the last one was not calibrated on
            pixels = reference.preprocess(torch.from_numpy(image)).unsqueeze(0)
            expected, found = tiny(pixels), quantized.model(pixels)
            assert (found["pred_boxes"] - expected["pred_boxes"]).abs().max() < 0.05
            probabilities = [out["pred_logits"].softmax(-1) for out in (expected, found)]
            assert (probabilities[0] - probabilities[1]).abs().max() < 0.05


def test_quantizer_scope_is_checked():
    with pytest.raises(ValueError, match="scope must be one of"):
        pt2e._quantizer("everything")


def test_readme_int8_block_matches_the_committed_runs():
    from detr_deploy.quantize import readme

    assert readme.check_or_write(check=True) == 0, "run: python -m detr_deploy.quantize readme"


def test_calibration_never_uses_the_held_out_seed():
    with pytest.raises(ValueError, match="held-out"):
        pt2e.calibration_images(2, seed=measure.HELDOUT_SEED)


# ---------------------------------------------------------------------------- the demo model's int8 package


@pytest.fixture(scope="module")
def int8_package():
    return pt2e.demo_int8_aoti()


@pytest.fixture(scope="module")
def int8_detector(int8_package, detr_cpp):
    return detr_cpp.Detector(int8_package, num_threads=2)


def test_int8_package_metadata(int8_package, detr_cpp):
    metadata = detr_cpp.read_metadata(int8_package)
    assert metadata["precision"] == "int8" and metadata["format"] == "detr_deploy.aotinductor"
    assert metadata["quantization"]["scope"] == "all"
    calibration = metadata["quantization"]["calibration"]
    assert calibration["seed"] == pt2e.CALIBRATION_SEED and calibration["num_images"] == 32
    # the compiled code runs int8 kernels (not dequantize + float32 convolution)
    assert metadata["kernels"] == pt2e.kernel_counts(int8_package)
    kernels = metadata["kernels"]
    assert kernels["int8_conv"] >= 16 and kernels["int8_linear"] >= 40, kernels
    assert kernels["float_conv"] == 0 and kernels["float_matmul"] == 0, kernels
    sidecar = json.loads(int8_package.with_suffix(".json").read_text())
    assert sidecar["precision"] == "int8" and sidecar["size_bytes"] == int8_package.stat().st_size
    assert set(metadata["compiled_for"]["required_cpu_flags"]) <= set(cpu_isa_flags())


def test_int8_detections_match_float32_on_sample_cards(int8_detector):
    from detr_deploy.bench.settings import demo_model
    from detr_deploy.demo_model import demo_settings

    settings = demo_settings()
    reference = measure.EagerRunner(make_pipeline(demo_model(), **settings))
    diff = measure.differences(reference, int8_detector, measure.sample_images(), settings["score_threshold"])
    assert diff["detections"] > 50
    assert diff["matched"] >= (1 - MAX_UNMATCHED_SHARE) * diff["detections"], diff
    assert diff["max_box_diff_px"] <= BOX_TOLERANCE_PX and diff["max_score_diff"] <= SCORE_TOLERANCE, diff


def _with_required_flag(package, folder, flag):
    """A copy of ``package`` whose metadata says it was compiled for a CPU with ``flag``."""
    copy = folder / f"needs-{flag}.pt2"
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(copy, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("extra/metadata.json"):
                metadata = json.loads(data)
                metadata["compiled_for"]["required_cpu_flags"].append(flag)
                data = json.dumps(metadata).encode()
            target.writestr(item, data)
    return copy


def test_int8_package_for_another_cpu_is_refused(int8_package, detr_cpp, tmp_path):
    from detr_deploy.export.aoti import load_aoti

    # an instruction set this CPU lacks (a real one where there is one, e.g. AMX-FP16)
    missing = sorted(ISA_FLAGS - set(cpu_isa_flags())) or ["detr_test_isa"]
    foreign = _with_required_flag(int8_package, tmp_path, missing[0])
    message = f"on a CPU with {missing[0]}, which this CPU lacks"
    with pytest.raises(ValueError, match=message):
        detr_cpp.Detector(foreign)
    with pytest.raises(ValueError, match=message):
        load_aoti(foreign)
    # the unchanged package loads
    assert detr_cpp.Detector(int8_package).metadata["precision"] == "int8"


# ---------------------------------------------------------------------------- the package outside Python's torch


def _same_detections(found, expected):
    # the same compiled code in another process: identical labels, float noise at most
    assert found["labels"] == expected["labels"].tolist()
    np.testing.assert_allclose(np.array(found["boxes"], np.float32).reshape(-1, 4), expected["boxes"], atol=1e-3)
    np.testing.assert_allclose(np.array(found["scores"], np.float32), expected["scores"], atol=1e-4)


def test_int8_package_runs_in_the_torch_free_module(int8_package, int8_detector, detr_cpp, tmp_path):
    card = measure.sample_images()["card_00000.jpg"]
    output = detect_without_torch(detr_cpp.__file__, int8_package, card, tmp_path, num_threads=2)
    assert output["backend"] == "aotinductor" and output["precision"] == "int8" and output["torch"] is False
    assert len(output["labels"]) > 0
    _same_detections(output, int8_detector.detect(card))


def test_int8_package_runs_in_detr_cli(detr_cli, int8_package, int8_detector, tmp_path):
    from PIL import Image

    card = measure.sample_images()["card_00001.jpg"]
    path = tmp_path / "card.png"  # PNG: lossless, the program and the module see the same pixels
    Image.fromarray(card).save(path)
    result = subprocess.run(
        [str(detr_cli), str(int8_package), str(path), "--threads", "2"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    detections = json.loads(result.stdout)["detections"]
    found = {
        "boxes": [d["box"] for d in detections],
        "scores": [d["score"] for d in detections],
        "labels": [d["label"] for d in detections],
    }
    assert len(detections) > 0
    _same_detections(found, int8_detector.detect(card))


# ---------------------------------------------------------------------------- python -m detr_deploy.export --int8


def test_export_command_int8_calibrates_on_synthetic_cards(monkeypatch, tmp_path, capsys):
    """``--int8`` hands the model, the synthetic calibration cards and the pipeline settings to
    ``export_int8_aoti`` (stubbed: the real export is the package above)."""
    calls = []

    def fake_images(count, seed=pt2e.CALIBRATION_SEED):
        calls.append(("images", count, seed))
        return [np.zeros((8, 8, 3), np.uint8)] * count

    def fake_export(model, out, images, **options):
        calls.append(("export", type(model).__name__, len(images), options))
        out = Path(out)
        out.write_bytes(b"x")
        out.with_suffix(".json").write_text(json.dumps({"size_bytes": 1, "precision": "int8"}))
        return out

    monkeypatch.setattr(pt2e, "calibration_images", fake_images)
    monkeypatch.setattr(pt2e, "export_int8_aoti", fake_export)
    out = tmp_path / "demo_int8.pt2"
    weights = str(MODELS_DIR / "demo_weights.pth")
    assert export_command.main(["--int8", "--checkpoint", weights, "--out", str(out), "--calibration-images", "4"]) == 0
    (_, count, seed), (_, model, num_images, options) = calls
    assert (count, seed, model, num_images) == (4, pt2e.CALIBRATION_SEED, "DETR", 4)
    assert options["calibration"] == pt2e.calibration_record() and options["scope"] == "all"
    demo = json.loads((MODELS_DIR / "demo.json").read_text())
    assert (options["min_size"], options["max_size"], options["score_threshold"]) == (384, 640, demo["score_threshold"])
    assert options["dynamic"] is True
    assert "int8" in capsys.readouterr().out


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--int8", "--format", "onnx"], "--int8 applies to --format aoti, not to --format onnx"),
        (["--format", "aoti", "--calibration-images", "4"], "--calibration-images applies to --int8 only"),
        (["--int8-scope", "backbone"], "--int8-scope applies to --int8 only"),
        (["--int8", "--calibration-images", "0"], "--calibration-images needs at least 1"),
    ],
)
def test_export_command_refuses_int8_options_out_of_place(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_command.main(["--arch", "detr_small", "--out", "x.pt2", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
