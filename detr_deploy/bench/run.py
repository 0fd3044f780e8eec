"""The benchmark run: time every runtime on the settings' models and sizes, write data/benchmarks/.

    python -m detr_deploy.bench --out data/benchmarks                  # full run (~20 min, 2 cores)
    python -m detr_deploy.bench --out build/benchmark_quick --quick    # CI / notebook (1-2 min)

Writes into ``--out``:

* ``latency.csv``  one row per (model, runtime, input size, threads, batch): median and p90
  of interleaved timed runs, ratio to the eager Python pipeline timed in the same group,
  FLOPs per image, achieved GFLOP/s and that as a fraction of this machine's GEMM rate;
* ``coldstart.csv`` per runtime: seconds from process start to the first detection, the
  phases (imports, loading, first call) and the child's peak resident memory
  (:mod:`detr_deploy.bench.coldstart`);
* ``tuning.csv``   the libtorch path's options against its default (:mod:`detr_deploy.bench.tuning`);
* ``sizes.csv``    installed packages, torch/lib by library, the slim runtime folder,
  what stripping saves, artefacts, and what each runtime ships;
* ``models.csv``   #params and fp16/fp32/fp64 bytes of DETR variants and other detectors
  (both: :mod:`detr_deploy.bench.size_tables`);
* ``benchmark.json`` the machine (CPU, cores, threads, library versions), the settings,
  GEMM peak rates, FLOPs per size, runtimes skipped and why, and the wall time.

Timing follows the repository's rule: same images, thresholds and thread count for every
runtime, warm-up calls, then runs interleaved across runtimes (``timing.time_interleaved``)
and ratios taken within one group. Every in-process row is end to end from JPEG bytes:
Pillow decode -> runtime -> detections. The CMake program's row is its own steady-state
timer (``detr_cli --repeat``), which excludes decoding (``includes_decode`` = False).
Runtimes are entries of :data:`detr_deploy.bench.runtimes.RUNTIMES`; a missing optional
package or exporter skips its row with the reason recorded, never the run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from detr_deploy.bench.artefacts import Artefacts
from detr_deploy.bench.coldstart import cold_start
from detr_deploy.bench.inputs import decode, make_image
from detr_deploy.bench.record import Record
from detr_deploy.bench.runtimes import CLI_LABEL, CLI_RUNTIME, RUNTIMES, Context, Loaded, Skip
from detr_deploy.bench.settings import CACHE_DIR, FULL, MODELS, QUICK, Settings
from detr_deploy.bench.size_tables import size_rows
from detr_deploy.bench.timing import summarise, time_interleaved
from detr_deploy.bench.tuning import tune
from detr_deploy.machine import cpu_model, usable_cpus
from detr_deploy.paths import MODELS_DIR, relative

__all__ = ["machine_info", "add_ratios", "run_benchmark", "main"]


def machine_info(threads: Sequence[int]) -> dict:
    """CPU model, core counts, threads used, OS and library versions (for benchmark.json)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "pillow", "onnxruntime", "openvino", "opencv-python-headless"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cpus(),
        "threads_used": list(threads),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "versions": versions,
    }


