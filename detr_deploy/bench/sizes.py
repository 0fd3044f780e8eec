"""Bytes on disk: installed packages, libraries, artefacts, and models' parameter counts.

Everything here is measured on this machine (files stat'ed, symbols stripped from copies),
except :data:`EFFICIENTDET_PARAMS`, cited from the EfficientDet paper because no
well-kept package builds those models offline.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from torch import nn

__all__ = [
    "tree_size",
    "files_size",
    "distribution_size",
    "requirement_closure",
    "library_sizes",
    "strip_savings",
    "parameter_bytes",
    "model_size_row",
    "EFFICIENTDET_PARAMS",
    "EFFICIENTDET_SOURCE",
]

# Tan, Pang, Le, "EfficientDet: Scalable and Efficient Object Detection", CVPR 2020,
# Table 2 ("#Params" column; 52M is printed for both D6 and D7, which share a network).
EFFICIENTDET_SOURCE = "Tan, Pang, Le, EfficientDet: Scalable and Efficient Object Detection, CVPR 2020, Table 2"
EFFICIENTDET_PARAMS = {
    "EfficientDet-D0": 3.9e6,
    "EfficientDet-D1": 6.6e6,
    "EfficientDet-D2": 8.1e6,
    "EfficientDet-D3": 12e6,
    "EfficientDet-D4": 21e6,
    "EfficientDet-D5": 34e6,
    "EfficientDet-D6": 52e6,
    "EfficientDet-D7": 52e6,
}


def files_size(paths: Iterable[Path]) -> int:
    """Total bytes of the regular files among ``paths``; each inode counted once, symlinks
    and missing files count 0 (a symlink's target is counted where it lives)."""
    seen = set()
    total = 0
    for path in paths:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        key = (info.st_dev, info.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += info.st_size
    return total


def tree_size(root) -> int:
    """Bytes of every regular file under ``root`` (a file: its own size); hard links once."""
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"no such file or folder: {root}")
    if root.is_file():
        return root.stat().st_size
    return files_size(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


def distribution_size(name: str) -> int:
    """Installed bytes of the distribution ``name`` (pip's RECORD: every file it installed)."""
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise metadata.PackageNotFoundError(f"{name} is not installed in this environment") from None
    files = distribution.files
    if files is None:
        raise ValueError(f"{name} has no RECORD file: its installed size cannot be measured")
    return files_size(Path(distribution.locate_file(file)) for file in files)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(name: str, extras: Tuple[str, ...] = ()) -> List[str]:
    """``name`` and every installed distribution it pulls in (recursively, extras followed,
    environment markers evaluated here), as normalised names, in discovery order.

    Requirements that are not installed are skipped: this measures what pip put here.
    """
    from packaging.requirements import Requirement

    order: List[str] = []
    queue: List[Tuple[str, Tuple[str, ...]]] = [(name, tuple(extras))]
    seen_extras: Dict[str, set] = {}
    while queue:
        current, current_extras = queue.pop(0)
        key = _normalise(current)
        try:
            distribution = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue
        known = seen_extras.setdefault(key, set())
        new_extras = set(current_extras) - known
        if key in order and not new_extras:
            continue
        if key not in order:
            order.append(key)
        known.update(current_extras)
        for text in distribution.requires or []:
            requirement = Requirement(text)
            environments = [{"extra": extra} for extra in ("",) + tuple(current_extras)]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                queue.append((requirement.name, tuple(sorted(requirement.extras))))
    return order


def library_sizes(folder) -> Dict[str, int]:
    """``{file name: bytes}`` of the regular files directly in ``folder`` (e.g. torch/lib), largest first."""
    folder = Path(folder)
    sizes = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file() and not path.is_symlink()}
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))


def strip_savings(
    paths: Iterable[Path], options: Tuple[str, ...] = ("--strip-unneeded",)
) -> Dict[str, Tuple[int, int]]:
    """``{name: (bytes before, bytes after)}``: each file copied to a temporary folder and
    stripped there with ``strip`` (the originals are untouched). Raises if ``strip`` is missing."""
    if shutil.which("strip") is None:
        raise FileNotFoundError("the strip program (binutils) is not installed")
    result: Dict[str, Tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(prefix="strip_") as scratch:
        for path in paths:
            path = Path(path)
            copy = Path(scratch) / path.name
            shutil.copyfile(path, copy)
            run = subprocess.run(["strip", *options, str(copy)], capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"strip {path.name} failed: {run.stderr.strip()}")
            result[path.name] = (path.stat().st_size, copy.stat().st_size)
            copy.unlink()
    return result


def parameter_bytes(parameters: int) -> Dict[str, int]:
    """Bytes to store ``parameters`` weights in float16, float32 and float64."""
    return {"fp16_bytes": 2 * parameters, "fp32_bytes": 4 * parameters, "fp64_bytes": 8 * parameters}


def model_size_row(name: str, model: nn.Module, source: str = "counted") -> dict:
    """A row of the model table: #params (learned weights, frozen batch-norm affine included)
    and the bytes they take in fp16 / fp32 / fp64."""
    from detr_deploy.model.detr import count_parameters

    parameters = int(count_parameters(model))
    return {"model": name, "params": parameters, **parameter_bytes(parameters), "source": source}


def cited_rows() -> List[dict]:
    """EfficientDet D0-D7 rows of the model table, from the paper (see :data:`EFFICIENTDET_SOURCE`)."""
    return [
        {"model": name, "params": int(count), **parameter_bytes(int(count)), "source": "cited: " + EFFICIENTDET_SOURCE}
        for name, count in EFFICIENTDET_PARAMS.items()
    ]


def optional_distribution_size(name: str) -> Optional[int]:
    """:func:`distribution_size`, or None when ``name`` is not installed."""
    try:
        return distribution_size(name)
    except metadata.PackageNotFoundError:
        return None
