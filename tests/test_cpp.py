"""The C++ core through its two front ends: the cppimport module ``detr_cpp`` and ``detr_cli``.

Reference: the same artefact run by torch from Python (``load_artefact``). Two comparisons:

* ``Detector(optimize=False)`` runs the saved graph exactly as ``torch.jit.load`` does, so
  its outputs must be *identical* (bitwise) to Python's, given the same number of threads
  (torch.get_num_threads(): a different split of the sums changes the last bits).
* ``Detector()`` (the default) freezes and runs ``optimize_for_inference`` after loading;
  its numbers differ by ~1e-7 in scores and ~1e-4 px in boxes (measured). With random
  weights and threshold 0 neighbouring scores can be 2e-7 apart, so the order may differ:
  detections are paired (same label, nearest box and score: an optimal assignment) before
  comparing, with tolerances BOX_ATOL pixels and SCORE_ATOL; labels must be identical.

The module is built once per session (``cpp_build.build_module()``; cppimport caches it).
"""

from __future__ import annotations

import ast
import gc
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment

from detr_deploy.export.torchscript import export_model, freeze_and_optimize, load_artefact, save_artefact
from detr_deploy.native import cpp_build
from detr_deploy.paths import CPP_DIR, REPO_ROOT

from conftest import run_in_threads
from torch_free import BLOCK_TORCH

BOX_ATOL = 1e-2  # pixels
SCORE_ATOL = 1e-5


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def detector(detr_cpp, small_artefact):
    return detr_cpp.Detector(small_artefact)


@pytest.fixture(scope="session")
def exact_detector(detr_cpp, small_artefact):
    return detr_cpp.Detector(small_artefact, optimize=False)


@pytest.fixture(scope="session")
def aoti_detector(detr_cpp):
    """The same Detector on the demo model's AOTInductor .pt2 (compiled once, cached under
    build/aoti; test_export_formats.py checks it against eager)."""
    from detr_deploy.export.aoti import demo_aoti

    return detr_cpp.Detector(demo_aoti())


@pytest.fixture(params=["torchscript", "aotinductor"])
def any_detector(request):
    """Both backends, for the tests whose checks do not depend on the model."""
    name = "detector" if request.param == "torchscript" else "aoti_detector"
    found = request.getfixturevalue(name)
    assert found.backend == request.param
    return found


@pytest.fixture(scope="session")
def python_module(small_artefact):
    module, _ = load_artefact(small_artefact)
    return module


