"""torch.export + AOTInductor in the C++ Detector, and the ONNX Runtime / OpenVINO baselines.

Reference: the eager :class:`DetectionPipeline` in Python. Every runner gets the same
uint8 images and must return the same detections: labels identical, boxes and scores
within a tolerance (compiled kernels sum in another order than eager).

Compiling with AOTInductor takes minutes, so the AOTInductor tests use the demo model's package
that the benchmark also uses (``aoti.demo_aoti``), cached under ``build/aoti`` keyed by a
hash of the weights, settings, torch version and code: a fresh checkout compiles it once. The
export, ONNX and OpenVINO tests use a tiny DETR (1 encoder + 1 decoder layer).
The ONNX Runtime and OpenVINO tests skip when their optional extra is not installed.
"""

from __future__ import annotations

import builtins
import json
import platform
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from detr_deploy.demo_model import demo_settings
from detr_deploy.export import aoti, onnx, openvino
from detr_deploy.export.__main__ import main as export_main
from detr_deploy.export.artefact import make_pipeline
from detr_deploy.export.program import (
    export_program,
    fixed_input_size,
    guards_hold,
    min_resized_side,
    program_metadata,
)
from detr_deploy.model.checkpoint import load_model
from detr_deploy.model.detr import detr_small
from detr_deploy.native.runners import EXTRA_REQUIREMENT, OnnxRuntimeDetector, OpenVinoDetector
from detr_deploy.paths import MODELS_DIR

from conftest import make_test_image, run_in_threads
from torch_free import detect_without_torch

TINY = dict(min_size=96, max_size=192, score_threshold=0.0)
TINY_CLASSES = ["textbox", "radiobutton", "checkbox", "actionset", "image", "rating"]
BOX_ATOL = 2e-2  # pixels
SCORE_ATOL = 1e-4
# export size (the example) and other sizes: landscape, portrait, tiny, very thin, square
SIZES = [(480, 640), (333, 250), (37, 53), (30, 300), (200, 200)]


def tiny_detr():
    return detr_small(
        seed=1,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_model=64,
        dim_feedforward=128,
        num_queries=12,
        num_classes=6,
        class_names=TINY_CLASSES,
    ).eval()


@pytest.fixture(scope="session")
def tiny_model():
    return tiny_detr()


@pytest.fixture(scope="session")
def eager(tiny_model):
    return make_pipeline(tiny_model, **TINY)


