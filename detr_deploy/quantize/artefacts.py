"""Every artefact of one model in float32 and int8, built once and cached under ``build/quantize``.

:func:`build_artefacts` returns the paths of the AOTInductor packages (float32 and int8), the ONNX
files (float32 and, where ONNX Runtime's quantizer handles the graph, int8) and the OpenVINO IRs
(float32 and NNCF int8); :func:`load_runners` opens them with their runners.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import traceback
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
from torch import nn

from detr_deploy.export import aoti
from detr_deploy.quantize import peers, pt2e

__all__ = ["RUNNERS", "build_artefacts", "load_runners"]

# (runtime, precision) in the order the tables show them
RUNNERS = (
    ("C++ AOTInductor", "fp32"),
    ("C++ AOTInductor", "int8"),
    ("OpenVINO", "fp32"),
    ("OpenVINO", "int8"),
    ("ONNX Runtime", "fp32"),
    ("ONNX Runtime", "int8"),
)


def _key(model: nn.Module, images: Sequence[np.ndarray], settings: dict) -> str:
    """The peers' folder: the model, settings and export code (as aoti's cache), the calibration
    images and the peers' quantization code."""
    digest = hashlib.sha256()
    digest.update(aoti._hash_inputs(model, settings).encode())
    digest.update(pt2e._images_digest(images).encode())
    for code in (peers._feeds, peers.openvino_int8, peers.onnxruntime_int8):
        digest.update(inspect.getsource(code).encode())
    return digest.hexdigest()[:16]


def build_artefacts(
    model: nn.Module,
    images: Sequence[np.ndarray],
    *,
    name: str,
    scopes: Sequence[str] = ("all",),
    calibration: Optional[dict] = None,
    cache_dir=pt2e.CACHE_DIR,
    **settings,
) -> Dict[str, object]:
    """Build (or reuse) the six artefacts of ``model``; ``images`` calibrate the int8 ones.

    ``scopes``: the int8 AOTInductor packages to make (:data:`~detr_deploy.quantize.pt2e.SCOPES`);
    the first is ``("C++ AOTInductor", "int8")``, any other ``("C++ AOTInductor", "int8 SCOPE")``.
    Returns ``{(runtime, precision): path}``, and for an int8 peer whose quantizer failed on
    this graph ``{(runtime, "int8"): "skipped: <reason>"}`` instead of a path."""
    from detr_deploy.export.onnx import export_onnx
    from detr_deploy.export.openvino import export_openvino

    cache_dir = Path(cache_dir)
    paths: Dict[object, object] = {}
    paths[RUNNERS[0]] = aoti.cached_aoti(model, cache_dir / "fp32", name=name, **settings)
    for index, scope in enumerate(scopes):
        paths[RUNNERS[1] if index == 0 else ("C++ AOTInductor", f"int8 {scope}")] = pt2e.cached_int8_aoti(
            model, images, cache_dir=cache_dir, name=name, scope=scope, calibration=calibration, **settings
        )
    folder = cache_dir / f"{name}-peers-{_key(model, images, settings)}"
    onnx_path = folder / "model.onnx"
    if not onnx_path.with_suffix(".json").is_file():
        export_onnx(model, onnx_path, **settings)
    ov_xml = folder / "openvino" / "model.xml"
    if not ov_xml.with_suffix(".json").is_file():
        export_openvino(onnx_path, ov_xml)
    ov_int8 = folder / "openvino_int8" / "model.xml"
    if not ov_int8.with_suffix(".json").is_file():
        peers.openvino_int8(ov_xml, ov_int8, images, calibration=calibration)
    paths[RUNNERS[2]], paths[RUNNERS[3]], paths[RUNNERS[4]] = ov_xml, ov_int8, onnx_path
    ort_int8 = folder / "model_int8.onnx"
    skipped = folder / "model_int8.skipped.json"
    if ort_int8.with_suffix(".json").is_file():
        paths[RUNNERS[5]] = ort_int8
    elif skipped.is_file():
        paths[RUNNERS[5]] = "skipped: " + json.loads(skipped.read_text())["reason"]
    else:
        try:
            paths[RUNNERS[5]] = peers.onnxruntime_int8(onnx_path, ort_int8, images, calibration=calibration)
        except Exception as error:  # the quantizer's own exception types; the reason is the report
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            skipped.write_text(json.dumps({"reason": reason, "traceback": traceback.format_exc()}, indent=2))
            paths[RUNNERS[5]] = "skipped: " + reason
    return paths


def load_runners(paths: Dict[object, object], threads: int) -> Dict[str, object]:
    """The runners of :func:`build_artefacts`'s artefacts (skipped ones left out), by "runtime precision",
    each on ``threads`` threads."""
    from detr_deploy.native import cpp_build
    from detr_deploy.native.runners import OnnxRuntimeDetector, OpenVinoDetector

    detr_cpp = cpp_build.build_module()
    openers = {
        "C++ AOTInductor": lambda path: detr_cpp.Detector(path, num_threads=threads),
        "OpenVINO": lambda path: OpenVinoDetector(path, num_threads=threads),
        "ONNX Runtime": lambda path: OnnxRuntimeDetector(path, num_threads=threads),
    }
    runners = {}
    for (runtime, precision), path in paths.items():
        if isinstance(path, Path):
            runners[f"{runtime} {precision}"] = openers[runtime](path)
    return runners
