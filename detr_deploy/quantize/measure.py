"""What int8 costs and what it buys: accuracy (mAP on synthetic held-out and real cards, difference
from float32 on the sample cards) and speed (interleaved rounds, medians with spread), for the
C++ AOTInductor path and its OpenVINO and ONNX Runtime peers, each in float32 and int8.

Everything here takes *runners*: objects with ``detect(image uint8 [H, W, 3], score_threshold)
-> {"boxes", "scores", "labels"}`` (the C++ ``detr_cpp.Detector``, ``OpenVinoDetector``,
``OnnxRuntimeDetector``, or :class:`EagerRunner` for the Python pipeline).
"""

from __future__ import annotations

import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from detr_deploy.evaluate import box_iou_matrix, evaluate
from detr_deploy.machine import cpu_isa_flags, cpu_model
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.paths import BUILD_DIR, DATA_DIR, SAMPLES_DIR
from detr_deploy.quantize.pt2e import HELDOUT_SEED
from detr_deploy.timing import summary_rows as summarise_times
from detr_deploy.timing import time_interleaved

__all__ = [
    "HELDOUT_SEED",
    "REAL_CARDS",
    "INT8_ISA",
    "EagerRunner",
    "heldout_cards",
    "sample_images",
    "timing_image",
    "accuracy",
    "differences",
    "time_interleaved",  # detr_deploy.timing's, the main benchmark's (chapter 02c calls it from here)
    "summarise_times",  # detr_deploy.timing.summary_rows
    "speed",
    "artefact_bytes",
    "cold_start",
    "PROFILE_CONFIGS",
    "profiled_int8_package",
    "aoti_breakdown",
    "openvino_breakdown",
    "machine_record",
]

# HELDOUT_SEED (3): the demo model's held-out synthetic cards (never trained or calibrated on)
REAL_CARDS = DATA_DIR / "pic2card_real_val"  # evaluation only
# the instruction sets that decide int8 speed on x86: VNNI (int8 dot products in AVX-512 or
# AVX), AMX (int8/bf16 tile matrix multiply)
INT8_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


class EagerRunner:
    """The Python pipeline with the runners' ``detect`` interface (the float32 reference)."""

    backend = "eager"

    def __init__(self, pipeline: DetectionPipeline) -> None:
        self.pipeline = pipeline.eval()
        self.class_names = list(pipeline.model.config.class_names)

    def detect(self, image: np.ndarray, score_threshold: Optional[float] = None) -> Dict[str, np.ndarray]:
        with torch.inference_mode():
            boxes, scores, labels = self.pipeline(torch.from_numpy(np.ascontiguousarray(image)), score_threshold)
        return {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()}


def heldout_cards(num_images: int = 200, seed: int = HELDOUT_SEED, cache_dir=BUILD_DIR / "quantize") -> Path:
    """The synthetic held-out cards (``cards.generate_dataset``), rendered once under ``cache_dir``."""
    from detr_deploy.data.cards import generate_dataset

    folder = Path(cache_dir) / f"heldout-s{seed}-n{num_images}"
    if not (folder / "annotations.json").is_file():
        generate_dataset(folder, num_images, seed, formats=("coco",), progress=False)
    return folder


def sample_images() -> Dict[str, np.ndarray]:
    """The repository's sample cards (``data/samples/images``) as uint8 RGB arrays, by file name."""
    from detr_deploy.images import read_image

    return {path.name: read_image(path) for path in sorted((SAMPLES_DIR / "images").glob("card_*.jpg"))}


def timing_image(height: int, width: int, card: int = 0) -> np.ndarray:
    """The image every runtime is timed on: sample card ``card`` resized to ``height x width``,
    saved as a JPEG (quality 90) and decoded with Pillow, as a Python service receives it.
    The same pixels as the main benchmark's (chapter 04)."""
    from PIL import Image

    from detr_deploy.images import to_rgb_array

    cards = sorted((SAMPLES_DIR / "images").glob("card_*.jpg"))
    with Image.open(cards[card % len(cards)]) as source:
        resized = source.convert("RGB").resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG", quality=90)
    with Image.open(io.BytesIO(buffer.getvalue())) as image:
        return to_rgb_array(image)


def _as_function(runner) -> Callable:
    def detect(image, score_threshold):
        found = runner.detect(np.ascontiguousarray(image.numpy()), float(score_threshold))
        return found["boxes"], found["scores"], found["labels"]

    return detect


def accuracy(
    runners: Mapping[str, object],
    datasets: Mapping[str, Path],
    class_names: Sequence[str],
    max_images: Optional[int] = None,
) -> List[dict]:
    """mAP@0.5 and mAP@[.5:.95] (pycocotools, threshold 0.001) of every runner on every data set:
    one row per (runner, data set)."""
    rows = []
    for name, runner in runners.items():
        for data_name, path in datasets.items():
            result = evaluate(_as_function(runner), path, class_names=class_names, max_images=max_images)
            rows.append(
                {
                    "runner": name,
                    "data": data_name,
                    "images": result["num_images"],
                    "map50": result["map50"],
                    "map": result["map"],
                    "seconds_per_image": result["seconds_per_image"],
                }
            )
    return rows