@pytest.fixture(scope="session")
def images():
    return [make_test_image(h, w, seed=10 + i) for i, (h, w) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def program(eager):
    return export_program(eager)


@pytest.fixture(scope="session")
def demo_model():
    return load_model(MODELS_DIR / "demo_weights.pth").eval()


@pytest.fixture(scope="session")
def aoti_eager(demo_model):
    return make_pipeline(demo_model, **demo_settings())


@pytest.fixture(scope="session")
def aoti_package():
    return aoti.demo_aoti()


@pytest.fixture(scope="session")
def aoti_detector(detr_cpp, aoti_package):
    return detr_cpp.Detector(aoti_package)


def eager_detect(pipeline, image, threshold=None):
    with torch.inference_mode():
        boxes, scores, labels = pipeline(torch.from_numpy(image), threshold)
    return {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()}


def assert_close(found, expected, box_atol=BOX_ATOL, score_atol=SCORE_ATOL):
    """Same detections: dtypes, count, labels identical, boxes/scores within tolerance.
    Returns (max box diff, max score diff)."""
    assert found["boxes"].dtype == np.float32 and found["scores"].dtype == np.float32
    assert found["labels"].dtype == np.int64
    assert found["boxes"].shape == expected["boxes"].shape, (found["boxes"].shape, expected["boxes"].shape)
    np.testing.assert_array_equal(found["labels"], expected["labels"])
    box = float(np.abs(found["boxes"] - expected["boxes"]).max(initial=0))
    score = float(np.abs(found["scores"] - expected["scores"]).max(initial=0))
    assert box <= box_atol and score <= score_atol, (box, score)
    return box, score


# ---------------------------------------------------------------------------- the exported program


def test_resize_arithmetic_is_the_same_scripted_and_eager(tiny_model):
    """The scripted branch and the torch.sym_* branch of resized_size agree everywhere."""
    for min_size, max_size in ((800, 1333), (96, 160), (384, 640)):
        pipeline = make_pipeline(tiny_model, min_size=min_size, max_size=max_size)
        scripted = torch.jit.script(pipeline)
        rng = np.random.default_rng(0)
        sizes = [(h, w) for h in range(1, 40) for w in range(1, 40)]
        sizes += [tuple(int(v) for v in rng.integers(1, 8193, 2)) for _ in range(2000)]
        for height, width in sizes:
            assert tuple(scripted.resized_size(height, width)) == tuple(pipeline.resized_size(height, width))


def test_export_program_matches_eager_at_several_sizes(program, eager, images):
    module = program.module()
    for image in images:
        threshold = torch.tensor(0.0)
        with torch.inference_mode():
            got = module(torch.from_numpy(image), threshold)
        found = {"boxes": got[0].numpy(), "scores": got[1].numpy(), "labels": got[2].numpy()}
        expected = eager_detect(eager, image)
        assert_close(found, expected, box_atol=1e-4, score_atol=1e-6)


def test_min_resized_side_is_where_the_export_guards_start_to_hold(program, eager):
    """The exported graph assumes feature maps of at least 2x2; the limit it implies on the
    resized shorter side (17 px for a stride-16 backbone) is stored and enforced."""
    limit = min_resized_side(program, eager)
    assert limit == 17
    module = program.module()
    below, at = np.zeros((limit - 1, TINY["max_size"], 3), np.uint8), np.zeros((limit, TINY["max_size"], 3), np.uint8)
    assert min(eager.resized_size(*below.shape[:2])) == limit - 1
    with pytest.raises(AssertionError, match="Guard failed"):
        module(torch.from_numpy(below), torch.tensor(0.0))
    module(torch.from_numpy(at), torch.tensor(0.0))
    assert guards_hold(program, *at.shape[:2]) and not guards_hold(program, *below.shape[:2])


def test_metadata_reads_the_size_limits_from_the_program(program, eager):
    """Dynamic: the guards' limit on the resized side; static: the size it was exported at."""
    assert fixed_input_size(program) is None
    dynamic = program_metadata(eager, "test", program)
    assert dynamic["input"]["min_resized_side"] == 17 and "traced_input_size" not in dynamic
    static = export_program(eager, dynamic=False, example_size=(96, 128))
    assert fixed_input_size(static) == (96, 128)
    metadata = program_metadata(eager, "test", static)
    assert metadata["traced_input_size"] == [96, 128] and "min_resized_side" not in metadata["input"]


def test_export_aoti_compiles_with_the_public_api():
    """torch._inductor.aoti_compile_and_package, not aot_compile and the private packager."""
    import inspect

    source = inspect.getsource(aoti)
    assert "aoti_compile_and_package(" in source
    assert "aot_compile(" not in source and "pt2_archive" not in source


def test_export_aoti_compiles_with_autograd_off(tiny_model, tmp_path, monkeypatch):
    """Inductor applies ``freezing`` only with autograd off; with it on, the compile succeeds
    silently without it (weights as inputs, aten convolutions: slower). The compile is stubbed:
    the package test below checks a real one."""
    seen = []

    def compile_and_package(*args, **kwargs):
        seen.append((torch.is_grad_enabled(), kwargs["inductor_configs"]["freezing"]))
        raise InterruptedError("stop before compiling")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", compile_and_package)
    with torch.enable_grad(), pytest.raises(InterruptedError):
        aoti.export_aoti(tiny_model, tmp_path / "tiny.pt2", **TINY)
    assert seen == [(False, True)]
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_package_weights_are_frozen(aoti_package):
    """Frozen weights: Inductor prepacks the convolutions for oneDNN (``mkldnn__convolution_pointwise``);
    unfrozen, the wrapper calls the plain aten convolution (``aoti_torch_cpu_convolution``) on every run."""
    with zipfile.ZipFile(aoti_package) as archive:
        wrapper = "".join(archive.read(n).decode() for n in archive.namelist() if n.endswith("wrapper.cpp"))
    assert "aoti_torch_cpu_convolution(" not in wrapper
    assert "mkldnn__convolution_pointwise" in wrapper


def test_export_program_rejects_square_example(eager):
    with pytest.raises(ValueError, match="non-square"):
        export_program(eager, example_size=(64, 64))


# ---------------------------------------------------------------------------- AOTInductor in C++


def test_package_metadata_and_sidecar(aoti_package, detr_cpp):
    sidecar = json.loads(aoti_package.with_suffix(".json").read_text())
    assert sidecar["format"] == "detr_deploy.aotinductor" and sidecar["export_method"] == "torch.export"
    assert sidecar["input"]["min_side"] == 2 and sidecar["compile_seconds"] > 0
    assert sidecar["input"]["min_resized_side"] == 17
    assert detr_cpp.read_metadata(aoti_package)["class_names"] == TINY_CLASSES
    # the building CPU's instruction sets (-march=native), read here straight from /proc/cpuinfo
    compiled_for = sidecar["compiled_for"]
    assert compiled_for["march"] == "native"
    flags_lines = (
        [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")]
        if Path("/proc/cpuinfo").is_file()
        else []
    )
    if flags_lines and platform.machine() == "x86_64":
        this_cpu = set(flags_lines[0].split(":", 1)[1].split())
        assert "sse2" in compiled_for["required_cpu_flags"]
        assert set(compiled_for["required_cpu_flags"]) <= this_cpu
        assert ("avx2" in this_cpu) == ("avx2" in compiled_for["required_cpu_flags"])
    with zipfile.ZipFile(aoti_package) as archive:
        libraries = [name for name in archive.namelist() if name.endswith(".so")]
    assert len(libraries) == 1


def test_compiled_model_does_not_need_libtorch_so(aoti_package, tmp_path):
    from detr_deploy.native.runtime_folder import needed_libraries

    with zipfile.ZipFile(aoti_package) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".so"))
        library = Path(archive.extract(name, tmp_path))
    needed = needed_libraries(library)
    assert "libtorch_cpu.so" in needed and "libtorch.so" not in needed, needed


