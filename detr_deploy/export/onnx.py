"""ONNX: the pipeline as one self-contained ``.onnx``, run by ONNX Runtime.

:func:`export_onnx` writes the file that
:class:`~detr_deploy.native.runners.OnnxRuntimeDetector` runs: ``torch.onnx.export(dynamo=True)``
of the pipeline's ``torch.export`` program, then :func:`add_onnx_metadata`. onnx and onnxscript
are optional extras (``pip install -r requirements-runtimes.txt``); importing this module needs
neither.
"""

from __future__ import annotations

import contextlib
import json
import logging
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
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.native.runners import ONNX_FORMAT, _require

__all__ = ["NAMES", "add_onnx_metadata", "export_onnx"]

# the runners ask for inputs and outputs by these names
NAMES = dict(input_names=["image", "score_threshold"], output_names=["boxes", "scores", "labels"])


@contextlib.contextmanager
def _quiet_onnx_optimizer():
    """Silence onnxscript's optimiser, which logs a warning for each constant it leaves unfolded."""
    logger = logging.getLogger("onnxscript")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def add_onnx_metadata(
    path, pipeline: DetectionPipeline, program: torch.export.ExportedProgram, exporter: str = "dynamo", **sidecar
) -> dict:
    """Embed the metadata in the ``.onnx`` (``metadata_props``) and write its sidecar
    ``.json`` (plus ``sidecar``); ``program`` is the export the file was made from, whose
    guards give the size limits. Returns the metadata."""
    onnx = _require("onnx")
    path = Path(path)
    metadata = program_metadata(pipeline, ONNX_FORMAT, program)
    metadata["exporter"] = exporter
    proto = onnx.load(str(path))
    metadata["opset"] = int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))
    entry = proto.metadata_props.add()  # embedded too, so the .onnx alone says what it is
    entry.key, entry.value = METADATA_FILE, json.dumps(metadata, sort_keys=True)
    onnx.save(proto, str(path))
    write_sidecar(path, metadata, **sidecar)
    return metadata


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

    ``exporter="dynamo"`` (default): ``torch.onnx.export(dynamo=True)`` of the ``torch.export``
    program. ``"legacy"``: the TorchScript-based exporter with ``dynamic_axes`` (deprecated,
    opset 17).
    """
    _require("onnx")
    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    out_path = Path(out_path)
    pipeline, _ = as_pipeline(model, settings)
    # ONNX has no stable sort: topk_order (see DetectionPipeline.postprocess). For both
    # exporters the program's guards give the size limits.
    program = export_program(pipeline, dynamic=dynamic, example_size=example_size, topk_order=True)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if exporter == "dynamo":
        _require("onnxscript")
        # torch.onnx.export given the module runs torch.export with its own settings, which
        # reject this graph's size arithmetic; given the program, it converts it
        with torch.no_grad(), _quiet_onnx_optimizer():
            onnx_program = torch.onnx.export(program, dynamo=True, verbose=False, opset_version=opset, **NAMES)
        onnx_program.save(str(out_path))
    else:
        axes = {"image": {0: "height", 1: "width"}, **{name: {0: "detections"} for name in NAMES["output_names"]}}
        wrapper = ExportablePipeline(pipeline, topk_order=True).eval()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)  # TorchScript-era deprecations
            torch.onnx.export(
                wrapper,
                example_inputs(pipeline, example_size),
                str(out_path),
                dynamo=False,
                opset_version=opset or 17,
                dynamic_axes=axes if dynamic else None,
                **NAMES,
            )
    seconds = time.perf_counter() - start
    add_onnx_metadata(out_path, pipeline, program, exporter, export_seconds=round(seconds, 1))
    return out_path
