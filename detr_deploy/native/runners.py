"""Detectors for the ONNX Runtime and OpenVINO baselines, without torch.

``OnnxRuntimeDetector`` and ``OpenVinoDetector`` run the files written by
``detr_deploy.export.onnx.export_onnx`` / ``detr_deploy.export.openvino.export_openvino`` with the
same interface and the same input checks as the C++ ``detr_cpp.Detector``:
``detect(image uint8 [H, W, 3] RGB) -> {'boxes', 'scores', 'labels'}``. This module imports numpy
and, when a runner is created, its runtime package; never torch, so a service using these
runtimes does not ship it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Dict, Iterable, Optional

import numpy as np

__all__ = [
    "AOTI_FORMAT",
    "ONNX_FORMAT",
    "OPENVINO_FORMAT",
    "EXTRA_REQUIREMENT",
    "MIN_SIDE",
    "resized_short_side",
    "OnnxRuntimeDetector",
    "OpenVinoDetector",
]

AOTI_FORMAT = "detr_deploy.aotinductor"
ONNX_FORMAT = "detr_deploy.onnx"
OPENVINO_FORMAT = "detr_deploy.openvino"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
EXTRA_REQUIREMENT = "pip install -r requirements-runtimes.txt"
# torch.export specialises sizes 0 and 1, so a dynamic dimension starts at 2.
MIN_SIDE = 2


def _require(package: str):
    """Import an optional runtime package or say how to install it."""
    try:
        return __import__(package)
    except ImportError as error:
        raise ImportError(
            f"{package} is not installed: it is an optional extra for the baselines of chapter 02b; "
            f"install it with `{EXTRA_REQUIREMENT}`"
        ) from error


# ---------------------------------------------------------------------------- checks shared by the runners


def _check_image(image, max_side: int, min_side: int = MIN_SIDE) -> np.ndarray:
    """The C++ Detector's checks, with its messages, for the Python runners."""
    if not isinstance(image, np.ndarray):
        if hasattr(image, "__array_interface__") or hasattr(image, "__array__"):
            image = np.asarray(image)
        else:
            raise TypeError(f"image must be a numpy uint8 array [H, W, 3] (RGB), got {type(image).__name__}")
    if image.ndim == 2:
        raise ValueError(
            f"image has shape {image.shape} (greyscale?); expected uint8 [H, W, 3] RGB: "
            "convert with numpy.repeat(image[:, :, None], 3, axis=2)"
        )
    if image.ndim != 3:
        raise ValueError(f"image must have 3 dimensions [H, W, 3], got {image.ndim} (shape {image.shape})")
    if image.shape[2] == 4:
        raise ValueError(
            "image has 4 channels (RGBA?); expected 3 (RGB): drop or composite the alpha channel "
            "first, e.g. image[:, :, :3]"
        )
    if image.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB) in the last dimension, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must have dtype uint8 (0-255), got {image.dtype}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"image is empty: {height}x{width}")
    if height > max_side or width > max_side:
        raise ValueError(f"image {height}x{width} exceeds the limit of {max_side} pixels per side")
    if height < min_side or width < min_side:
        raise ValueError(f"image {height}x{width} is below this artefact's minimum of {min_side} pixels per side")
    return np.ascontiguousarray(image)