def test_cached_package_is_reused(demo_model, aoti_package):
    before = aoti_package.stat().st_mtime_ns
    assert aoti.cached_aoti(demo_model, name="demo", **demo_settings()) == aoti_package
    assert aoti_package.stat().st_mtime_ns == before


def test_every_demo_artefact_carries_the_shipped_default_threshold(aoti_package):
    """One default threshold per model: the AOTInductor package, the export command's default and the
    benchmark's setting all equal the shipped TorchScript artefact's (read independently here)."""
    from detr_deploy.bench.settings import MODELS
    from detr_deploy.export.__main__ import _parser, _pipeline_settings

    shipped = json.loads((MODELS_DIR / "demo.json").read_text())["score_threshold"]
    with zipfile.ZipFile(aoti_package) as archive:
        entry = next(name for name in archive.namelist() if name.endswith("extra/metadata.json"))
        assert json.loads(archive.read(entry))["score_threshold"] == shipped
    args = _parser().parse_args(["--checkpoint", str(MODELS_DIR / "demo_weights.pth"), "--out", "x.pt"])
    assert _pipeline_settings(args)["score_threshold"] == shipped
    assert MODELS["demo"].score_threshold == shipped


def test_aoti_detector_matches_eager(aoti_detector, aoti_eager, images):
    assert aoti_detector.backend == "aotinductor" and aoti_detector.class_names == TINY_CLASSES
    for image in images:
        assert_close(aoti_detector.detect(image), eager_detect(aoti_eager, image))


def test_aoti_detector_matches_torch_aoti_runner(aoti_detector, aoti_package, images):
    runner = aoti.load_aoti(aoti_package)
    for image in images[:2]:
        with torch.inference_mode():
            boxes, scores, labels = runner(torch.from_numpy(image), torch.tensor(0.0))
        assert_close(
            aoti_detector.detect(image, score_threshold=0.0),
            {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()},
            box_atol=1e-5,
            score_atol=1e-7,
        )


def _threshold_away_from(*score_lists: np.ndarray) -> float:
    """The threshold in 0.3-0.9 farthest from every score given: compiled and eager scores differ by
    about 1e-6, so a threshold next to a score could keep a detection on one side and drop it on the other."""
    scores = np.concatenate(score_lists)
    candidates = np.linspace(0.3, 0.9, 61)
    distance = np.abs(candidates[:, None] - scores[None, :]).min(axis=1)
    return float(candidates[distance.argmax()])


def test_aoti_threshold_and_batch(aoti_detector, aoti_eager, images):
    every = [aoti_detector.detect(image, score_threshold=0.0)["scores"] for image in images]
    threshold = _threshold_away_from(*every)
    found = aoti_detector.detect(images[0], score_threshold=threshold)
    assert 0 < len(found["scores"]) == (every[0] > threshold).sum() < len(every[0])
    assert_close(found, eager_detect(aoti_eager, images[0], threshold))
    batch = aoti_detector.detect_batch(images, score_threshold=threshold)
    for got, image in zip(batch, images, strict=True):
        assert_close(got, eager_detect(aoti_eager, image, threshold))