@pytest.fixture(scope="session")
def tiny_artefact(small_model, tmp_path_factory):
    """The small model at a tiny input size (64-96 px), for tests that make hundreds of calls."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    export_model(small_model, path, min_size=64, max_size=96, score_threshold=0.0)
    return path


def python_detect(module, image, score_threshold=None):
    with torch.inference_mode():
        boxes, scores, labels = module(torch.from_numpy(image), score_threshold)
    return {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()}


def python_detect_batch(module, images, score_threshold=None):
    with torch.inference_mode():
        results = module.forward_batch([torch.from_numpy(image) for image in images], score_threshold)
    return [{"boxes": b.numpy(), "scores": s.numpy(), "labels": found.numpy()} for b, s, found in results]


def assert_identical(found, expected):
    for key in ("boxes", "scores", "labels"):
        assert found[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(found[key], expected[key], err_msg=key)


def match_detections(found, expected, box_atol=BOX_ATOL, score_atol=SCORE_ATOL):
    """Pair ``found`` with ``expected`` detections and check them; returns (max box diff,
    max score diff). Pairs must share the label; the pairing minimises box + score
    differences (scaled by the tolerances), so near-tied scores may come in either order."""
    assert len(found["scores"]) == len(expected["scores"]), "different numbers of detections"
    if len(found["scores"]) == 0:
        return 0.0, 0.0
    box_diff = np.abs(found["boxes"][:, None, :] - expected["boxes"][None, :, :]).max(-1)
    score_diff = np.abs(found["scores"][:, None] - expected["scores"][None, :])
    cost = box_diff / box_atol + score_diff / score_atol
    cost[found["labels"][:, None] != expected["labels"][None, :]] = 1e12
    rows, cols = linear_sum_assignment(cost)
    np.testing.assert_array_equal(found["labels"][rows], expected["labels"][cols], err_msg="labels")
    worst_box, worst_score = float(box_diff[rows, cols].max()), float(score_diff[rows, cols].max())
    assert worst_box <= box_atol, f"boxes differ by {worst_box} px > {box_atol}"
    assert worst_score <= score_atol, f"scores differ by {worst_score} > {score_atol}"
    assert np.all(np.diff(found["scores"]) <= 0), "scores not in descending order"
    return worst_box, worst_score


# ---------------------------------------------------------------------------- the build


def test_module_built_lean_and_cached(detr_cpp):
    path = Path(detr_cpp.__file__)
    assert path == cpp_build.module_path()
    assert path.stat().st_size < 3e6, "built with debug info? (-g0 gives ~0.4 MB, -g ~10 MB)"
    assert cpp_build.module_is_current()
    assert cpp_build.build_module() is detr_cpp  # cached: no rebuild, same module
    assert detr_cpp.libtorch_version() == torch.__version__.split("+")[0]


def test_module_links_only_cpu_libtorch(detr_cpp):
    from detr_deploy.native.runtime_folder import needed_libraries, read_rpath

    needed = needed_libraries(Path(detr_cpp.__file__))
    assert "libtorch_cpu.so" in needed and "libc10.so" in needed
    assert not [name for name in needed if "python" in name or "cuda" in name or name == "libtorch.so"], needed
    assert read_rpath(Path(detr_cpp.__file__)) == cpp_build.torch_build_info()["library_dir"]


def test_build_flags_come_from_torch():
    info = cpp_build.torch_build_info()
    assert info["cxx_standard"] >= 17
    assert info["cxx11_abi"] == int(torch._C._GLIBCXX_USE_CXX11_ABI)
    assert Path(info["library_dir"], "libtorch_cpu.so").is_file()
    assert Path(info["cmake_prefix_path"]) == Path(torch.utils.cmake_prefix_path)


def test_first_error_is_extracted_from_a_compiler_log():
    log = textwrap.dedent(f"""\
        gcc -pthread ... -c {REPO_ROOT}/cpp/detr_core.cpp -o x.o
        In file included from {REPO_ROOT}/cpp/detr_core.cpp:3:
        {REPO_ROOT}/cpp/detr_core.cpp:42:5: error: 'frobnicate' was not declared in this scope
           42 |     frobnicate();
              |     ^~~~~~~~~~
        {REPO_ROOT}/cpp/detr_core.cpp:50:1: error: expected ';'
        error: command '/usr/bin/gcc' failed with exit code 1
        """)
    message = cpp_build.first_error(log)
    assert message.startswith("cpp/detr_core.cpp:42:5: error: 'frobnicate' was not declared")
    assert "frobnicate();" in message and str(REPO_ROOT) not in message and ":50:" not in message


def test_build_error_is_one_readable_exception(tmp_path):
    source = tmp_path / "broken_module.cpp"
    source.write_text(
        textwrap.dedent("""\
        // cppimport
        /*
        <%
        setup_pybind11(cfg)
        %>
        */
        #include <pybind11/pybind11.h>
        int broken() { return undefined_name; }
        PYBIND11_MODULE(broken_module, m) { m.def("broken", &broken); }
        """)
    )
    with pytest.raises(cpp_build.BuildError) as caught:
        cpp_build.build_module(source=source)  # SystemExit would escape pytest.raises(Exception)
    message = str(caught.value)
    assert "broken_module.cpp:8:23: error: 'undefined_name' was not declared" in message  # source line
    assert "    8 | int broken() { return undefined_name; }" in message
    assert message.count("\n") < 10 and "full log" in message
    assert "undefined_name" in caught.value.log
    assert not Path(str(cpp_build.module_path(source)) + ".lock").exists(), "stale lock left behind"
    assert "broken_module" not in sys.modules


# ---------------------------------------------------------------------------- equality with Python


def test_exact_path_is_identical_to_python(exact_detector, python_module, test_images):
    for image in test_images:
        assert_identical(exact_detector.detect(image), python_detect(python_module, image))


def test_optimized_matches_python_within_tolerance(detector, python_module, test_images):
    for image in test_images:
        found = detector.detect(image)
        assert found["boxes"].dtype == np.float32 and found["scores"].dtype == np.float32
        assert found["labels"].dtype == np.int64 and found["boxes"].shape == (len(found["scores"]), 4)
        match_detections(found, python_detect(python_module, image))


def test_detect_batch_matches_python_forward_batch(detector, exact_detector, python_module, test_images):
    expected = python_detect_batch(python_module, test_images)
    for found, reference in zip(exact_detector.detect_batch(test_images), expected):
        assert_identical(found, reference)
    for found, reference in zip(detector.detect_batch(test_images), expected):
        match_detections(found, reference)


def test_optimized_path_is_python_freeze_and_optimize(detr_cpp, small_artefact, test_images):
    """Detector() runs the graph that Python's freeze_and_optimize makes, for forward and
    forward_batch, with or without the profiling executor: bitwise equal in one process.
    (C++'s torch::jit::freeze folds batch norms into forward only; detr_core folds every kept
    method, as Python does. This test failed while forward_batch ran unfolded.)"""
    python = freeze_and_optimize(load_artefact(small_artefact)[0])
    for profiling in (False, True):
        detector = detr_cpp.Detector(small_artefact, profiling_executor=profiling)
        with torch.jit.optimized_execution(profiling):
            expected = [python_detect(python, image) for image in test_images]
            expected_batch = python_detect_batch(python, test_images)
        for image, reference in zip(test_images, expected):
            assert_identical(detector.detect(image), reference)
        for found, reference in zip(detector.detect_batch(test_images), expected_batch):
            assert_identical(found, reference)
    with pytest.raises(TypeError):
        detr_cpp.Detector(small_artefact, profiling_executor="no")


def test_score_threshold(exact_detector, python_module, test_images):
    image = test_images[0]
    everything = exact_detector.detect(image)
    assert len(everything["scores"]) > 2  # artefact default threshold is 0: every query
    threshold = float(np.median(everything["scores"]))
    found = exact_detector.detect(image, score_threshold=threshold)
    assert 0 < len(found["scores"]) < len(everything["scores"]) and found["scores"].min() > threshold
    assert_identical(found, python_detect(python_module, image, threshold))
    batch = exact_detector.detect_batch([image], score_threshold=threshold)
    assert_identical(batch[0], python_detect_batch(python_module, [image], threshold)[0])


def test_traced_artefact(detr_cpp, small_model, tmp_path):
    image = np.ascontiguousarray(np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    path = tmp_path / "traced.pt"
    export_model(
        small_model,
        path,
        method="trace",
        example_image=torch.from_numpy(image),
        min_size=128,
        max_size=200,
        score_threshold=0.0,
    )
    traced = detr_cpp.Detector(path, optimize=False)
    assert traced.metadata["export_method"] == "trace"
    module, _ = load_artefact(path)
    with torch.inference_mode():
        boxes, scores, labels = module(torch.from_numpy(image))
    assert_identical(traced.detect(image), {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()})
    with pytest.raises(ValueError, match="traced at 120x160"):
        traced.detect(image[:100])
    with pytest.raises(ValueError, match="threshold fixed"):
        traced.detect(image, score_threshold=0.5)


# ---------------------------------------------------------------------------- numpy in and out


@pytest.mark.parametrize(
    "make_view",
    [
        lambda image: image[:, ::-1],  # negative stride
        lambda image: image[::2, 1::3],  # steps
        lambda image: np.asfortranarray(image),  # column-major
        lambda image: np.ascontiguousarray(image.transpose(1, 0, 2)).transpose(1, 0, 2),  # transposed view
    ],
    ids=["flipped", "strided", "fortran", "transposed"],
)
def test_non_contiguous_input_is_copied(exact_detector, test_images, make_view):
    view = make_view(test_images[0])
    assert not view.flags.c_contiguous
    before = view.copy()
    assert_identical(exact_detector.detect(view), exact_detector.detect(np.ascontiguousarray(view)))
    np.testing.assert_array_equal(view, before)


def test_input_is_never_modified(any_detector, test_images):
    detector = any_detector
    image = test_images[3].copy()
    image.flags.writeable = False  # read-only input is fine: C++ only reads it
    detector.detect(image)
    detector.detect_batch([image, image])
    np.testing.assert_array_equal(image, test_images[3])


def test_pil_image_and_path_like(detr_cpp, small_artefact, exact_detector, test_images):
    image = test_images[2]
    assert_identical(exact_detector.detect(Image.fromarray(image)), exact_detector.detect(image))
    assert detr_cpp.Detector(str(small_artefact), optimize=False).model_path == str(small_artefact)


def test_outputs_own_their_memory(detr_cpp, tiny_artefact, test_images):
    local = detr_cpp.Detector(tiny_artefact, optimize=False)
    found = local.detect(test_images[3])
    copies = {key: value.copy() for key, value in found.items()}
    assert found["boxes"].base is not None  # a view of C++ memory (the capsule), not a copy
    del local
    gc.collect()
    for key in copies:
        np.testing.assert_array_equal(found[key], copies[key])


def test_metadata_and_class_names(detector, small_artefact, detr_cpp):
    sidecar = json.loads(Path(small_artefact).with_suffix(".json").read_text())
    assert detector.class_names == sidecar["class_names"]
    for key in ("format", "format_version", "num_classes", "input", "preprocess", "score_threshold", "top_k"):
        assert detector.metadata[key] == sidecar[key]
    assert detector.max_side == sidecar["input"]["max_side"]
    assert detector.score_threshold == sidecar["score_threshold"]
    assert detector.backend == "torchscript" and detector.optimized
    assert detr_cpp.read_metadata(small_artefact) == detector.metadata
    assert "Detector" in repr(detector)


# ---------------------------------------------------------------------------- bad input


def _bad_images():
    ok = np.zeros((20, 30, 3), np.uint8)
    return [
        ("float32", ok.astype(np.float32), ValueError, "dtype uint8.*float32"),
        ("int64", ok.astype(np.int64), ValueError, "dtype uint8"),
        ("bool", ok.astype(bool), ValueError, "dtype uint8"),
        ("greyscale", ok[:, :, 0], ValueError, r"greyscale.*numpy.repeat"),
        ("rgba", np.zeros((20, 30, 4), np.uint8), ValueError, r"4 channels \(RGBA\?\).*image\[:, :, :3\]"),
        ("one channel", np.zeros((20, 30, 1), np.uint8), ValueError, "3 channels.*numpy.repeat"),
        ("4-D", ok[None], ValueError, "3 dimensions"),
        ("1-D", np.zeros(30, np.uint8), ValueError, "3 dimensions"),
        ("empty", np.zeros((0, 30, 3), np.uint8), ValueError, "empty: 0x30"),
        ("empty width", np.zeros((20, 0, 3), np.uint8), ValueError, "empty: 20x0"),
        ("too large", np.zeros((8193, 1, 3), np.uint8), ValueError, "8193x1 exceeds the limit of 8192"),
        ("not an array", "image.png", TypeError, "numpy uint8 array"),
        ("None", None, TypeError, "numpy uint8 array"),
    ]


@pytest.mark.parametrize("name,image,error,message", _bad_images(), ids=[case[0] for case in _bad_images()])
def test_bad_images_raise_clear_errors(any_detector, name, image, error, message):
    with pytest.raises(error, match=message):
        any_detector.detect(image)
    if image is not None and not isinstance(image, str):
        with pytest.raises(error, match=message):
            any_detector.detect_batch([np.zeros((20, 30, 3), np.uint8), image])


def test_bad_calls(detr_cpp, any_detector, small_artefact, test_images):
    image = test_images[0]
    for threshold in (-0.1, 1.0, float("nan"), math.inf):
        with pytest.raises(ValueError, match="score_threshold must be in"):
            any_detector.detect(image, score_threshold=threshold)
    with pytest.raises(ValueError, match="at least one image"):
        any_detector.detect_batch([])
    with pytest.raises(TypeError, match="list of images"):
        any_detector.detect_batch(image)
    with pytest.raises(ValueError, match="images\\[1\\].*dtype"):
        any_detector.detect_batch([image, image.astype(np.float32)])
    with pytest.raises(ValueError, match="num_threads"):
        detr_cpp.Detector(small_artefact, num_threads=0)
    with pytest.raises(TypeError, match="num_threads"):
        detr_cpp.Detector(small_artefact, num_threads="2")


def test_arguments_are_checked_strictly(detr_cpp, exact_detector, small_artefact, test_images):
    """No silent conversion (False is not 0.0, 2.0 is not 2) and no C++ cast error or bad_alloc:
    a TypeError or ValueError that names the argument."""
    image = test_images[3]
    for flag in (False, True, np.bool_(True)):
        with pytest.raises(TypeError, match="score_threshold must be a number in \\[0, 1\\) or None, got bool"):
            exact_detector.detect(image, score_threshold=flag)
        with pytest.raises(TypeError, match="score_threshold must be a number"):
            exact_detector.detect_batch([image], score_threshold=flag)
    for not_a_number in ("0.5", [0.5], b"0"):
        with pytest.raises(TypeError, match="score_threshold must be a number"):
            exact_detector.detect(image, score_threshold=not_a_number)
    # numbers of any numeric type are numbers: the same answer as the float
    expected = exact_detector.detect(image, score_threshold=0.5)
    for number in (np.float32(0.5), np.float64(0.5)):
        assert_identical(exact_detector.detect(image, score_threshold=number), expected)
    assert_identical(exact_detector.detect(image, score_threshold=np.int64(0)), exact_detector.detect(image, 0.0))
    maximum = detr_cpp.max_num_threads()
    assert maximum == 4 * os.cpu_count()
    for too_many in (maximum + 1, 10**30, -(10**30), -1):
        with pytest.raises(ValueError, match=f"num_threads must be in 1..{maximum} .* got {too_many}"):
            detr_cpp.Detector(small_artefact, num_threads=too_many)
    for wrong in (True, 2.0, np.float64(2)):
        with pytest.raises(TypeError, match="num_threads must be an int or None"):
            detr_cpp.Detector(small_artefact, num_threads=wrong)
    assert detr_cpp.Detector(small_artefact, num_threads=np.int64(1), optimize=False).score_threshold == 0.0
    for name in ("optimize", "profiling_executor", "require_sidecar"):
        for wrong in (1, None, "yes"):
            with pytest.raises(TypeError, match=f"{name} must be True or False"):
                detr_cpp.Detector(small_artefact, **{name: wrong})
    with pytest.raises(ValueError, match="model_path contains a NUL byte"):
        detr_cpp.Detector(str(small_artefact) + "\0.pt")
    with pytest.raises(TypeError, match="model_path must be a str, bytes or os.PathLike, got int"):
        detr_cpp.Detector(5)


# ---------------------------------------------------------------------------- integrity and model checks


@pytest.mark.parametrize("size", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 1 << 20, (1 << 20) + 13])
def test_sha256_matches_hashlib(detr_cpp, size, tmp_path):
    # the sizes around SHA-256's 64-byte blocks and its 8-byte length field, and past the 1 MiB read buffer
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert detr_cpp.sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_file_errors(detr_cpp, tmp_path):
    with pytest.raises(FileNotFoundError, match="file not found"):
        detr_cpp.sha256_file(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a regular file"):
        detr_cpp.sha256_file(tmp_path)


def _flip_byte_in_record(source: Path, target: Path, record_suffix: str) -> None:
    """``source`` copied to ``target`` with one byte of the zip record ``*record_suffix`` inverted
    (a stored record, so the damage is in the weights themselves, not in zip's bookkeeping)."""
    data = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = next(item for item in archive.infolist() if item.filename.endswith(record_suffix))
    assert info.compress_type == zipfile.ZIP_STORED and info.file_size > 64
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + info.file_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))


