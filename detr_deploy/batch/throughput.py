"""The measurement in pic2card_notes/scaling.md: images/s of the serial C++ detector and of Ray actor pools.

    .venv/bin/python -m detr_deploy.batch.throughput --images 64 --repeats 5 --pools 1x1,1x2,2x1 \
        --csv data/benchmarks/batch_throughput.csv

The sample cards are copied (under distinct names) to ``--images`` files in a temporary folder. First
the serial baseline: one ``DetectionPredictor`` in this process, for each thread count the pools use;
then a local Ray cluster, and for each pool ``AxT`` (A actors of T threads) a full batch run into a
fresh results file. Each run is repeated; the table gives medians with the range. "end to end" counts
model loading (and, for Ray, actor start); "steady" is the rate after the first result. Every run's
results are compared with the serial run of the same thread count. ``--csv`` also writes the rows
(medians, minima and maxima) for chapter 04.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from detr_deploy.batch.pipeline import RayMissingError, import_ray, run_on_ray, start_ray
from detr_deploy.batch.predictor import DetectionPredictor, DetectorSettings
from detr_deploy.batch.results import Summary
from detr_deploy.cli import add_model_argument
from detr_deploy.machine import cpu_isa_flags, cpu_model, usable_cpus
from detr_deploy.paths import MODELS_DIR, SAMPLES_DIR

SAMPLE_IMAGES = SAMPLES_DIR / "images"
# small batches: the first result, after which the rate counts as steady, holds few images
BATCH_SIZE = 4


def copy_samples(count: int, folder: Path) -> List[str]:
    """``count`` image files in ``folder``: the sample cards in turn, each copy under its own name."""
    samples = sorted(SAMPLE_IMAGES.glob("*.jpg"))
    paths = []
    for index in range(count):
        sample = samples[index % len(samples)]
        path = folder / f"{sample.stem}_copy{index // len(samples)}{sample.suffix}"
        shutil.copyfile(sample, path)
        paths.append(str(path))
    return paths


def serial_run(paths: Sequence[str], model: str, threads: int) -> Tuple[Summary, Dict[str, dict]]:
    """One detector in this process, image after image; ``first_result_seconds`` is the model's loading."""
    start = time.perf_counter()
    predictor = DetectionPredictor(DetectorSettings(model, threads))
    loaded = time.perf_counter() - start
    results = {}
    for path in paths:
        line, _ = predictor.result_line(path)
        results[path] = json.loads(line)
    return Summary(images=len(paths), seconds=time.perf_counter() - start, first_result_seconds=loaded), results


def ray_run(paths: Sequence[str], model: str, actors: int, threads: int, folder: Path) -> Tuple[Summary, dict]:
    out = folder / f"results_{actors}x{threads}.jsonl"
    out.unlink(missing_ok=True)
    summary = run_on_ray(paths, out, DetectorSettings(model, threads), actors, BATCH_SIZE, progress=False)
    records = (json.loads(line) for line in out.read_text().splitlines())
    return summary, {record["source"]: record for record in records}


def spread(values: Sequence[Optional[float]], digits: int = 1) -> str:
    """``median (min-max)`` of the values that are not None."""
    values = [value for value in values if value is not None]
    if not values:
        return "-"
    median = f"{statistics.median(values):.{digits}f}"
    return median if len(values) == 1 else f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def table_row(name: str, cores: int, summaries: Sequence[Summary], same: Optional[bool]) -> str:
    return (
        f"| {name} | {cores} | {spread([s.images_per_second for s in summaries])} "
        f"| {spread([s.steady_images_per_second for s in summaries])} "
        f"| {spread([s.first_result_seconds for s in summaries], 2)} "
        f"| {'-' if same is None else 'yes' if same else 'NO'} |"
    )


