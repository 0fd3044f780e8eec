"""The int8 peers of the C++ path: OpenVINO quantized by NNCF, and ONNX Runtime's static quantization.

Both start from the float32 files of :mod:`detr_deploy.export.onnx` / :mod:`detr_deploy.export.openvino`
and calibrate on the same synthetic cards as :mod:`detr_deploy.quantize.pt2e`. The results run
with the same runners (``OpenVinoDetector``, ``OnnxRuntimeDetector``); their sidecars say
``precision: int8``.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from detr_deploy.export.artefact import write_sidecar
from detr_deploy.native.runners import _require

__all__ = ["openvino_int8", "onnxruntime_int8"]


def _feeds(images: Sequence[np.ndarray]):
    # threshold 0 keeps every query, so calibration sees the whole graph's value ranges
    threshold = np.asarray(0.0, dtype=np.float32)
    return [{"image": np.ascontiguousarray(image), "score_threshold": threshold} for image in images]


def _int8_sidecar(source_sidecar: Path, out_path: Path, quantization: dict, seconds: float, **extra) -> None:
    metadata = json.loads(source_sidecar.read_text())
    for key in ("file", "sha256", "size_bytes", "export_seconds", "weights_file", "weights_size_bytes"):
        metadata.pop(key, None)
    metadata.update(precision="int8", quantization=quantization)
    write_sidecar(out_path, metadata, quantize_seconds=round(seconds, 1), **extra)


def openvino_int8(
    fp32_xml, out_xml, images: Sequence[np.ndarray], *, calibration: Optional[dict] = None, ignored_types=()
) -> Path:
    """NNCF post-training quantization (``nncf.quantize`` with ``model_type=TRANSFORMER``, as NNCF
    advises for transformer models) of the OpenVINO IR ``fp32_xml``, calibrated on ``images``.
    ``ignored_types``: OpenVINO op types to keep in float32 (e.g. ``("MatMul",)`` for the
    transformer's matrix products). Returns the ``.xml`` written beside its ``.bin`` and sidecar."""
    ov = _require("openvino")
    nncf = _require("nncf")
    fp32_xml, out_xml = Path(fp32_xml), Path(out_xml)
    start = time.perf_counter()
    model = ov.Core().read_model(str(fp32_xml))
    ignored = nncf.IgnoredScope(types=list(ignored_types)) if ignored_types else None
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars
        quantized = nncf.quantize(
            model,
            nncf.Dataset(_feeds(images)),
            subset_size=len(images),
            model_type=nncf.ModelType.TRANSFORMER,  # NNCF's setting for transformer models
            **({"ignored_scope": ignored} if ignored else {}),
        )
    out_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    seconds = time.perf_counter() - start
    weights = out_xml.with_suffix(".bin")
    _int8_sidecar(
        fp32_xml.with_suffix(".json"),
        out_xml,
        {
            "method": "NNCF post-training quantization (nncf.quantize, model_type TRANSFORMER)",
            "nncf_version": nncf.__version__,
            "ignored_types": list(ignored_types),
            "calibration": dict(calibration or {}, num_images=len(images)),
        },
        seconds,
        weights_file=weights.name,
        weights_size_bytes=weights.stat().st_size,
    )
    return out_xml


class _Reader:
    """ONNX Runtime's CalibrationDataReader protocol: one feed dict per call, then None."""

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self._feeds = iter(_feeds(images))

    def get_next(self):
        return next(self._feeds, None)


def onnxruntime_int8(fp32_onnx, out_onnx, images: Sequence[np.ndarray], *, calibration: Optional[dict] = None) -> Path:
    """ONNX Runtime static quantization (``quantize_static``: QDQ format, int8 per-channel weights,
    uint8 activations, min/max calibration on ``images``) of the convolutions and matrix products
    of ``fp32_onnx``. Returns ``out_onnx`` (sidecar beside it)."""
    _require("onnxruntime")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    fp32_onnx, out_onnx = Path(fp32_onnx), Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    quantize_static(
        str(fp32_onnx),
        str(out_onnx),
        _Reader(images),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "MatMul", "Gemm"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    seconds = time.perf_counter() - start
    _int8_sidecar(
        fp32_onnx.with_suffix(".json"),
        out_onnx,
        {
            "method": "onnxruntime.quantization.quantize_static (QDQ, MinMax)",
            "weights": "int8 per channel",
            "activations": "uint8 per tensor",
            "op_types": ["Conv", "MatMul", "Gemm"],
            "calibration": dict(calibration or {}, num_images=len(images)),
        },
        seconds,
    )
    return out_onnx