def _largest_record(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return max(archive.infolist(), key=lambda item: item.file_size).filename


def test_the_sidecar_sha256_is_checked_at_load(detr_cpp, small_artefact, tmp_path):
    sidecar = json.loads(small_artefact.with_suffix(".json").read_text())
    good = tmp_path / "good.pt"
    shutil.copyfile(small_artefact, good)
    shutil.copyfile(small_artefact.with_suffix(".json"), tmp_path / "good.json")
    detector = detr_cpp.Detector(good, optimize=False)
    assert detector.verified and detector.sha256 == hashlib.sha256(good.read_bytes()).hexdigest() == sidecar["sha256"]
    assert detr_cpp.Detector(good, optimize=False, require_sidecar=True).verified

    # one byte of the largest weight inverted: the archive still loads, only the sha256 tells
    damaged = tmp_path / "damaged.pt"
    _flip_byte_in_record(small_artefact, damaged, _largest_record(small_artefact))
    actual = hashlib.sha256(damaged.read_bytes()).hexdigest()
    unchecked = detr_cpp.Detector(damaged, optimize=False)  # no sidecar: loads, integrity unchecked
    assert not unchecked.verified and unchecked.sha256 == actual
    with pytest.raises(ValueError, match="has no sidecar damaged.json recording its sha256, and require_sidecar"):
        detr_cpp.Detector(damaged, require_sidecar=True)
    (tmp_path / "damaged.json").write_text(json.dumps(sidecar))
    message = f"damaged.pt does not match its sidecar damaged.json: sha256 {actual} != {sidecar['sha256']}"
    for optimize in (True, False):
        with pytest.raises(ValueError, match=re.escape(message)):
            detr_cpp.Detector(damaged, optimize=optimize)

    # truncated, extended: named by their size, before hashing
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(small_artefact.read_bytes()[:-1000])
    (tmp_path / "truncated.json").write_text(json.dumps(sidecar))
    size = sidecar["size_bytes"]
    with pytest.raises(
        ValueError, match=f"truncated.pt is {size - 1000} bytes but its sidecar truncated.json says {size}"
    ):
        detr_cpp.Detector(truncated)

    # sidecars that say nothing usable
    for name, text, message in [
        ("not_json", "{sha256", "its sidecar not_json.json is not valid JSON"),
        ("list", "[1, 2]", "its sidecar list.json is not a JSON object"),
        ("short", json.dumps(dict(sidecar, sha256="abc")), "its sidecar short.json has a sha256 that is not 64 hex"),
        ("number", json.dumps(dict(sidecar, sha256=5)), "has a sha256 that is not 64 hex digits"),
        ("size", json.dumps(dict(sidecar, size_bytes="big")), "has a size_bytes that is not an integer"),
    ]:
        shutil.copyfile(small_artefact, tmp_path / f"{name}.pt")
        (tmp_path / f"{name}.json").write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            detr_cpp.Detector(tmp_path / f"{name}.pt", optimize=False)
    # a digest in capitals is the same digest; a sidecar without one checks nothing (as load_artefact)
    shutil.copyfile(small_artefact, tmp_path / "upper.pt")
    (tmp_path / "upper.json").write_text(json.dumps(dict(sidecar, sha256=sidecar["sha256"].upper())))
    assert detr_cpp.Detector(tmp_path / "upper.pt", optimize=False).verified
    shutil.copyfile(small_artefact, tmp_path / "bare.pt")
    (tmp_path / "bare.json").write_text(json.dumps({key: sidecar[key] for key in ("format", "class_names")}))
    assert not detr_cpp.Detector(tmp_path / "bare.pt", optimize=False).verified
    with pytest.raises(ValueError, match="has no sidecar bare.json recording its sha256"):
        detr_cpp.Detector(tmp_path / "bare.pt", require_sidecar=True)


def _artefact_with(small_artefact: Path, path: Path, change_module=None, **metadata_changes) -> Path:
    """The small artefact re-saved to ``path`` after ``change_module(module)``, with metadata changes."""
    module, metadata = load_artefact(small_artefact)
    if change_module is not None:
        with torch.no_grad():
            change_module(module)
    for key in ("file", "sha256", "size_bytes"):
        metadata.pop(key, None)
    save_artefact(module, path, dict(metadata, **metadata_changes))
    return path


def test_non_finite_weights_and_metadata_that_does_not_fit_are_refused(detr_cpp, small_artefact, tmp_path):
    def poison(name: str, value: float):
        def change(module):
            tensors = dict(module.named_parameters()) | dict(module.named_buffers())
            tensors[name].view(-1)[3] = value

        return change

    metadata = json.loads(small_artefact.with_suffix(".json").read_text())
    seven = metadata["class_names"] + ["extra"]
    cases = [
        (
            poison("model.class_embed.weight", math.nan),
            {},
            r"parameter 'model.class_embed.weight' holds 1 non-finite value \(NaN or inf\)",
        ),
        (
            poison("model.backbone.0.body.bn1.running_var", math.inf),
            {},
            r"buffer 'model.backbone.0.body.bn1.running_var' holds 1 non-finite value",
        ),
        (
            None,
            {"class_names": seven, "num_classes": 7},
            "lists 7 class_names but the model was built for num_classes=6",
        ),
        (None, {"input": dict(metadata["input"], layout="CHW")}, "'input.layout' to be \"HWC\""),
        (None, {"input": dict(metadata["input"], dtype="float32")}, "'input.dtype' to be \"uint8\""),
        (None, {"input": dict(metadata["input"], channels=1)}, r"'input.channels' to be 3 \(RGB\)"),
        (None, {"input": dict(metadata["input"], color="BGR")}, "'input.color' to be \"RGB\""),
    ]
    for index, (change, metadata_changes, message) in enumerate(cases):
        # each saved with a fresh sidecar: what is refused is the content, not a mismatch
        path = _artefact_with(small_artefact, tmp_path / f"case_{index}.pt", change, **metadata_changes)
        for optimize in (True, False):
            with pytest.raises(ValueError, match=message):
                detr_cpp.Detector(path, optimize=optimize)


class _WithClassifier(torch.nn.Module):
    """No num_classes attribute, only a classifier named like DETR's, with ``outputs`` outputs."""

    def __init__(self, outputs: int):
        super().__init__()
        self.class_embed = torch.nn.Linear(4, outputs)

    def forward(self, image: torch.Tensor, score_threshold: Optional[float] = None):
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)


