"""ONNX: the pipeline as one self-contained ``.onnx``, run by ONNX Runtime.

:func:`export_onnx` writes the file that
:class:`~detr_deploy.native.runners.OnnxRuntimeDetector` runs. onnx and onnxscript are optional
extras (``pip install -r requirements-runtimes.txt``); importing this module needs neither.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from detr_deploy.export.artefact import METADATA_FILE, write_sidecar
from detr_deploy.export.program import (
    DEFAULT_EXAMPLE_SIZE,
    ExportablePipeline,
    as_pipeline,
    example_inputs,
    export_program,
    program_metadata,
)
from detr_deploy.native.runners import ONNX_FORMAT, _require

__all__ = ["export_onnx"]


def export_onnx(
    model: nn.Module,
    out_path,
    *,
    exporter: str = "dynamo",
    opset: Optional[int] = None,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    **settings,
) -> Path:
    """Export to ONNX (``out_path``, one self-contained file) + sidecar ``.json``; returns the path.

    ``settings``: the pipeline's, for a DETR ``model``, as for
    :func:`~detr_deploy.export.aoti.export_aoti`.

    ``exporter="dynamo"`` (default): ``torch.onnx.export(dynamo=True)`` from ``torch.export``
    with ``dynamic_shapes``. ``"legacy"``: the TorchScript-based exporter with ``dynamic_axes``
    (deprecated, opset 17).
    """
    _require("onnx")
    import onnx

    out_path = Path(out_path)
    pipeline, detr = as_pipeline(model, settings)
    wrapper = ExportablePipeline(pipeline, topk_order=True).eval()  # ONNX has no stable sort
    inputs = example_inputs(pipeline, example_size)
    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    # the dynamo exporter starts from this program; for both, its guards give the size limits
    program = export_program(pipeline, dynamic=dynamic, example_size=example_size, topk_order=True)
    metadata = program_metadata(pipeline, detr, ONNX_FORMAT, dynamic, example_size, program)
    metadata["exporter"] = exporter
    out_path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(input_names=["image", "score_threshold"], output_names=["boxes", "scores", "labels"])
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)  # TorchScript-era deprecations
        if exporter == "dynamo":
            _require("onnxscript")
            # it prints progress lines, and its optimiser one line per skipped constant fold
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                onnx_program = torch.onnx.export(program, inputs, dynamo=True, opset_version=opset, **names)
            onnx_program.save(str(out_path))
        elif exporter == "legacy":
            axes = (
                {
                    "image": {0: "height", 1: "width"},
                    "boxes": {0: "detections"},
                    "scores": {0: "detections"},
                    "labels": {0: "detections"},
                }
                if dynamic
                else None
            )
            torch.onnx.export(
                wrapper, inputs, str(out_path), dynamo=False, opset_version=opset or 17, dynamic_axes=axes, **names
            )
    seconds = time.perf_counter() - start
    proto = onnx.load(str(out_path))
    metadata["opset"] = int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))
    entry = proto.metadata_props.add()  # embedded too, so the .onnx alone says what it is
    entry.key, entry.value = METADATA_FILE, json.dumps(metadata, sort_keys=True)
    onnx.save(proto, str(out_path))
    write_sidecar(out_path, metadata, export_seconds=round(seconds, 1))
    return out_path
