"""What every export format shares to describe its artefact.

The pipeline every format exports (:func:`make_pipeline`), the metadata that says what the
artefact is and how to feed it (:func:`pipeline_metadata`, embedded in the artefact as
:data:`METADATA_FILE`), and the sidecar ``.json`` beside it that repeats the metadata with the
file's sha256 and size (:func:`write_sidecar`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from detr_deploy.model.detr import DETR
from detr_deploy.model.pipeline import DetectionPipeline

# one name for the embedded metadata, shared with the torch-free runners
from detr_deploy.native.runners import METADATA_FILE

__all__ = ["METADATA_FILE", "make_pipeline", "pipeline_metadata", "sha256_of", "write_sidecar"]


def make_pipeline(model: DETR, **settings) -> DetectionPipeline:
    """Wrap ``model`` (put in eval mode) in a :class:`DetectionPipeline` for export."""
    return DetectionPipeline(model.eval(), num_classes=model.config.num_classes, **settings).eval()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pipeline_metadata(pipeline: DetectionPipeline, model: DETR, fmt: str, format_version: int, method: str) -> dict:
    """The artefact's description: its format, classes, input contract, outputs and settings."""
    return {
        "format": fmt,
        "format_version": format_version,
        "export_method": method,
        "class_names": list(model.config.class_names),
        "num_classes": model.config.num_classes,
        "input": {
            "dtype": "uint8",
            "layout": "HWC",
            "channels": 3,
            "color": "RGB",
            "max_side": pipeline.max_input_side,
        },
        "outputs": {
            "boxes": "float32 [N, 4] x0, y0, x1, y1 in input pixels",
            "scores": "float32 [N], descending",
            "labels": "int64 [N] index into class_names",
        },
        "preprocess": {
            "min_size": pipeline.min_size,
            "max_size": pipeline.max_size,
            "antialias": pipeline.antialias,
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
        },
        "score_threshold": pipeline.score_threshold,
        "top_k": pipeline.top_k,
        "model_config": model.config.to_dict(),
        "torch_version": torch.__version__,
    }


def write_sidecar(path: Path, metadata: dict, **extra) -> Path:
    """Write ``path.with_suffix('.json')``: ``metadata`` plus the file's name, sha256 and size
    (and ``extra``); returns the sidecar's path."""
    sidecar = path.with_suffix(".json")
    full = dict(metadata, file=path.name, sha256=sha256_of(path), size_bytes=path.stat().st_size, **extra)
    sidecar.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return sidecar