def differences(reference, candidate, images: Mapping[str, np.ndarray], score_threshold: float) -> dict:
    """How far ``candidate``'s detections are from ``reference``'s on ``images`` at ``score_threshold``.

    Detections are paired greedily by IoU among those of the same label (int8 may swap the order
    of near-tied scores, so a position-by-position comparison would overstate the change).
    Returns the number of reference detections, how many found a partner (IoU >= 0.5), and the
    largest box-corner (pixels) and score differences over the pairs."""
    total, matched, box_diff, score_diff = 0, 0, 0.0, 0.0
    for image in images.values():
        ref, new = reference.detect(image, score_threshold), candidate.detect(image, score_threshold)
        total += len(ref["scores"])
        ious = box_iou_matrix(ref["boxes"], new["boxes"])
        if ious.size:
            ious = np.where(ref["labels"][:, None] == new["labels"][None, :], ious, 0.0)
        taken = set()
        for row in range(len(ref["scores"])):
            order = [column for column in np.argsort(-ious[row]) if column not in taken] if ious.size else []
            if not order or ious[row, order[0]] < 0.5:
                continue
            column = order[0]
            taken.add(column)
            matched += 1
            box_diff = max(box_diff, float(np.abs(ref["boxes"][row] - new["boxes"][column]).max()))
            score_diff = max(score_diff, float(abs(ref["scores"][row] - new["scores"][column])))
        total_new = len(new["scores"])
        matched_new = len(taken)
        total += total_new - matched_new  # detections only the candidate has count as unmatched too
    return {
        "detections": total,
        "matched": matched,
        "max_box_diff_px": round(box_diff, 2),
        "max_score_diff": round(score_diff, 4),
    }


def speed(
    runners: Mapping[str, object], image: np.ndarray, repeats: int = 9, warmup: int = 2
) -> Dict[str, List[float]]:
    """Seconds per ``detect`` call for every runner on ``image``, in interleaved rounds
    (:func:`detr_deploy.timing.time_interleaved`, the main benchmark's method: background load
    spreads over all runners); :func:`summarise_times` makes the rows (median, p90, speed-up
    against the first runner)."""
    image = np.ascontiguousarray(image)
    calls = {name: (lambda runner=runner: runner.detect(image)) for name, runner in runners.items()}
    return time_interleaved(calls, repeats=repeats, warmup=warmup)


def artefact_bytes(path: Path) -> int:
    """What an artefact weighs on disk: the ``.pt2`` or ``.onnx`` file, an OpenVINO ``.xml`` with its ``.bin``."""
    path = Path(path)
    files = [path, path.with_suffix(".bin")] if path.suffix == ".xml" else [path]
    return sum(file.stat().st_size for file in files if file.is_file())


# A fresh interpreter that imports a runtime, loads one artefact and detects once, torch blocked
# (the C++ module, OpenVINO and ONNX Runtime need none); prints the phases' seconds as JSON.
_COLD_CHILD = """
import importlib.abc, json, sys, time
start = time.perf_counter()

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this interpreter")

sys.meta_path.insert(0, NoTorch())
import numpy as np
runtime, path, threads, image, module = sys.argv[1:6]
if runtime == "C++ AOTInductor":
    from detr_deploy.native.loader import load_detr_cpp
    open_runner = lambda: load_detr_cpp(module).Detector(path, num_threads=int(threads))
else:
    from detr_deploy.native.runners import OnnxRuntimeDetector, OpenVinoDetector
    kind = OpenVinoDetector if runtime == "OpenVINO" else OnnxRuntimeDetector
    open_runner = lambda: kind(path, num_threads=int(threads))
pixels = np.load(image)
imported = time.perf_counter()
runner = open_runner()
loaded = time.perf_counter()
runner.detect(pixels)
done = time.perf_counter()
# VmHWM: this process's peak resident memory (getrusage's ru_maxrss would carry the parent's over exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"imports_s": imported - start, "load_s": loaded - imported, "first_detect_s": done - loaded,
                  "peak_rss_mb": peak_kb / 1024}))
"""


def cold_start(runtime: str, path: Path, image: np.ndarray, threads: int, scratch: Path) -> dict:
    """Seconds from starting a fresh interpreter to the first detection with ``path`` (a runtime
    of :data:`detr_deploy.quantize.artefacts.RUNNERS`), torch never imported, and their split:
    imports (numpy), loading (the runtime's module and the artefact), the first call; and the
    process's peak resident memory."""
    from detr_deploy.native import cpp_build

    module = cpp_build.build_module().__file__ if runtime == "C++ AOTInductor" else ""
    scratch.mkdir(parents=True, exist_ok=True)
    np.save(scratch / "image.npy", np.ascontiguousarray(image))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _COLD_CHILD, runtime, str(path), str(threads), str(scratch / "image.npy"), module],
        capture_output=True,
        text=True,
        timeout=600,
    )
    total = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"cold start of {runtime} {path} failed: {result.stderr.strip().splitlines()[-1:]}")
    phases = json.loads(result.stdout.strip().splitlines()[-1])
    return {"cold_start_s": round(total, 3), **{key: round(value, 3) for key, value in phases.items()}}