def test_a_classifier_that_does_not_fit_the_class_names_is_refused(detr_cpp, small_artefact, tmp_path):
    # without num_classes (a model other than the scripted pipeline), DETR's classifier says it:
    # one output per class plus "no object"
    metadata = json.dumps(json.loads(small_artefact.with_suffix(".json").read_text()))  # 6 classes
    fits = _save_with_metadata(torch.jit.script(_WithClassifier(7)), tmp_path / "fits.pt", metadata)
    assert len(detr_cpp.Detector(fits, optimize=False).detect(np.zeros((8, 8, 3), np.uint8))["scores"]) == 0
    for outputs in (6, 8):
        path = _save_with_metadata(torch.jit.script(_WithClassifier(outputs)), tmp_path / f"{outputs}.pt", metadata)
        message = (
            f"classifier class_embed.weight has {outputs} outputs (classes + 'no object') but metadata.json lists 6"
        )
        with pytest.raises(ValueError, match=re.escape(message)):
            detr_cpp.Detector(path, optimize=False)


class _FixedOutputs(torch.nn.Module):
    """Answers one fixed detection, whatever the image."""

    def __init__(self, score: float, label: int, box: float):
        super().__init__()
        self.score, self.label, self.box = score, label, box

    def forward(self, image: torch.Tensor, score_threshold: Optional[float] = None):
        boxes = torch.full((1, 4), self.box)
        return boxes, torch.full((1,), self.score), torch.full((1,), self.label, dtype=torch.int64)


