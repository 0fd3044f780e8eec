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
import sys
import tempfile
import zipfile
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
    "CPU_WHEEL_DIRS",
    "CPU_WHEEL_ENV",
    "find_cpu_torch_wheel",
    "wheel_version",
    "wheel_requirements",
    "installed_wheel_size",
    "cpu_torch_wheel_rows",
]

# Where a CPU-only torch wheel is looked for (pip download torch --index-url
# https://download.pytorch.org/whl/cpu puts one in a folder); the variable names one file.
CPU_WHEEL_DIRS = (Path("/opt/wheels"),)
CPU_WHEEL_ENV = "DETR_CPU_TORCH_WHEEL"

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


def find_cpu_torch_wheel(folders: Optional[Iterable[Path]] = None) -> Optional[Path]:
    """A CPU-only torch wheel (``torch-<version>+cpu-*.whl``): the file ``$DETR_CPU_TORCH_WHEEL``
    names, else the highest version in ``folders`` (default :data:`CPU_WHEEL_DIRS`); None when
    there is none."""
    named = os.environ.get(CPU_WHEEL_ENV)
    if named:
        return Path(named) if Path(named).is_file() else None
    folders = CPU_WHEEL_DIRS if folders is None else folders
    found = [path for folder in folders if Path(folder).is_dir() for path in Path(folder).glob("torch-*+cpu-*.whl")]
    if not found:
        return None
    from packaging.version import Version

    return max(found, key=lambda path: Version(wheel_version(path)))


def wheel_version(wheel) -> str:
    """The version in a wheel's file name (``torch-2.13.0+cpu-cp311-...whl`` -> ``2.13.0+cpu``)."""
    return Path(wheel).name.split("-")[1]


def wheel_requirements(wheel) -> List[str]:
    """The normalised names a wheel requires here (its METADATA's Requires-Dist, environment
    markers evaluated for this interpreter, extras not requested)."""
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as archive:
        name = next(item for item in archive.namelist() if item.endswith(".dist-info/METADATA"))
        text = archive.read(name).decode()
    names = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            requirement = Requirement(line.partition(":")[2].strip())
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                names.append(_normalise(requirement.name))
    return names


def installed_wheel_size(wheel, python: str = sys.executable) -> int:
    """Bytes a wheel occupies once installed: ``pip install --no-deps --target`` into a temporary
    folder (pip compiles the .py files, as for every installed package measured here), then every
    file counted with :func:`tree_size`. The environment of ``python`` is not touched."""
    with tempfile.TemporaryDirectory(prefix="wheel_size_") as target:
        command = [python, "-m", "pip", "--isolated", "install", "--no-deps", "--no-index", "--quiet"]
        command += ["--disable-pip-version-check", "--target", target, str(wheel)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode != 0:
            lines = (run.stderr or run.stdout).strip().splitlines() or ["no message"]
            raise RuntimeError(f"pip could not install {Path(wheel).name}: {lines[-1][:200]}")
        return tree_size(target)


def cpu_torch_wheel_rows(
    installed: Dict[str, int], wheel: Optional[Path] = None, timed_torch: str = ""
) -> Tuple[List[dict], Optional[str]]:
    """sizes.csv rows for the CPU-only torch wheel, and None; or no rows and the reason.

    ``installed``: ``{normalised name: bytes}`` of the packages measured in this environment
    (the wheel's dependencies are counted at these sizes). Rows: the wheel installed
    (``package``), the wheel with the dependencies it requires (``package_group``), and what
    the TorchScript-from-Python runtime ships with it (``deployment``, numpy + Pillow added).
    """
    wheel = Path(wheel) if wheel else find_cpu_torch_wheel()
    if wheel is None:
        folders = ", ".join(str(folder) for folder in CPU_WHEEL_DIRS)
        return [], f"no CPU-only torch wheel (torch-*+cpu-*.whl) in {folders} and ${CPU_WHEEL_ENV} not set"
    try:
        torch_bytes = installed_wheel_size(wheel)
    except (RuntimeError, OSError) as error:
        return [], str(error)
    version = wheel_version(wheel)
    timed = f"; the timed rows use torch {timed_torch}" if timed_torch else ""
    label = f"torch {version} (CPU-only wheel), installed"
    rows = [
        {
            "category": "package",
            "item": label,
            "bytes": torch_bytes,
            "note": f"pip install --no-deps {wheel.name}{timed}",
        }
    ]
    closure: List[str] = []
    missing: List[str] = []
    for name in wheel_requirements(wheel):
        found = requirement_closure(name)  # the requirement and what it pulls in, as installed here
        missing += [] if found else [name]
        closure += [dep for dep in found if dep not in closure]
    sizes = {name: installed.get(name) or optional_distribution_size(name) for name in closure}
    missing += [name for name, size in sizes.items() if size is None]
    present = [name for name, size in sizes.items() if size is not None]
    dependencies = sum(sizes[name] for name in present)
    note = "dependencies at the sizes installed here: " + (", ".join(present) or "none")
    if missing:
        note += "; not installed here, not counted: " + ", ".join(missing)
    group = f"torch {version} (CPU-only wheel) with the dependencies it requires"
    rows.append({"category": "package_group", "item": group, "bytes": torch_bytes + dependencies, "note": note})
    common = installed.get("numpy", 0) + installed.get("pillow", 0)
    rows.append(
        {
            "category": "deployment",
            "item": f"torchscript, torch {version} (CPU-only wheel)",
            "bytes": common + torch_bytes + dependencies,
            "note": f"numpy + pillow + torch {version} (CPU-only wheel) + its dependencies",
        }
    )
    return rows, None
