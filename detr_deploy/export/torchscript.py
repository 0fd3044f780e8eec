"""Export a DETR to a deployable TorchScript artefact: ``model.pt`` + ``model.json``.

The ``.pt`` holds the scripted (or traced) :class:`~detr_deploy.model.pipeline.DetectionPipeline`
with its metadata embedded as the extra file ``metadata.json`` (so a C++ loader can read
it with ``torch::jit::load(path, device, extra_files)``); the ``.json`` sidecar repeats the
metadata and adds the file's sha256 and size.

TorchScript is deprecated in this torch release: ``torch.jit.script``/``trace`` emit a
FutureWarning. The successor path is ``torch.export`` + AOTInductor (chapter 02b).
Warnings are collected and returned in :class:`ExportReport`, not silenced.

Command line (``--format torchscript`` is the default)::

    python -m detr_deploy.export --arch detr_resnet50 [--checkpoint FILE] --out data/models/r50.pt
"""

from __future__ import annotations

import collections
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from detr_deploy.export.artefact import METADATA_FILE, make_pipeline, pipeline_metadata, sha256_of, write_sidecar
from detr_deploy.model.detr import DETR
from detr_deploy.model.pipeline import DetectionPipeline

__all__ = [
    "ARTEFACT_FORMAT",
    "ARTEFACT_FORMAT_VERSION",
    "ExportReport",
    "count_warnings",
    "script_pipeline",
    "trace_pipeline",
    "freeze_and_optimize",
    "save_artefact",
    "load_artefact",
    "export_model",
]

ARTEFACT_FORMAT = "detr_deploy.torchscript"
ARTEFACT_FORMAT_VERSION = 1


@dataclass
class ExportReport:
    """What an export produced and what torch said while doing it."""

    module: torch.jit.ScriptModule
    seconds: float
    warning_counts: Dict[str, int] = field(default_factory=dict)  # "Category: first line" -> count

    def warnings_table(self) -> List[Tuple[str, int]]:
        return sorted(self.warning_counts.items(), key=lambda item: -item[1])


def count_warnings(records: Sequence[warnings.WarningMessage]) -> Dict[str, int]:
    """``{"Category: first line of the message": count}`` of recorded warnings."""
    counts: Dict[str, int] = collections.Counter()
    for record in records:
        first_line = str(record.message).strip().splitlines()[0] if str(record.message).strip() else ""
        counts[f"{record.category.__name__}: {first_line[:120]}"] += 1
    return dict(counts)


def script_pipeline(pipeline: DetectionPipeline) -> ExportReport:
    """``torch.jit.script``: control flow and shapes stay dynamic, any input size works."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        module = torch.jit.script(pipeline.eval())
    return ExportReport(module, time.perf_counter() - start, count_warnings(records))


def trace_pipeline(pipeline: DetectionPipeline, example_image: torch.Tensor) -> ExportReport:
    """``torch.jit.trace``: records the ops run on ``example_image``; Python ints computed
    from its size (the resize target, the output scale) are frozen into the graph."""
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        with torch.no_grad():
            # check_trace re-runs the same image, so it cannot see what tracing gets wrong here
            module = torch.jit.trace(pipeline.eval(), (example_image,), check_trace=False)
    return ExportReport(module, time.perf_counter() - start, count_warnings(records))


def freeze_and_optimize(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Inline weights as constants (``freeze``), then fuse for CPU (``optimize_for_inference``).

    Do this after loading, not before saving: a module saved after
    ``optimize_for_inference`` cannot be loaded back in this torch release.
    """
    preserved = ["forward_batch"] if hasattr(module, "forward_batch") else []
    frozen = torch.jit.freeze(module.eval(), preserved_attrs=preserved)
    return torch.jit.optimize_for_inference(frozen, other_methods=preserved)


def save_artefact(module: torch.jit.ScriptModule, path, metadata: dict) -> Path:
    """Write ``path`` (.pt, metadata embedded) and its sidecar ``path.with_suffix('.json')``.

    Returns the sidecar path. The sidecar adds ``sha256`` and ``size_bytes`` of the .pt.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(module, str(path), _extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
    return write_sidecar(path, metadata)


def load_artefact(path, verify: bool = True) -> Tuple[torch.jit.ScriptModule, dict]:
    """Load an artefact and its metadata; check format and (``verify``) the sidecar's sha256."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model artefact not found: {path}")
    sidecar = path.with_suffix(".json")
    if verify and sidecar.is_file():
        expected = json.loads(sidecar.read_text()).get("sha256")
        actual = sha256_of(path)
        if expected and expected != actual:
            raise ValueError(f"{path} does not match its sidecar {sidecar.name}: sha256 {actual} != {expected}")
    extra_files = {METADATA_FILE: ""}
    try:
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
    except Exception as error:  # RuntimeError for non-zip / non-TorchScript files
        raise ValueError(f"{path} is not a loadable TorchScript artefact: {str(error).splitlines()[0]}") from error
    if not extra_files[METADATA_FILE]:
        raise ValueError(f"{path} is TorchScript but carries no {METADATA_FILE}: not exported by detr_deploy")
    metadata = json.loads(extra_files[METADATA_FILE])
    if metadata.get("format") != ARTEFACT_FORMAT or metadata.get("format_version") != ARTEFACT_FORMAT_VERSION:
        raise ValueError(
            f"{path} has format {metadata.get('format')!r} v{metadata.get('format_version')}, "
            f"expected {ARTEFACT_FORMAT!r} v{ARTEFACT_FORMAT_VERSION}"
        )
    return module.eval(), metadata


def export_model(
    model: DETR,
    out_path,
    method: str = "script",
    example_image: Optional[torch.Tensor] = None,
    **pipeline_settings,
) -> Tuple[Path, ExportReport]:
    """Export ``model`` with its pipeline to ``out_path``; returns (sidecar path, report).

    ``method`` is ``"script"`` (recommended: any input size) or ``"trace"`` (needs
    ``example_image`` and only works at that image's size).
    """
    pipeline = make_pipeline(model, **pipeline_settings)
    if method == "script":
        report = script_pipeline(pipeline)
    elif method == "trace":
        if example_image is None:
            raise ValueError("method='trace' needs an example_image (uint8 [H, W, 3])")
        report = trace_pipeline(pipeline, example_image)
    else:
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    metadata = pipeline_metadata(pipeline, model, ARTEFACT_FORMAT, ARTEFACT_FORMAT_VERSION, method)
    if method == "trace":
        metadata["traced_input_size"] = [int(example_image.shape[0]), int(example_image.shape[1])]
    return save_artefact(report.module, out_path, metadata), report