def test_outputs_that_do_not_fit_the_artefact_are_errors(detr_cpp, small_artefact, tmp_path):
    image = np.zeros((8, 8, 3), np.uint8)
    metadata = json.loads(small_artefact.with_suffix(".json").read_text())
    fine = _save_with_metadata(torch.jit.script(_FixedOutputs(0.5, 5, 1.0)), tmp_path / "fine.pt", json.dumps(metadata))
    assert detr_cpp.Detector(fine, optimize=False).detect(image)["labels"].tolist() == [5]
    for (score, label, box), message in [
        ((0.5, 6, 1.0), "the model returned label 6, outside the artefact's 6 class_names"),
        ((0.5, -1, 1.0), "label -1"),
        ((math.nan, 0, 1.0), "the model returned score nan, outside"),
        ((1.5, 0, 1.0), "score 1.5"),
        ((math.inf, 0, 1.0), "score inf, outside"),
        ((0.5, 0, math.inf), "a box with a non-finite coordinate"),
    ]:
        path = _save_with_metadata(
            torch.jit.script(_FixedOutputs(score, label, box)), tmp_path / "bad.pt", json.dumps(metadata)
        )
        detector = detr_cpp.Detector(path, optimize=False)
        with pytest.raises(RuntimeError, match=re.escape(message)):
            detector.detect(image)
        with pytest.raises(RuntimeError, match=re.escape(message)):
            detector.detect_batch([image, image])


