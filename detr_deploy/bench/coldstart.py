"""Cold start: seconds from a fresh process's start to its first detection, and its peak memory.

The benchmark (:func:`cold_start`) spawns, through :mod:`detr_deploy.bench.launcher`, either
the CMake program ``detr_cli`` or this module as a child program::

    python -m detr_deploy.bench.coldstart CHILD --image JPEG --threads N [--model FILE]
        [--checkpoint FILE --size H W --score-threshold T] [--module detr_cpp.so]

``CHILD`` is one of :data:`CHILDREN`; each loads through the same functions of
:mod:`detr_deploy.bench.runtimes` the in-process benchmark uses (the C++ module through
:func:`detr_deploy.native.loader.load_detr_cpp`). The child prints one JSON line with
wall-clock timestamps (``time.time()``, comparable with the parent's) at its start, after
its imports, after loading and after the first detection, and whether torch was imported;
the launcher adds the peak resident memory. The ``cpp``, ``onnxruntime`` and ``openvino``
children never import torch.
"""

from __future__ import annotations

import time

STARTED = time.time()  # first thing: the imports below belong to the child's imports phase

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from detr_deploy.bench import runtimes  # noqa: E402
from detr_deploy.bench.inputs import decode  # noqa: E402
from detr_deploy.paths import REPO_ROOT  # noqa: E402

if TYPE_CHECKING:
    from detr_deploy.bench.record import Record

__all__ = ["Child", "CHILDREN", "child_command", "spawn", "cold_start", "main"]

MODULE = "detr_deploy.bench.coldstart"  # what the parent runs with python -m


@dataclass(frozen=True)
class Child:
    """A cold-start program: ``imports(args)`` is its imports phase (what it returns is handed
    on), ``load(args, imported)`` its loading phase, returning ``detect(image)``."""

    imports: Callable[[argparse.Namespace], object]
    load: Callable[[argparse.Namespace, object], Callable]


def _import(*names: str) -> Callable[[argparse.Namespace], None]:
    def imports(args: argparse.Namespace) -> None:
        for name in names:
            importlib.import_module(name)

    return imports


def _torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _load_eager(args: argparse.Namespace, _) -> Callable:
    from detr_deploy.model.checkpoint import load_model

    _torch_threads(args.threads)
    return runtimes.eager_detector(load_model(args.checkpoint), tuple(args.size), args.score_threshold).detect


def _load_torchscript(args: argparse.Namespace, _) -> Callable:
    _torch_threads(args.threads)
    return runtimes.torchscript_detector(args.model).detect


def _import_detr_cpp(args: argparse.Namespace):
    from detr_deploy.native.loader import load_detr_cpp

    return load_detr_cpp(module=args.module)


def _runner(class_name: str) -> Callable[[argparse.Namespace, object], Callable]:
    return lambda args, _: runtimes.runner_detector(class_name, args.model, args.threads).detect


