"""``python -m detr_deploy.batch INPUT... --out results.jsonl``: detect on many images with Ray.

INPUT is a folder, a glob or a text file listing image paths (see :mod:`detr_deploy.batch.inputs`).
Without ``--address`` a local Ray cluster sized to this machine runs for the command's duration;
with it (or ``RAY_ADDRESS``) the command joins that cluster, whose nodes must see the same model
and image paths. Results are appended to ``--out``, one JSON line per image; images already there
are skipped, so an interrupted run continues where it stopped. Progress goes to stderr, the summary
line to stdout. Exit codes: 0 done (error lines included), 1 the run failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import List, Optional

from detr_deploy.batch.inputs import InputError, resolve_inputs
from detr_deploy.batch.pipeline import (
    RayMissingError,
    cluster_cpus,
    import_ray,
    run_on_ray,
    start_ray,
)
from detr_deploy.batch.predictor import DetectorSettings
from detr_deploy.batch.results import Summary, sources_already_done
from detr_deploy.cli import add_model_argument
from detr_deploy.machine import usable_cpus
from detr_deploy.native.loader import load_detr_cpp
from detr_deploy.paths import MODELS_DIR

DEFAULT_MODEL = MODELS_DIR / "demo.pt"
DEFAULT_BATCH_SIZE = 8


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def root_cause(error: BaseException) -> str:
    """The last line of an error's text: for Ray's errors, which carry the remote traceback, the original error."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.batch",
        description="Detect on many images with a pool of Ray actors, one JSON line per image.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="a folder (searched recursively), a glob, or a text file of paths"
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="results, JSON lines (appended to)")
    add_model_argument(parser, what="exported artefact (.pt) every actor loads (default: data/models/demo.pt)")
    environment_defaults = (  # flag, variable, metavar, help
        ("--address", "RAY_ADDRESS", "ADDR", "Ray cluster to join (default: $RAY_ADDRESS, else a local one)"),
        ("--runtime", "DETR_RUNTIME", "DIR", "runtime folder with detr_cpp (default: $DETR_RUNTIME, else cpp/)"),
    )
    for flag, variable, metavar, text in environment_defaults:
        parser.add_argument(flag, default=os.environ.get(variable) or None, metavar=metavar, help=text)
    counts = (
        ("--actors", None, "N", "actors, each with a model (default: cluster CPUs / threads)"),
        ("--batch-size", DEFAULT_BATCH_SIZE, "B", f"image paths per actor call (default: {DEFAULT_BATCH_SIZE})"),
        ("--threads-per-actor", 1, "T", "libtorch threads per actor; each actor reserves T CPUs (default: 1)"),
    )
    for flag, default, metavar, text in counts:
        parser.add_argument(flag, type=positive_int, default=default, metavar=metavar, help=text)
    parser.add_argument(
        "--score-threshold", type=threshold, metavar="S", help="keep detections scoring above S (default: the model's)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot check alone; exits with status 2 and an ``error:`` line."""
    args.model = os.path.abspath(args.model or DEFAULT_MODEL)  # actors may run in other working directories
    if not Path(args.model).is_file():
        parser.error(f"--model {args.model}: no such file")
    try:  # here rather than in every actor, where a failure would read as a crashed worker
        load_detr_cpp(runtime=args.runtime).read_metadata(args.model)
    except (RuntimeError, ValueError, ImportError, OSError) as error:
        parser.error(f"--model: {error}")
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out {out}: is a folder; name a file")
    if not out.parent.is_dir():
        parser.error(f"--out {out}: the folder {out.parent} does not exist")
    if not args.address and args.actors and args.actors * args.threads_per_actor > usable_cpus():
        parser.error(
            f"--actors {args.actors} x --threads-per-actor {args.threads_per_actor} needs more CPUs "
            f"than the local cluster has ({usable_cpus()})"
        )
    try:
        import_ray()
    except RayMissingError as error:
        parser.error(str(error))


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    try:
        sources = resolve_inputs(args.inputs)
    except InputError as error:
        parser.error(str(error))
    if not sources:
        parser.error(f"no input images in {' '.join(args.inputs)}")
    done = sources_already_done(args.out)
    todo = [source for source in sources if source not in done]
    summary = Summary(skipped=len(sources) - len(todo))
    if todo:
        started = start_ray(args.address)
        try:
            available = cluster_cpus()
            threads = args.threads_per_actor
            actors = args.actors or max(1, available // threads)
            if actors * threads > available:
                print(
                    f"warning: {actors} actors x {threads} threads need {actors * threads} CPUs, the cluster has "
                    f"{available} now: the run waits for more (an autoscaler) or never starts",
                    file=sys.stderr,
                )
            settings = DetectorSettings(args.model, threads, args.score_threshold, args.runtime)
            ran = run_on_ray(todo, args.out, settings, actors, args.batch_size, progress=not args.no_progress)
        except Exception as error:  # lines written so far stay: a rerun continues from them
            print(f"error: the run failed: {root_cause(error)}", file=sys.stderr)
            return 1
        finally:
            if started:
                import_ray().shutdown()
        ran.skipped = summary.skipped
        summary = ran
    print(summary.line())
    return 0
