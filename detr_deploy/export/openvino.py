"""OpenVINO IR: ``.xml`` + ``.bin``, converted from the ONNX export and run by OpenVINO.

:func:`export_openvino` writes the files that
:class:`~detr_deploy.native.runners.OpenVinoDetector` runs. openvino is an optional extra
(``pip install -r requirements-runtimes.txt``); importing this module does not need it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from detr_deploy.export.artefact import write_sidecar
from detr_deploy.export.onnx import export_onnx
from detr_deploy.native.runners import FORMAT_VERSION, ONNX_FORMAT, OPENVINO_FORMAT, _read_sidecar, _require

__all__ = ["add_openvino_metadata", "export_openvino"]


def export_openvino(
    source: Union[nn.Module, torch.export.ExportedProgram, str, os.PathLike],
    out_path,
    *,
    compress_to_fp16: bool = False,
    metadata: Optional[dict] = None,
    **settings,
) -> Path:
    """Convert to OpenVINO IR: ``out_path`` (``.xml``, or a folder for ``model.xml``) + ``.bin``
    + sidecar ``.json``; returns the ``.xml`` path.

    ``source``: a DETR (with ``min_size=...`` settings) or DetectionPipeline, exported to
    ONNX here with :func:`~detr_deploy.export.onnx.export_onnx` and converted from that; or the
    path of an ``.onnx`` from ``export_onnx`` (its sidecar supplies the metadata); or an
    ExportedProgram with ``metadata`` (OpenVINO converts those directly, without ``torch.jit.trace``,
    but not this pipeline's: no conversion rule for ``sym_min``/``sym_max``/``_upsample_bilinear2d_aa``).
    ``compress_to_fp16=False`` keeps fp32 weights: OpenVINO's default stores fp16 and moves
    outputs by ~1e-3.
    """
    ov = _require("openvino")
    if settings and isinstance(source, (str, os.PathLike, torch.export.ExportedProgram)):
        raise ValueError(
            f"pipeline settings ({', '.join(settings)}) go with a DETR model, not with {type(source).__name__}"
        )
    out_path = Path(out_path)
    xml = out_path / "model.xml" if out_path.suffix != ".xml" else out_path
    start = time.perf_counter()
    scratch = contextlib.ExitStack()  # holds a temporary .onnx until the IR is saved
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"model file not found: {source}")
        base = _read_sidecar(source, ONNX_FORMAT) if metadata is None else metadata
        converted = ov.convert_model(str(source))
        origin = source.name
    elif isinstance(source, torch.export.ExportedProgram):
        if metadata is None:
            raise ValueError("an ExportedProgram carries no class names: pass metadata=..., or pass the DETR model")
        base, converted, origin = metadata, ov.convert_model(source), "ExportedProgram"
    else:
        # Through ONNX: OpenVINO's PyTorch frontend has no rule for this graph's torch.sym_min/
        # sym_max (the dynamic resize size) nor for aten._upsample_bilinear2d_aa (antialiased
        # resize); its ONNX frontend converts ONNX's Resize(antialias=1) and the size arithmetic.
        folder = Path(scratch.enter_context(tempfile.TemporaryDirectory()))
        onnx_path = export_onnx(source, folder / "model.onnx", **settings)
        base = _read_sidecar(onnx_path, ONNX_FORMAT)
        converted = ov.convert_model(str(onnx_path))
        origin = "ONNX (dynamo exporter)"
    _name_outputs(converted)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with scratch:
        ov.save_model(converted, str(xml), compress_to_fp16=compress_to_fp16)
    add_openvino_metadata(
        xml,
        base,
        compress_to_fp16=compress_to_fp16,
        converted_from=origin,
        export_seconds=round(time.perf_counter() - start, 1),
    )
    return xml


def add_openvino_metadata(xml, base: dict, *, compress_to_fp16: bool, converted_from: str = "ONNX", **sidecar) -> dict:
    """Write the sidecar ``.json`` of an IR saved by ``openvino.save_model``: the metadata of
    what it was converted from (``base``: the ONNX export's), for the OpenVINO format, with
    the weights file's name and size. Returns the metadata."""
    xml = Path(xml)
    metadata = dict(base, format=OPENVINO_FORMAT, format_version=FORMAT_VERSION, converted_from=converted_from)
    for key in ("file", "sha256", "size_bytes", "export_seconds"):
        metadata.pop(key, None)  # the source file's, not the IR's
    metadata["compress_to_fp16"] = compress_to_fp16
    weights = xml.with_suffix(".bin")
    write_sidecar(
        xml,
        metadata,
        weights_file=weights.name,
        weights_size_bytes=weights.stat().st_size if weights.is_file() else 0,
        **sidecar,
    )
    return metadata


def _name_outputs(model) -> None:
    """Give the three outputs and two inputs stable names (ExportedProgram conversion leaves
    generated ones), so the runner can ask for them by name."""
    for port, name in zip(model.outputs, ("boxes", "scores", "labels")):
        port.get_tensor().set_names({name})
    for port, name in zip(model.inputs, ("image", "score_threshold")):
        port.get_tensor().set_names({name})