CHILDREN: Dict[str, Child] = {
    "eager": Child(_import("torch", "detr_deploy.model.checkpoint", "detr_deploy.export.torchscript"), _load_eager),
    "torchscript": Child(_import("torch", "detr_deploy.export.torchscript"), _load_torchscript),
    "cpp": Child(
        _import_detr_cpp, lambda args, detr_cpp: runtimes.cpp_detector(detr_cpp, args.model, args.threads).detect
    ),
    "onnxruntime": Child(_import("detr_deploy.native.runners"), _runner("OnnxRuntimeDetector")),
    "openvino": Child(_import("detr_deploy.native.runners"), _runner("OpenVinoDetector")),
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.bench.coldstart",
        description="One cold start: import, load, detect once; print timestamps.",
    )
    parser.add_argument("child", choices=sorted(CHILDREN))
    parser.add_argument("--image", required=True, help="JPEG file to detect on")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--model", help="exported artefact (all but eager)")
    parser.add_argument("--checkpoint", help="checkpoint (eager)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), help="model input (eager)")
    parser.add_argument("--score-threshold", type=float, help="eager")
    parser.add_argument("--module", help="detr_cpp extension file (cpp)")
    args = parser.parse_args(argv)
    child = CHILDREN[args.child]
    imported_value = child.imports(args)
    imported = time.time()
    detect = child.load(args, imported_value)
    loaded = time.time()
    detect(decode(Path(args.image).read_bytes()))
    first = time.time()
    phases = {"started": STARTED, "imported": imported, "loaded": loaded, "first": first}
    print(json.dumps({**phases, "torch_imported": "torch" in sys.modules}))
    return 0


# ---------------------------------------------------------------------------- the parent's side


def child_command(context: runtimes.Context, name: str, image_path: Path, weights: Path) -> List[str]:
    """The command line of the cold start of runtime ``name`` (raises :class:`runtimes.Skip`)."""
    from detr_deploy.native import cpp_build

    if name == runtimes.CLI_RUNTIME:
        try:
            program = cpp_build.build_cli()
        except cpp_build.BuildError as error:
            raise runtimes.Skip(f"detr_cli does not build: {str(error).splitlines()[0]}") from None
        return [
            str(program),
            str(context.artefacts.get("torchscript", context)),
            str(image_path),
            "--threads",
            str(context.threads),
        ]
    runtime = runtimes.RUNTIMES[name]
    command = [
        sys.executable,
        "-m",
        MODULE,
        runtime.child,
        "--image",
        str(image_path),
        "--threads",
        str(context.threads),
    ]
    if runtime.artefact:
        command += ["--model", str(context.artefacts.get(runtime.artefact, context))]
    if runtime.child == "eager":
        command += [
            "--checkpoint",
            str(weights),
            "--size",
            *map(str, context.size),
            "--score-threshold",
            str(context.spec.score_threshold),
        ]
    if runtime.child == "cpp":
        command += ["--module", str(cpp_build.module_path())]
    return command


def spawn(command: List[str]) -> dict:
    """Run ``command`` in a fresh process: wall time from spawn to its first detection (a
    child of this module prints the timestamps of its phases) or to its exit (detr_cli), and
    its peak resident memory. ``{"error": ...}`` when it fails."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", "detr_deploy.bench.launcher", *command],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO_ROOT),
    )
    if result.returncode != 0:
        return {"error": "launcher failed: " + result.stderr.strip()[-200:]}
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        lines = [line for line in report["stderr"].strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit code {report['code']}"}
    spawned = report["spawned"]
    sample = {"peak_rss_mb": report["max_rss_kib"] / 1024.0}  # ru_maxrss is in KiB on Linux
    try:
        phases = json.loads(report["stdout"].strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        phases = None
    if isinstance(phases, dict) and "first" in phases:  # a Python child: timestamps of its phases
        sample["cold_start_s"] = phases["first"] - spawned
        sample["interpreter_s"] = phases["started"] - spawned
        sample["imports_s"] = phases["imported"] - phases["started"]
        sample["load_s"] = phases["loaded"] - phases["imported"]
        sample["first_detect_s"] = phases["first"] - phases["loaded"]
        sample["torch_imported"] = phases["torch_imported"]
    else:  # detr_cli: the whole process (it exits right after its one detection)
        sample["cold_start_s"] = report["ended"] - spawned
        sample["torch_imported"] = False
    return sample


def cold_start(record: "Record", context: runtimes.Context, name: str, image_path: Path, weights: Path) -> None:
    """Fresh processes of runtime ``name``: a coldstart.csv row with the medians of the runs."""
    try:
        command = child_command(context, name, image_path, weights)
    except runtimes.Skip as error:
        record.skip(name, context.spec.name, str(error))
        return
    samples = []
    for _ in range(context.settings.cold_runs):
        record.step(f"{context.spec.name}: cold start {name}")
        sample = spawn(command)
        if "error" in sample:
            record.skip(name, context.spec.name, "cold start failed: " + sample["error"][:200])
            return
        samples.append(sample)
    keys = [key for key, value in samples[0].items() if isinstance(value, (int, float)) and not isinstance(value, bool)]
    row = {"model": context.spec.name, "runtime": name, "threads": context.threads, "runs": len(samples)}
    row.update({key: round(float(np.median([s[key] for s in samples])), 3) for key in keys})
    row["torch_imported"] = samples[0].get("torch_imported")
    record.cold.append(row)


if __name__ == "__main__":
    sys.exit(main())