def _load_all(record: Record, context: Context, names: Sequence[str]) -> Dict[str, Loaded]:
    loaded = {}
    for name in names:
        runtime = RUNTIMES[name]
        record.step(f"{context.spec.name} {context.size[0]}x{context.size[1]}: load {name}")
        try:
            loaded[name] = runtime.load(context)
        except Skip as error:
            record.skip(name, context.spec.name, str(error))
        except Exception as error:  # a runtime that fails must not end the run: record why
            record.skip(name, context.spec.name, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return loaded


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _time_group(record: Record, context: Context, loaded: Dict[str, Loaded], jpeg: bytes, batch: int) -> None:
    """Interleave every loaded runtime on the same image(s); append rows with ratios to eager."""
    settings = context.settings
    if batch == 1:
        candidates = {name: (lambda item=item: item.detect(decode(jpeg))) for name, item in loaded.items()}
    else:
        candidates = {
            name: (lambda item=item: item.detect_batch([decode(jpeg) for _ in range(batch)]))
            for name, item in loaded.items()
            if item.detect_batch is not None
        }
    if not candidates:
        return
    _set_threads(context.threads)
    height, width = context.size
    record.step(f"{context.spec.name} {height}x{width} t{context.threads} b{batch}: time {len(candidates)} runtimes")
    times = time_interleaved(candidates, repeats=settings.repeats, warmup=settings.warmup)
    rows = [
        _latency_row(record, context, name, RUNTIMES[name].label, batch, summarise(seconds), len(seconds), True)
        for name, seconds in times.items()
    ]
    add_ratios(rows)
    record.latency.extend(rows)
    record.progress.update(1)


def _latency_row(
    record: Record, context: Context, name: str, label: str, batch: int, stats: dict, runs: int, includes_decode: bool
) -> dict:
    height, width = context.size
    flops = record.flops[context.spec.name][f"{height}x{width}"]
    achieved = flops * batch / (stats["median_ms"] / 1e3) / 1e9
    return {
        "model": context.spec.name,
        "runtime": name,
        "label": label,
        "height": height,
        "width": width,
        "threads": context.threads,
        "batch": batch,
        "median_ms": round(stats["median_ms"], 2),
        "p90_ms": round(stats["p90_ms"], 2) if stats.get("p90_ms") is not None else None,
        "ms_per_image": round(stats["median_ms"] / batch, 2),
        "runs": runs,
        "gflop_per_image": round(flops / 1e9, 3),
        "achieved_gflops": round(achieved, 2),
        "fraction_of_peak": round(achieved / record.peak[context.threads], 4),
        "includes_decode": includes_decode,
    }


def add_ratios(rows: List[dict], eager: Optional[float] = None) -> None:
    """Set each row's ``ratio_to_eager``: ``eager`` ms (default: the eager row among ``rows``) over its own."""
    if eager is None:
        eager = next((row["median_ms"] for row in rows if row["runtime"] == "eager"), None)
    for row in rows:
        row["ratio_to_eager"] = round(eager / row["median_ms"], 3) if eager else None


def _time_cli(record: Record, context: Context, image_path: Path) -> None:
    """The CMake program's own steady-state median (``--repeat``): no decode, no Python."""
    from detr_deploy.native import cpp_build

    try:
        program = cpp_build.build_cli()
    except cpp_build.BuildError as error:
        record.skip(CLI_RUNTIME, context.spec.name, f"detr_cli does not build: {str(error).splitlines()[0]}")
        return
    model = context.artefacts.get("torchscript", context)
    record.step(f"{context.spec.name} {context.size[0]}x{context.size[1]}: detr_cli")
    command = [
        str(program),
        str(model),
        str(image_path),
        "--threads",
        str(context.threads),
        "--warmup",
        str(context.settings.warmup),
        "--repeat",
        str(context.settings.repeats),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        record.skip(CLI_RUNTIME, context.spec.name, f"detr_cli failed: {result.stderr.strip()[:200]}")
        return
    # detr_cli times each run after its untimed warm-up runs; same statistics as the other rows
    run_seconds = [milliseconds / 1e3 for milliseconds in json.loads(result.stdout)["run_ms"]]
    row = _latency_row(record, context, CLI_RUNTIME, CLI_LABEL, 1, summarise(run_seconds), len(run_seconds), False)
    eager = next(
        (
            r["median_ms"]
            for r in record.latency
            if r["model"] == context.spec.name
            and r["runtime"] == "eager"
            and (r["height"], r["width"]) == context.size
            and r["threads"] == context.threads
            and r["batch"] == 1
        ),
        None,
    )
    add_ratios([row], eager)
    record.latency.append(row)


def _write_csv(rows: List[dict], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def run_benchmark(
    settings: Settings,
    out,
    runtimes: Optional[Sequence[str]] = None,
    cli: bool = True,
    do_sizes: bool = True,
    command: Optional[str] = None,
    progress: bool = True,
) -> dict:
    """Run everything ``settings`` asks for and write the files into ``out``; returns the
    benchmark.json content. ``progress`` shows a tqdm bar on stderr. The caller's torch thread
    count is restored afterwards, since the sweeps change it process-wide."""
    import torch

    threads_before = torch.get_num_threads()
    try:
        return _run_benchmark(settings, out, runtimes, cli, do_sizes, command, progress)
    finally:
        torch.set_num_threads(threads_before)


def _checkpoint(model_name: str, model, seed: int) -> Path:
    """The weights file a cold start loads, as a service would: the demo's own, else saved once."""
    if model_name == "demo":
        return MODELS_DIR / "demo_weights.pth"
    from detr_deploy.model.checkpoint import save_checkpoint

    weights = CACHE_DIR / f"{model_name}_seed{seed}.pth"
    if not weights.is_file():
        save_checkpoint(model, weights)
    return weights


def _time_size(
    record: Record, names: List[str], context: Context, jpeg: bytes, image_path: Path, weights: Path, cli: bool
) -> None:
    """Every runtime at the context's model and size; at the sweep size also per thread count,
    batch, tuning and cold start."""
    settings, size = context.settings, context.size
    sweep = size == settings.sweep_size
    wanted = [n for n in names if n != "cpp_aotinductor" or sweep or settings.aoti != "sweep"]
    thread_list = settings.threads if sweep else (max(settings.threads),)
    shared: Dict[str, Loaded] = {}
    for threads in sorted(thread_list, reverse=True):  # all cores first
        _set_threads(threads)
        context = replace(context, threads=threads)
        loaded = {}
        per_instance = [n for n in wanted if RUNTIMES[n].threads_per_instance or n not in shared]
        fresh = _load_all(record, context, per_instance)
        for name in wanted:
            if name in fresh:
                loaded[name] = fresh[name]
                if not RUNTIMES[name].threads_per_instance:
                    shared[name] = fresh[name]
            elif name in shared:
                loaded[name] = shared[name]
        _time_group(record, context, loaded, jpeg, 1)
        if cli:
            _time_cli(record, context, image_path)
        if sweep and threads == max(thread_list):
            for batch in settings.batches:
                if batch != 1:
                    _time_group(record, context, loaded, jpeg, batch)
            if settings.tuning:
                tune(record, context, jpeg)
            for name in wanted + ([CLI_RUNTIME] if cli else []):
                if name in loaded or name == CLI_RUNTIME:
                    cold_start(record, context, name, image_path, weights)


def _run_benchmark(
    settings: Settings,
    out,
    runtimes: Optional[Sequence[str]],
    cli: bool,
    do_sizes: bool,
    command: Optional[str],
    progress: bool,
) -> dict:
    import torch
    from tqdm import tqdm

    from detr_deploy.bench.flops import detr_flops, gemm_peak_gflops

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    names = list(runtimes or RUNTIMES)
    unknown = [name for name in names if name not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; choose from {sorted(RUNTIMES)}")
    if "eager" not in names:
        names.insert(0, "eager")  # every ratio is to eager
    groups = sum(
        len(settings.sizes) + ((len(settings.threads) - 1) + (len(settings.batches) - 1)) for _ in settings.models
    )
    total = groups + (len(settings.models) if settings.tuning else 0) + (1 if do_sizes else 0)
    bar = tqdm(total=total, desc="benchmark", file=sys.stderr, ncols=100, mininterval=1.0, disable=not progress)
    record = Record(bar)
    artefacts = Artefacts(cached_only=("aoti",) if settings.aoti == "cached" else ())
    image_dir = CACHE_DIR / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    record.step("GEMM peak")
    for threads in settings.threads:
        record.peak[threads] = gemm_peak_gflops(threads)

    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
    built_models: Dict[str, object] = {}
    for model_name in settings.models:
        spec = MODELS[model_name]
        record.step(f"{model_name}: build")
        model = spec.build().eval()
        built_models[model_name] = model
        record.flops[model_name] = {f"{h}x{w}": detr_flops(model, h, w) for h, w in settings.sizes}
        weights = _checkpoint(model_name, model, settings.seed)
        for size in settings.sizes:
            jpeg = make_image(*size, seed=settings.seed)
            image_path = image_dir / f"card_{size[0]}x{size[1]}.jpg"
            image_path.write_bytes(jpeg)
            context = Context(spec, model, size, max(settings.threads), settings, artefacts)
            _time_size(record, names, context, jpeg, image_path, weights, cli)
    # the GEMM rate again at the end: the higher of the two is the peak (a busy moment
    # during one measurement would otherwise make every fraction of peak too high)
    record.step("GEMM peak (again)")
    for threads in settings.threads:
        record.peak[threads] = max(record.peak[threads], gemm_peak_gflops(threads))
    _set_threads(max(settings.threads))
    sizes_table, models_table = size_rows(record, artefacts, built_models) if do_sizes else ([], [])
    bar.close()

    for row in record.latency:  # against the final peak
        row["fraction_of_peak"] = round(row["achieved_gflops"] / record.peak[row["threads"]], 4)
    _write_csv(record.latency, out / "latency.csv")
    _write_csv(record.cold, out / "coldstart.csv")
    _write_csv(record.tuning, out / "tuning.csv")
    if do_sizes:
        _write_csv(sizes_table, out / "sizes.csv")
        _write_csv(models_table, out / "models.csv")
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC",
        "command": command or f"detr_deploy.bench.run.run_benchmark({settings.mode.upper()})",
        "machine": machine_info(settings.threads),
        "settings": {**asdict(settings), "runtimes": names, "cli": cli},
        "models": {
            name: {"weights": MODELS[name].weights, "score_threshold": MODELS[name].score_threshold}
            for name in settings.models
        },
        "runtimes": {
            name: {"label": r.label, "torch_in_python": r.torch_in_python, "cpp_api": r.cpp_api, "ships": list(r.ships)}
            for name, r in RUNTIMES.items()
        }
        | {CLI_RUNTIME: {"label": CLI_LABEL, "torch_in_python": False, "cpp_api": True, "ships": ["runtime_folder"]}},
        "gemm_peak_gflops": {str(k): round(v, 1) for k, v in record.peak.items()},
        "flops": record.flops,
        "export_seconds": artefacts.export_seconds,
        "skipped": record.skipped,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.bench",
        description="Measure latency, cold start, memory, sizes and FLOPs of every runtime; write CSV + JSON.",
    )
    parser.add_argument("--out", default="data/benchmarks", help="output folder (default: data/benchmarks)")
    parser.add_argument(
        "--quick", action="store_true", help="demo model, one size, few repeats (CI / notebook, 1-2 minutes)"
    )
    parser.add_argument("--runtimes", nargs="+", choices=sorted(RUNTIMES), help="only these (eager is always added)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="only these models")
    parser.add_argument(
        "--repeats", type=int, help=f"timed rounds per group (default: {QUICK.repeats} quick, {FULL.repeats} full)"
    )
    parser.add_argument("--no-cli", action="store_true", help="skip the CMake program")
    parser.add_argument("--no-sizes", action="store_true", help="skip sizes.csv and models.csv")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.models:
        settings = replace(settings, models=tuple(args.models))
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        settings = replace(settings, repeats=args.repeats)
    arguments = argv if argv is not None else sys.argv[1:]
    result = run_benchmark(
        settings,
        args.out,
        runtimes=args.runtimes,
        cli=not args.no_cli,
        do_sizes=not args.no_sizes,
        command=" ".join(["python -m detr_deploy.bench", *arguments]),
    )
    print(
        f"wrote {relative(args.out)}/{{latency,coldstart,tuning,sizes,models}}.csv and benchmark.json "
        f"in {result['wall_seconds']:.0f} s"
    )
    for skipped in result["skipped"]:
        print(f"  skipped {skipped['runtime']} ({skipped['model']}): {skipped['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