def csv_row(name: str, actors: int, threads: int, summaries: Sequence[Summary], same: Optional[bool]) -> dict:
    row = {"run": name, "actors": actors, "threads_per_actor": threads, "runs": len(summaries)}
    for column, values in (
        ("images_per_s", [s.images_per_second for s in summaries]),
        ("steady_images_per_s", [s.steady_images_per_second for s in summaries]),
        ("first_result_s", [s.first_result_seconds for s in summaries]),
    ):
        values = [value for value in values if value is not None]
        for statistic, function in (("median", statistics.median), ("min", min), ("max", max)):
            row[f"{column}_{statistic}"] = round(function(values), 3) if values else ""
    row["same_as_serial"] = "" if same is None else same
    return row


def machine_description() -> dict:
    """What the numbers depend on: the CPU, its vector instruction sets, the cores, the load."""
    vector = [name for name in ("avx2", "avx512f", "avx512_vnni", "amx_tile") if name in cpu_isa_flags()]
    return {"cpu": cpu_model(), "vector_isa": vector, "cpus": usable_cpus(), "load_average_1min": os.getloadavg()[0]}


def parse_pool(text: str) -> Tuple[int, int]:
    try:
        actors, threads = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a pool is ACTORSxTHREADS, e.g. 2x1; got {text!r}") from None
    if actors < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"actors and threads must be positive, got {text!r}")
    return actors, threads


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detr_deploy.batch.throughput", description=__doc__.split("\n")[0])
    add_model_argument(parser, what="exported artefact (.pt) (default: data/models/demo.pt)")
    parser.add_argument("--images", type=int, default=64, help="images per run (default: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per configuration (default: 3)")
    parser.add_argument(
        "--pools",
        type=lambda text: [parse_pool(part) for part in text.split(",")],
        default=[(1, 1), (1, 2), (2, 1)],
        help="actor pools as ACTORSxTHREADS, comma-separated (default: 1x1,1x2,2x1)",
    )
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    args = parser.parse_args(argv)
    model = os.path.abspath(args.model or MODELS_DIR / "demo.pt")
    cores = usable_cpus()
    if args.images < 1 or args.repeats < 1:
        parser.error("--images and --repeats must be >= 1")
    for actors, threads in args.pools:
        if actors * threads > cores:
            parser.error(f"pool {actors}x{threads} needs {actors * threads} CPUs, this machine has {cores}")
    try:
        import_ray()
    except RayMissingError as error:
        parser.error(str(error))
    print(f"{args.images} images, {args.repeats} runs each, {cores} CPUs, load average {os.getloadavg()[0]:.2f}")
    print("| run | cores | images/s end to end | images/s steady | first result (s) | same results as serial |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="detr_batch_throughput_") as temporary:
        folder = Path(temporary)
        paths = copy_samples(args.images, folder)
        serial_results = {}
        rows: List[dict] = []
        for threads in sorted({threads for _, threads in args.pools}):
            runs = [serial_run(paths, model, threads) for _ in range(args.repeats)]
            serial_results[threads] = runs[0][1]
            summaries = [summary for summary, _ in runs]
            print(table_row(f"serial, {threads} thread(s)", threads, summaries, None))
            rows.append(csv_row("serial", 0, threads, summaries, None))
            sys.stdout.flush()
        started = start_ray()
        try:
            for actors, threads in args.pools:
                runs = [ray_run(paths, model, actors, threads, folder) for _ in range(args.repeats)]
                same = all(results == serial_results[threads] for _, results in runs)
                name = f"Ray, {actors} actor(s) x {threads} thread(s)"
                summaries = [summary for summary, _ in runs]
                print(table_row(name, actors * threads, summaries, same))
                rows.append(csv_row("ray", actors, threads, summaries, same))
                sys.stdout.flush()
        finally:
            if started:
                import_ray().shutdown()
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        machine = dict(machine_description(), images=args.images, repeats=args.repeats, date=time.strftime("%Y-%m-%d"))
        args.csv.with_suffix(".json").write_text(json.dumps(machine, indent=2) + "\n")
        print(f"wrote {args.csv} and {args.csv.with_suffix('.json').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