def _save_with_metadata(module, path, metadata):
    torch.jit.save(module, str(path), _extra_files={"metadata.json": metadata})
    return path


class _WrongOutputs(torch.nn.Module):
    def forward(self, image: torch.Tensor, score_threshold: Optional[float] = None):
        return image.double()[:2, :4], image.float()[0, :2, 0], image.long()[0, :2, 0]


class _WrongSignature(torch.nn.Module):
    def forward(self, image: torch.Tensor, scale: int):
        return image


@pytest.fixture(scope="module")
def bad_models(small_artefact, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_models")
    metadata = json.loads(Path(small_artefact).with_suffix(".json").read_text())
    for key in ("sha256", "size_bytes", "file"):
        metadata.pop(key)
    scripted = torch.jit.load(str(small_artefact))

    def variant(**changes):
        return json.dumps(dict(metadata, **changes))

    garbage = folder / "garbage.pt"
    garbage.write_bytes(b"this is not a model\n" * 100)
    empty = folder / "empty.pt"
    empty.write_bytes(b"")
    truncated = folder / "truncated.pt"
    truncated.write_bytes(Path(small_artefact).read_bytes()[:100_000])
    plain_zip = folder / "plain.zip"
    with zipfile.ZipFile(plain_zip, "w") as archive:
        archive.writestr("hello.txt", "hi")
    state_dict = folder / "state_dict.pt"
    torch.save({"weight": torch.zeros(3)}, state_dict)
    no_metadata = folder / "no_metadata.pt"
    torch.jit.save(scripted, str(no_metadata))
    # a valid archive whose model files are gone: metadata passes, loading must fail cleanly
    broken_code = folder / "broken_code.pt"
    with zipfile.ZipFile(small_artefact) as source, zipfile.ZipFile(broken_code, "w") as target:
        for item in source.infolist():
            if "/code/" not in item.filename:
                target.writestr(item, source.read(item.filename))
    return {
        "garbage": (garbage, ValueError, "not a TorchScript artefact"),
        "empty": (empty, ValueError, "not a TorchScript artefact"),
        "truncated": (truncated, ValueError, "not a TorchScript artefact"),
        "plain zip": (plain_zip, ValueError, "not a TorchScript artefact|no metadata"),
        "state dict": (state_dict, ValueError, "carries no metadata.json"),
        "no metadata": (no_metadata, ValueError, "carries no metadata.json"),
        "directory": (folder, ValueError, "not a regular file"),
        "missing": (folder / "missing.pt", FileNotFoundError, "model file not found"),
        "other format": (
            _save_with_metadata(scripted, folder / "format.pt", variant(format="onnx")),
            ValueError,
            "format 'onnx' v1.*reads 'detr_deploy.torchscript' v1",
        ),
        "future version": (
            _save_with_metadata(scripted, folder / "v2.pt", variant(format_version=2)),
            ValueError,
            "v2",
        ),
        "class count": (
            _save_with_metadata(scripted, folder / "classes.pt", variant(num_classes=7)),
            ValueError,
            "num_classes=7 but lists 6",
        ),
        "no max_side": (
            _save_with_metadata(scripted, folder / "max_side.pt", variant(input={"dtype": "uint8"})),
            ValueError,
            "'input.max_side'",
        ),
        "bad threshold": (
            _save_with_metadata(scripted, folder / "threshold.pt", variant(score_threshold=2)),
            ValueError,
            "score_threshold",
        ),
        "not json": (_save_with_metadata(scripted, folder / "json.pt", "{not json"), ValueError, "not valid JSON"),
        "wrong signature": (
            _save_with_metadata(torch.jit.script(_WrongSignature()), folder / "sig.pt", variant()),
            ValueError,
            "signature",
        ),
        "broken code": (broken_code, ValueError, "could not be loaded as TorchScript"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "garbage",
        "empty",
        "truncated",
        "plain zip",
        "state dict",
        "no metadata",
        "directory",
        "missing",
        "other format",
        "future version",
        "class count",
        "no max_side",
        "bad threshold",
        "not json",
        "wrong signature",
        "broken code",
    ],
)
def test_bad_model_files_raise_clear_errors(detr_cpp, bad_models, case):
    path, error, message = bad_models[case]
    with pytest.raises(error, match=message):
        detr_cpp.Detector(path)
    with pytest.raises(error, match=message):
        detr_cpp.Detector(path, optimize=False)


def test_wrong_model_outputs_raise_instead_of_returning_garbage(detr_cpp, small_artefact, tmp_path):
    metadata = json.loads(Path(small_artefact).with_suffix(".json").read_text())
    path = _save_with_metadata(torch.jit.script(_WrongOutputs()), tmp_path / "outputs.pt", json.dumps(metadata))
    with pytest.raises(RuntimeError, match="returned boxes Double"):
        detr_cpp.Detector(path, optimize=False).detect(np.zeros((8, 8, 3), np.uint8))


# ---------------------------------------------------------------------------- threads, GIL, memory


def test_threads_share_one_detector(any_detector, test_images):
    detector = any_detector
    serial = [detector.detect(image) for image in test_images]
    results = {}

    def work(worker):
        for round_ in range(2):
            for index in range(len(test_images)):
                position = (index + worker) % len(test_images)  # threads hit different sizes at once
                results[worker, round_, position] = detector.detect(test_images[position])

    errors = run_in_threads(work, workers=4)
    assert not errors, errors
    assert len(results) == 4 * 2 * len(test_images)
    for (_, _, position), found in results.items():
        assert_identical(found, serial[position])


def test_gil_is_released_during_detect(detr_cpp, small_artefact, test_images):
    """A Python thread keeps running while C++ detects: no gap in its heartbeat as long as
    the call. (With the GIL held, the heartbeat would stop for the whole call.)"""
    threads = torch.get_num_threads()
    try:
        local = detr_cpp.Detector(small_artefact, num_threads=1)  # process-wide: restored below
        _check_heartbeat(local, [test_images[0]] * 4)
    finally:
        torch.set_num_threads(threads)


def _check_heartbeat(local, images):
    local.detect_batch(images)  # warm up the graph executor
    beats = []
    stop = threading.Event()

    def heartbeat():
        while not stop.is_set():
            beats.append(time.perf_counter())
            time.sleep(0.001)

    thread = threading.Thread(target=heartbeat)
    thread.start()
    time.sleep(0.05)
    start = time.perf_counter()
    local.detect_batch(images)
    end = time.perf_counter()
    stop.set()
    thread.join()
    during = [beat for beat in beats if start <= beat <= end]
    longest_gap = max(np.diff([start] + during + [end]))
    assert end - start > 0.05, "call too short to tell"
    assert longest_gap < 0.5 * (end - start), f"heartbeat stopped for {longest_gap:.3f} s of a {end - start:.3f} s call"


def _rss_bytes():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_memory_stays_flat(detr_cpp, tiny_artefact):
    local = detr_cpp.Detector(tiny_artefact)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for _ in range(20):  # warm-up: graph executor specialisation, allocator caches
        local.detect(image)
    gc.collect()
    before = _rss_bytes()
    for index in range(200):
        found = local.detect(image if index % 2 else image[:, ::-1])
        assert found["boxes"].shape[1] == 4
    gc.collect()
    growth = _rss_bytes() - before
    print(f"RSS growth over 200 calls: {growth / 1e6:.2f} MB")
    assert growth < 20e6, f"resident memory grew by {growth / 1e6:.1f} MB over 200 calls"


# ---------------------------------------------------------------------------- Python without torch

NO_TORCH_SCRIPT = (
    BLOCK_TORCH
    + """
import importlib.util, json, sys
import numpy as np

module_path, model_path, images_path, out_path, threads = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("detr_cpp", module_path)
detr_cpp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(detr_cpp)
images = np.load(images_path)
results = {}
for optimize in (False, True):
    detector = detr_cpp.Detector(model_path, optimize=optimize, num_threads=int(threads))
    for index in range(len(images.files)):
        found = detector.detect(images[f"arr_{index}"])
        for key, value in found.items():
            results[f"{optimize}_{index}_{key}"] = value
np.savez(out_path, **results)
try:
    import torch
    blocked = False
except ImportError:
    blocked = True
print(json.dumps({"torch_in_sys_modules": "torch" in sys.modules, "import_torch_blocked": blocked,
                  "modules": sorted(m for m in sys.modules if m.startswith("torch"))}))
"""
)


def test_module_works_without_torch(detr_cpp, small_artefact, python_module, test_images, tmp_path):
    np.savez(tmp_path / "images.npz", *test_images)
    script = tmp_path / "no_torch.py"
    script.write_text(NO_TORCH_SCRIPT)
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            str(script),
            detr_cpp.__file__,
            str(small_artefact),
            str(tmp_path / "images.npz"),
            str(tmp_path / "out.npz"),
            str(torch.get_num_threads()),
        ],  # same threads: same float sums
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"torch_in_sys_modules": False, "import_torch_blocked": True, "modules": []}
    out = np.load(tmp_path / "out.npz")
    for index, image in enumerate(test_images):
        expected = python_detect(python_module, image)
        exact = {key: out[f"False_{index}_{key}"] for key in ("boxes", "scores", "labels")}
        optimized = {key: out[f"True_{index}_{key}"] for key in ("boxes", "scores", "labels")}
        assert_identical(exact, expected)
        match_detections(optimized, expected)