def test_aoti_input_not_aligned_or_contiguous(aoti_detector, images):
    image = images[1]
    buffer = np.zeros(image.size + 1, np.uint8)
    shifted = buffer[1:].reshape(image.shape)  # data pointer at an odd address
    shifted[...] = image
    expected = aoti_detector.detect(image)
    np.testing.assert_array_equal(aoti_detector.detect(shifted)["boxes"], expected["boxes"])
    flipped = image[:, ::-1]
    np.testing.assert_array_equal(
        aoti_detector.detect(flipped)["labels"], aoti_detector.detect(np.ascontiguousarray(flipped))["labels"]
    )


@pytest.mark.parametrize(
    "shape,message",
    [
        ((1, 30, 3), "below this artefact's minimum of 2"),
        # max_size 640: the shorter side becomes round(640 * 16 / 640) = 16 px, round(640 * 10 / 400) = 16 px
        ((16, 640, 3), "too elongated.*resized to 16 px, below the 17 px"),
        ((400, 10, 3), "too elongated"),
        ((0, 30, 3), "empty"),
        ((8193, 2, 3), "exceeds the limit of 8192"),
        ((20, 30, 4), "RGBA"),
    ],
)
def test_aoti_bad_images(aoti_detector, shape, message):
    with pytest.raises(ValueError, match=message):
        aoti_detector.detect(np.zeros(shape, np.uint8))


def test_aoti_threads_share_one_detector(aoti_detector, images):
    serial = [aoti_detector.detect(image) for image in images]
    results = {}

    def work(worker):
        for index in range(len(images)):
            position = (index + worker) % len(images)
            results[worker, position] = aoti_detector.detect(images[position])

    errors = run_in_threads(work, workers=3)
    assert not errors, errors
    for (_, position), found in results.items():
        for key in found:
            np.testing.assert_array_equal(found[key], serial[position][key])