# Inductor's kernel profiling: every generated kernel and every library call of the compiled code
# records itself in torch.profiler (a separate build: the measured packages have none of it)
PROFILE_CONFIGS = {"freezing": True, "cpp.enable_kernel_profile": True}


def profiled_int8_package(model, images, package: Path, scope: str = "all", **settings) -> Path:
    """The int8 package ``package`` (same model, calibration images, scope and settings) compiled
    again with :data:`PROFILE_CONFIGS`, kept as ``profile/<package's name>`` beside it."""
    from detr_deploy.export.aoti import export_aoti
    from detr_deploy.quantize.pt2e import int8_pipeline

    path = Path(package).parent / "profile" / Path(package).name
    if not path.is_file():
        export_aoti(int8_pipeline(model, images, scope, **settings), path, inductor_configs=PROFILE_CONFIGS)
    return path


def _precision(kind: str) -> str:
    kind = kind.lower()
    return "int8" if kind in ("i8", "u8") else {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}.get(kind, kind)


def _aoti_part(name: str) -> str:
    if name.startswith("aoti_torch_cpu__q"):
        return "convolutions and linear layers (int8)"
    if "scaled_dot_product" in name:
        return "attention (float32)"
    if "upsample" in name:
        return "resize (float32)"
    if "max_pool" in name:
        return "max pool (int8)"
    if "cpp_fused" in name:
        return "generated kernels: quantize, normalisation, element-wise"
    return "other"


def _summed(parts: Dict[str, float], calls: int) -> Dict[str, float]:
    return {part: round(ms / calls, 2) for part, ms in sorted(parts.items(), key=lambda item: -item[1])}


def aoti_breakdown(package: Path, image: np.ndarray, calls: int = 5) -> Dict[str, float]:
    """Milliseconds per call by part of the graph, for a package of :func:`profiled_int8_package`
    run from Python on ``image`` (torch.profiler; the profiler adds a little to each part)."""
    from detr_deploy.export.aoti import load_aoti

    runner = load_aoti(package)
    pixels, threshold = torch.from_numpy(np.ascontiguousarray(image)), torch.tensor(0.5)
    for _ in range(2):
        runner(pixels, threshold)
    with torch.profiler.profile() as profiler:
        for _ in range(calls):
            runner(pixels, threshold)
    parts: Dict[str, float] = {}
    for event in profiler.key_averages():
        part = _aoti_part(event.key)
        parts[part] = parts.get(part, 0.0) + event.self_cpu_time_total / 1e3
    return _summed(parts, calls)


def openvino_breakdown(xml: Path, image: np.ndarray, threads: int, calls: int = 5) -> Dict[str, float]:
    """Milliseconds per call by part of the graph for an OpenVINO IR, from OpenVINO's own per-node
    counters (``PERF_COUNT``), float32 inference precision as the measured runner pins it; each
    part named with the precision OpenVINO ran it in."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": threads, "PERF_COUNT": True, "INFERENCE_PRECISION_HINT": "f32"}
    request = ov.Core().compile_model(str(xml), "CPU", config).create_infer_request()
    feed = {"image": np.ascontiguousarray(image), "score_threshold": np.asarray(0.5, np.float32)}
    for _ in range(2):
        request.infer(feed)
    parts: Dict[str, float] = {}
    for _ in range(calls):
        request.infer(feed)
        for node in request.get_profiling_info():
            precision = _precision(node.exec_type.rsplit("_", 1)[-1]) if node.exec_type else "?"
            if "scaled_dot_product_attention" in node.node_name:
                part = f"attention ({precision})"
            elif node.node_type in ("Convolution", "FullyConnected", "FullyConnectedQuantizedLegacy"):
                part = f"convolutions and linear layers ({precision})"
            elif node.node_type == "Interpolate":
                part = f"resize ({precision})"
            elif node.node_type == "MaxPool":
                part = f"max pool ({precision})"
            else:
                part = "other nodes: quantize, normalisation, element-wise"
            parts[part] = parts.get(part, 0.0) + node.real_time.total_seconds() * 1e3
    return _summed(parts, calls)


def machine_record(threads: int) -> dict:
    """The machine a measurement ran on: CPU, the int8-relevant instruction sets it has, threads, versions."""
    flags = set(cpu_isa_flags())
    versions = {"torch": torch.__version__}
    for package in ("torchao", "openvino", "nncf", "onnxruntime"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            versions[package] = None
    return {
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": threads,
        # libtorch's OpenMP threads spin at barriers unless this is PASSIVE; on a shared machine
        # spinning threads take the turns of descheduled ones and torch's times explode
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "isa": {flag: flag in flags for flag in INT8_ISA},
        "versions": versions,
    }