def resized_short_side(height: int, width: int, min_size: int, max_size: int) -> int:
    """The pipeline's resized shorter side (DetectionPipeline.resized_size), for the checks."""
    short, long = min(height, width), max(height, width)
    return max(min(min_size, (2 * max_size * short + long) // (2 * long)), 1)


def _check_resized(height: int, width: int, metadata: dict) -> None:
    limit = int(metadata["input"].get("min_resized_side", 1))
    pre = metadata["preprocess"]
    resized = resized_short_side(height, width, pre["min_size"], pre["max_size"])
    if resized < limit:
        raise ValueError(
            f"image {height}x{width} is too elongated for this export: its shorter side would be "
            f"resized to {resized} px, below the {limit} px its graph assumes "
            "(input.min_resized_side); pad it towards a squarer shape"
        )


def _check_threshold(value: Optional[float], default: float) -> float:
    threshold = default if value is None else float(value)
    if not 0.0 <= threshold < 1.0:  # also rejects NaN
        raise ValueError(f"score_threshold must be in [0, 1), got {threshold}")
    return threshold


def _detections(boxes, scores, labels) -> Dict[str, np.ndarray]:
    return {
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(scores, dtype=np.float32).reshape(-1),
        "labels": np.asarray(labels, dtype=np.int64).reshape(-1),
    }


def _read_sidecar(path: Path, expected_format: str) -> dict:
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise FileNotFoundError(f"{path.name} needs its sidecar {sidecar.name} (class names, limits) beside it")
    metadata = json.loads(sidecar.read_text())
    if metadata.get("format") != expected_format or metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{sidecar} has format {metadata.get('format')!r} v{metadata.get('format_version')}, "
            f"expected {expected_format!r} v{FORMAT_VERSION}"
        )
    return metadata


class _Runner:
    """What the ONNX Runtime and OpenVINO runners share: metadata, checks, the dict result."""

    metadata: dict

    @property
    def class_names(self):
        return list(self.metadata["class_names"])

    @property
    def max_side(self) -> int:
        return int(self.metadata["input"]["max_side"])

    @property
    def score_threshold(self) -> float:
        return float(self.metadata["score_threshold"])

    def detect(self, image, score_threshold: Optional[float] = None) -> Dict[str, np.ndarray]:
        """Like ``detr_cpp.Detector.detect``: uint8 RGB [H, W, 3] -> {'boxes', 'scores', 'labels'}."""
        threshold = _check_threshold(score_threshold, self.score_threshold)
        pixels = _check_image(image, self.max_side, int(self.metadata["input"].get("min_side", 1)))
        _check_resized(pixels.shape[0], pixels.shape[1], self.metadata)
        return _detections(*self._run(pixels, np.asarray(threshold, dtype=np.float32)))

    def detect_batch(self, images: Iterable, score_threshold: Optional[float] = None):
        images = list(images)
        if not images:
            raise ValueError("detect_batch needs at least one image")
        return [self.detect(image, score_threshold) for image in images]

    def _run(self, image: np.ndarray, threshold: np.ndarray):  # pragma: no cover - abstract
        raise NotImplementedError


class OnnxRuntimeDetector(_Runner):
    """An ``.onnx`` from :func:`export_onnx` run by ONNX Runtime on the CPU.

    ``num_threads``: intra-op threads (None: ONNX Runtime's default, one per core). Thread
    spinning is off: on a small shared machine, spinning workers steal the cores the
    other workers need (measured here: several times slower with it on).
    """

    def __init__(self, path, num_threads: Optional[int] = None) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.metadata = _read_sidecar(self.path, ONNX_FORMAT)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if num_threads is not None:
            if int(num_threads) <= 0:
                raise ValueError("num_threads must be positive (or None)")
            options.intra_op_num_threads = int(num_threads)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime's own exception types
            raise ValueError(
                f"{self.path} could not be loaded by ONNX Runtime: {str(error).splitlines()[0]}"
            ) from error
        self.backend = "onnxruntime"

    def _run(self, image, threshold):
        return self.session.run(["boxes", "scores", "labels"], {"image": image, "score_threshold": threshold})


class OpenVinoDetector(_Runner):
    """An OpenVINO IR (``.xml`` from :func:`export_openvino`) run on the CPU.

    Inference precision is pinned to f32: on CPUs with bf16 units OpenVINO would otherwise
    pick bf16. ``num_threads``: ``INFERENCE_NUM_THREADS`` (None: OpenVINO's default).
    """

    def __init__(self, path, num_threads: Optional[int] = None) -> None:
        ov = _require("openvino")
        path = Path(path)
        self.path = path / "model.xml" if path.is_dir() else path
        if not self.path.is_file():
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.metadata = _read_sidecar(self.path, OPENVINO_FORMAT)
        config = {"INFERENCE_PRECISION_HINT": "f32"}
        if num_threads is not None:
            if int(num_threads) <= 0:
                raise ValueError("num_threads must be positive (or None)")
            config["INFERENCE_NUM_THREADS"] = int(num_threads)
        try:
            self.compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError subclasses with long texts
            raise ValueError(f"{self.path} could not be loaded by OpenVINO: {str(error).splitlines()[0]}") from error
        self._local = threading.local()  # one infer request per thread: requests are not shareable
        self.backend = "openvino"

    def _run(self, image, threshold):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer({"image": image, "score_threshold": threshold})
        by_name = {next(iter(port.get_names())): value for port, value in result.items()}
        return by_name["boxes"], by_name["scores"], by_name["labels"]