@pytest.fixture(scope="module")
def bad_packages(aoti_package, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_pt2")
    with zipfile.ZipFile(aoti_package) as source:
        items = [(item, source.read(item.filename)) for item in source.infolist()]

    def rewrite(name, keep=lambda item: True, metadata=None):
        path = folder / name
        with zipfile.ZipFile(path, "w") as target:
            for item, data in items:
                if not keep(item):
                    continue
                if metadata is not None and item.filename.endswith("extra/metadata.json"):
                    data = json.dumps(dict(json.loads(data), **metadata)).encode()
                target.writestr(item, data)
        return path

    truncated = folder / "truncated.pt2"
    truncated.write_bytes(aoti_package.read_bytes()[:50_000])
    return {
        "missing": (folder / "missing.pt2", FileNotFoundError, "model file not found"),
        "truncated": (truncated, ValueError, "not a PyTorch zip archive"),
        "no metadata": (
            rewrite("no_meta.pt2", keep=lambda i: not i.filename.endswith("metadata.json")),
            ValueError,
            "carries no metadata.json",
        ),
        "future version": (rewrite("v2.pt2", metadata={"format_version": 2}), ValueError, "aotinductor' v2"),
        "class count": (rewrite("classes.pt2", metadata={"num_classes": 9}), ValueError, "num_classes=9"),
        "no compiled model": (
            rewrite("no_so.pt2", keep=lambda i: not i.filename.endswith(".so")),
            ValueError,
            "could not be loaded as an AOTInductor package",
        ),
        "min_side above max_side": (
            rewrite("sides.pt2", metadata={"input": {"max_side": 8, "min_side": 9}}),
            ValueError,
            "min_side",
        ),
        "another CPU": (
            rewrite(
                "cpu.pt2",
                metadata={"compiled_for": {"march": "native", "required_cpu_flags": ["sse2", "detr_test_isa"]}},
            ),
            ValueError,
            "on a CPU with detr_test_isa, which this CPU lacks",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "truncated",
        "no metadata",
        "future version",
        "class count",
        "no compiled model",
        "min_side above max_side",
        "another CPU",
    ],
)
def test_bad_packages_raise_clear_errors(detr_cpp, bad_packages, case):
    path, error, message = bad_packages[case]
    with pytest.raises(error, match=message):
        detr_cpp.Detector(path)


def test_load_aoti_refuses_a_package_for_another_cpu(bad_packages):
    path, error, message = bad_packages["another CPU"]
    if not aoti.cpu_isa_flags():
        pytest.skip("no x86 flags in /proc/cpuinfo here: nothing to compare with")
    with pytest.raises(error, match=message):
        aoti.load_aoti(path)


def test_cpu_isa_flags_keeps_instruction_sets_only(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nflags\t\t: fpu sse2 hypervisor avx2 avx512f constant_tsc\n"
        "processor\t: 1\nflags\t\t: fpu sse2\n"
    )
    assert aoti.cpu_isa_flags(cpuinfo) == ["avx2", "avx512f", "sse2"]  # the first CPU's line
    assert aoti.cpu_isa_flags(tmp_path / "absent") == []
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert aoti.cpu_isa_flags(tmp_path / "arm") == []


def test_aoti_package_runs_without_torch(detr_cpp, aoti_package, aoti_detector, images, tmp_path):
    output = detect_without_torch(detr_cpp.__file__, aoti_package, images[0], tmp_path)
    assert output["backend"] == "aotinductor" and output["torch"] is False and output["libtorch_so"] is False
    expected = aoti_detector.detect(images[0])
    assert output["labels"] == expected["labels"].tolist()
    np.testing.assert_allclose(np.array(output["boxes"], np.float32), expected["boxes"], atol=1e-4)


# ---------------------------------------------------------------------------- ONNX Runtime and OpenVINO


def _needs(package):
    try:
        __import__(package)
    except ImportError:
        pytest.skip(f"{package} not installed (optional extra: {EXTRA_REQUIREMENT})")


@pytest.fixture(scope="module")
def onnx_path(tiny_model, tmp_path_factory):
    _needs("onnx")
    _needs("onnxscript")
    return onnx.export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny.onnx", **TINY)


def test_onnxruntime_matches_eager(onnx_path, eager, images):
    _needs("onnxruntime")
    detector = OnnxRuntimeDetector(onnx_path, num_threads=2)
    assert detector.class_names == TINY_CLASSES
    for image in images:
        assert_close(detector.detect(image), eager_detect(eager, image))
    threshold = float(np.median(detector.detect(images[0])["scores"]))
    assert_close(detector.detect(images[0], threshold), eager_detect(eager, images[0], threshold))
    with pytest.raises(ValueError, match="dtype uint8"):
        detector.detect(images[0].astype(np.float32))
    with pytest.raises(ValueError, match="score_threshold"):
        detector.detect(images[0], 1.5)
    with pytest.raises(ValueError, match="too elongated"):
        detector.detect(np.zeros((16, 192, 3), np.uint8))


def test_onnx_carries_its_metadata(onnx_path):
    import onnx

    proto = onnx.load(str(onnx_path))
    embedded = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(embedded["metadata.json"])["class_names"] == TINY_CLASSES
    assert [i.name for i in proto.graph.input] == ["image", "score_threshold"]


def test_openvino_matches_eager_without_antialiasing(tiny_model, images, tmp_path):
    """From the model (through ONNX): exact, when the resize is not antialiased."""
    _needs("openvino")
    _needs("onnxscript")
    plain = make_pipeline(tiny_model, antialias=False, **TINY)
    xml = openvino.export_openvino(plain, tmp_path / "ov")
    assert xml.name == "model.xml" and xml.with_suffix(".bin").is_file()
    detector = OpenVinoDetector(xml, num_threads=2)
    assert detector.class_names == TINY_CLASSES and detector.metadata["compress_to_fp16"] is False
    for image in images[:3]:
        assert_close(detector.detect(image), eager_detect(plain, image))


def test_openvino_antialiased_resize_differs_slightly(onnx_path, eager, images, tmp_path):
    """OpenVINO's antialiased Interpolate weighs pixels differently from torch's (and ONNX
    Runtime's) when shrinking: boxes move by up to ~1-2 px on this random model, labels hold."""
    _needs("openvino")
    detector = OpenVinoDetector(openvino.export_openvino(onnx_path, tmp_path / "ov.xml"))
    differences = [
        assert_close(detector.detect(image), eager_detect(eager, image), box_atol=3.0, score_atol=5e-3)
        for image in images[:3]
    ]
    assert max(box for box, _ in differences) > 1e-2  # if this fails, OpenVINO now matches: tighten the test


def test_missing_extra_names_the_requirements_file(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] in ("onnxruntime", "openvino"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    for runner in (OnnxRuntimeDetector, OpenVinoDetector):
        with pytest.raises(ImportError, match="requirements-runtimes.txt"):
            runner(tmp_path / "model")


def test_module_imports_without_the_extras():
    code = (
        "import sys; sys.modules.update(onnx=None, onnxruntime=None, openvino=None, onnxscript=None); "
        "import detr_deploy.export.aoti as a, detr_deploy.export.onnx, detr_deploy.export.openvino; "
        "print(a.AOTI_FORMAT)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "aotinductor" in result.stdout, result.stderr


def test_runners_do_not_import_torch(onnx_path, images):
    """A service running ONNX Runtime ships no torch: the runner module must not import it."""
    pytest.importorskip("onnxruntime")
    code = (
        "import sys, json, numpy as np; from detr_deploy.native.runners import OnnxRuntimeDetector; "
        f"found = OnnxRuntimeDetector({str(onnx_path)!r}).detect(np.load(sys.argv[1])); "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'labels': found['labels'].tolist()}))"
    )
    np.save(onnx_path.parent / "image.npy", images[0])
    result = subprocess.run(
        [sys.executable, "-c", code, str(onnx_path.parent / "image.npy")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["torch"] is False
    assert output["labels"] == OnnxRuntimeDetector(onnx_path).detect(images[0])["labels"].tolist()


def test_command_line_dispatches_with_the_demo_settings(monkeypatch, tmp_path, capsys):
    """One command for every format; the exports themselves are tested above, so they are stubbed."""
    calls = []

    def fake_export(name):
        def export(model, out, **settings):
            calls.append((name, type(model).__name__, settings))
            out = Path(out)
            out.write_bytes(b"x")
            out.with_suffix(".json").write_text(json.dumps({"size_bytes": 1}))
            return out

        return export

    for module, name in ((aoti, "export_aoti"), (onnx, "export_onnx"), (openvino, "export_openvino")):
        monkeypatch.setattr(module, name, fake_export(name))
    weights = str(MODELS_DIR / "demo_weights.pth")
    assert export_main(["--format", "aoti", "--checkpoint", weights, "--out", str(tmp_path / "demo.pt2")]) == 0
    assert (
        export_main(
            [
                "--format",
                "onnx",
                "--arch",
                "detr_small",
                "--out",
                str(tmp_path / "s.onnx"),
                "--min-size",
                "64",
                "--exporter",
                "legacy",
            ]
        )
        == 0
    )
    assert (
        export_main(
            [
                "--format",
                "openvino",
                "--arch",
                "detr_small",
                "--out",
                str(tmp_path / "ov.xml"),
                "--fp16-weights",
                "--static",
            ]
        )
        == 0
    )
    (name, model, settings), onnx_call, ov_call = calls
    assert name == "export_aoti" and model == "DETR"
    demo = json.loads((MODELS_DIR / "demo.json").read_text())
    assert (settings["min_size"], settings["max_size"], settings["score_threshold"]) == (
        384,
        640,
        demo["score_threshold"],
    )
    assert onnx_call[2]["min_size"] == 64 and onnx_call[2]["exporter"] == "legacy"
    assert ov_call[2]["compress_to_fp16"] is True and ov_call[2]["dynamic"] is False
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        export_main(["--format", "tflite", "--arch", "detr_small", "--out", "x"])


@pytest.mark.parametrize(
    "fmt,option",
    [
        ("torchscript", ["--exporter", "legacy"]),
        ("torchscript", ["--static"]),
        ("aoti", ["--method", "trace"]),
        ("aoti", ["--fp16-weights"]),
        ("onnx", ["--trace-size", "64", "96"]),
        ("openvino", ["--exporter", "dynamo"]),
    ],
)
def test_command_line_refuses_options_of_other_formats(fmt, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--format", fmt, "--arch", "detr_small", "--out", "x", *option])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"error: {option[0]} applies to --format" in error and f"not to --format {fmt}" in error
    assert "Traceback" not in error


def test_command_line_reports_a_missing_checkpoint(tmp_path, capsys):
    assert (
        export_main(
            ["--format", "onnx", "--checkpoint", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "x.onnx")]
        )
        == 1
    )
    error = capsys.readouterr().err
    assert error.startswith("error: --checkpoint") and "no such file" in error


def test_export_aoti_needs_a_pt2_name(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.pt2"):
        aoti.export_aoti(tiny_model, tmp_path / "model.pt")