# ---------------------------------------------------------------------------- the CMake program


def test_cli_json_matches_module(detr_cli, detector, exact_detector, small_artefact, test_images, tmp_path):
    for index, image in enumerate(test_images[:2]):  # landscape and portrait
        path = tmp_path / f"image_{index}.png"  # PNG: lossless, both decoders see the same pixels
        Image.fromarray(image).save(path)
        for extra, module_detector in (([], detector), (["--no-optimize"], exact_detector)):
            # the module shares this process's intra-op thread count; the program must use the same
            threads = ["--threads", str(torch.get_num_threads())]
            result = subprocess.run(
                [str(detr_cli), str(small_artefact), str(path), *threads, *extra],
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, result.stderr
            output = json.loads(result.stdout)
            assert (output["height"], output["width"]) == image.shape[:2]
            assert output["optimized"] == (not extra)
            detections = output["detections"]
            found = {
                "boxes": np.array([d["box"] for d in detections], np.float32).reshape(-1, 4),
                "scores": np.array([d["score"] for d in detections], np.float32),
                "labels": np.array([d["label"] for d in detections], np.int64),
            }
            names = module_detector.class_names
            assert [d["class_name"] for d in detections] == [names[d["label"]] for d in detections]
            expected = module_detector.detect(image)
            if extra:  # the graph as saved: %.9g round-trips float32, so the same numbers
                assert_identical(found, expected)
            else:  # the optimised graph's oneDNN kernels may sum in another order in another
                # process (seen in CI: 3e-5 px apart), so equal within float32 noise
                np.testing.assert_array_equal(found["labels"], expected["labels"])
                np.testing.assert_allclose(found["boxes"], expected["boxes"], rtol=0, atol=1e-3)
                np.testing.assert_allclose(found["scores"], expected["scores"], rtol=0, atol=1e-5)


def test_cli_threshold_and_errors(detr_cli, exact_detector, small_artefact, test_images, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(test_images[0]).save(path)
    # halfway between two neighbouring scores: float noise between thread counts cannot flip a detection
    scores = np.sort(exact_detector.detect(test_images[0])["scores"])
    middle = len(scores) // 2
    threshold = float((scores[middle - 1] + scores[middle]) / 2)
    result = subprocess.run(
        [
            str(detr_cli),
            str(small_artefact),
            str(path),
            "--threshold",
            repr(threshold),
            "--no-optimize",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    scores = [d["score"] for d in json.loads(result.stdout)["detections"]]
    assert len(scores) == len(exact_detector.detect(test_images[0], score_threshold=threshold)["scores"])
    assert min(scores) > threshold

    def run(*args):
        return subprocess.run([str(detr_cli), *map(str, args)], capture_output=True, text=True, timeout=600)

    cases = [
        (run(tmp_path / "missing.pt", path), 1, "model file not found"),
        (run(small_artefact, tmp_path / "missing.png"), 1, "could not read image"),
        (run(path, path), 1, "not a TorchScript artefact"),
        (run(small_artefact, path, "--threshold", "1.5"), 1, "score_threshold must be in"),
        (run(small_artefact), 2, "expected MODEL and IMAGE"),
        (run(small_artefact, path, "--threshold", "abc"), 2, "needs a number"),
        (run(small_artefact, path, "--frobnicate"), 2, "unknown option"),
    ]
    for result, code, message in cases:
        assert result.returncode == code, (result.args, result.stderr)
        assert message in result.stderr and result.stdout == ""


def test_cli_checks_integrity_and_arguments(detr_cli, small_artefact, test_images, tmp_path):
    image = tmp_path / "image.png"
    Image.fromarray(test_images[3]).save(image)

    def run(*args):
        return subprocess.run([str(detr_cli), *map(str, args)], capture_output=True, text=True, timeout=600)

    result = run(small_artefact, image, "--no-optimize", "--require-sidecar")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["sha256"] == hashlib.sha256(small_artefact.read_bytes()).hexdigest() and output["verified"] is True
    bare = tmp_path / "bare.pt"
    shutil.copyfile(small_artefact, bare)
    output = json.loads(run(bare, image, "--no-optimize").stdout)
    assert output["verified"] is False and output["sha256"] == hashlib.sha256(bare.read_bytes()).hexdigest()
    damaged = tmp_path / "damaged.pt"
    _flip_byte_in_record(small_artefact, damaged, _largest_record(small_artefact))
    shutil.copyfile(small_artefact.with_suffix(".json"), tmp_path / "damaged.json")
    maximum = 4 * os.cpu_count()
    cases = [
        (run(bare, image, "--require-sidecar"), 1, "has no sidecar bare.json recording its sha256"),
        (run(damaged, image), 1, "damaged.pt does not match its sidecar damaged.json: sha256"),
        (run(small_artefact, image, "--threads", str(maximum + 1)), 2, f"--threads needs an integer in 1..{maximum}"),
        (run(small_artefact, image, "--threads", "1e30"), 2, "--threads needs an integer"),
        (run(small_artefact, image, "--repeat", "1e30"), 2, "--repeat needs an integer in 1..1000000"),
    ]
    for result, code, message in cases:
        assert result.returncode == code, (result.args, result.stderr)
        assert message in result.stderr and result.stdout == ""


def test_cli_runs_an_aotinductor_package(detr_cli, aoti_detector, test_images, tmp_path):
    path = tmp_path / "image.png"
    Image.fromarray(test_images[0]).save(path)
    result = subprocess.run(
        [str(detr_cli), aoti_detector.model_path, str(path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    detections = json.loads(result.stdout)["detections"]
    found = {
        "boxes": np.array([d["box"] for d in detections], np.float32).reshape(-1, 4),
        "scores": np.array([d["score"] for d in detections], np.float32),
        "labels": np.array([d["label"] for d in detections], np.int64),
    }
    match_detections(found, aoti_detector.detect(test_images[0]))


# ---------------------------------------------------------------------------- type stubs


def _stub_names(tree) -> tuple:
    module = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    detector = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Detector")
    members = {node.name for node in detector.body if isinstance(node, ast.FunctionDef)}
    return module, members, detector


def test_type_stubs_name_what_the_module_exposes(detr_cpp):
    tree = ast.parse((CPP_DIR / "detr_cpp.pyi").read_text())
    module, members, detector = _stub_names(tree)
    assert module - {"Detections"} == {name for name in dir(detr_cpp) if not name.startswith("_")}
    assert members - {"__init__"} == {name for name in dir(detr_cpp.Detector) if not name.startswith("_")}
    # parameter names and order as pybind11 reports them in each signature line
    for node in detector.body:
        if isinstance(node, ast.FunctionDef) and not node.decorator_list:
            bound = detr_cpp.Detector.__init__ if node.name == "__init__" else getattr(detr_cpp.Detector, node.name)
            signature = bound.__doc__.strip().splitlines()[0].replace("__init__", node.name)
            reported = re.findall(r"(\w+): ", signature.split("(", 1)[1])
            assert [arg.arg for arg in node.args.args] == reported, (node.name, signature)
