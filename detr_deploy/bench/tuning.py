"""The libtorch path's options, measured against its default (tuning.csv).

:func:`tune` interleaves, on the sweep size, the C++ module's default against one change at a
time (profiling executor, no graph optimisation, one thread, a non-contiguous input,
channels-last weights, batching) and the TorchScript-from-Python and eager variants; then
times the first calls of a freshly loaded Detector, and the inter-op thread settings, each in
its own process, since torch reads them once per process::

    python -m detr_deploy.bench.tuning --interop N --threads N --model FILE --image JPEG
        --warmup N --repeats N
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence

import numpy as np

from detr_deploy.bench.inputs import decode
from detr_deploy.bench.runtimes import RUNTIMES, Context, Skip, cpp_module, executor, torchscript_detector
from detr_deploy.bench.settings import CACHE_DIR
from detr_deploy.bench.timing import summarise, time_interleaved

if TYPE_CHECKING:
    from detr_deploy.bench.record import Record

__all__ = ["tune", "first_calls", "main"]

MODULE = "detr_deploy.bench.tuning"  # the inter-op child: python -m
BATCH = 4


def _variants(context: Context, path: str, image: np.ndarray, detr_cpp) -> Dict[str, tuple]:
    """name: (function, images per call), the first being the default every speed-up is against."""
    import torch

    from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact, save_artefact

    all_cores = context.threads
    fortran = np.asfortranarray(image)  # same pixels, not C-contiguous: the module must copy it
    optimized = detr_cpp.Detector(path, num_threads=all_cores, optimize=True)
    profiled = detr_cpp.Detector(path, num_threads=all_cores, optimize=True, profiling_executor=True)
    plain = detr_cpp.Detector(path, num_threads=all_cores, optimize=False)

    def with_threads(threads, function):
        def call():
            torch.set_num_threads(threads)
            try:
                return function()
            finally:
                torch.set_num_threads(all_cores)

        return call

    module, _ = load_artefact(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ScriptModule.to() touches .grad of non-leaf tensors: harmless
        channels_last = freeze_and_optimize(copy.deepcopy(module).to(memory_format=torch.channels_last))
    frozen = freeze_and_optimize(module)
    frozen_only = torch.jit.freeze(load_artefact(path)[0].eval(), preserved_attrs=["forward_batch"])
    # the same weights saved channels-last into an artefact, so the C++ module loads them so
    cl_path = Path(path).with_name("model_channels_last.pt")
    if not cl_path.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cl_module, cl_metadata = load_artefact(path)
            save_artefact(cl_module.to(memory_format=torch.channels_last), cl_path, cl_metadata)
    optimized_cl = detr_cpp.Detector(str(cl_path), num_threads=all_cores, optimize=True)
    eager = RUNTIMES["eager"].load(context)
    eager_cl_model = copy.deepcopy(context.model).to(memory_format=torch.channels_last)
    eager_cl = RUNTIMES["eager"].load(replace(context, model=eager_cl_model))

    def ts(function):
        def call():
            with torch.inference_mode(), executor(frozen_graph=True):
                return function(torch.from_numpy(image))

        return call

    return {
        "C++ module: default (freeze + optimize_for_inference, all cores)": (lambda: optimized.detect(image), 1),
        "C++ module: profiling executor (torch's default; before)": (lambda: profiled.detect(image), 1),
        "C++ module: optimize=False (graph as saved)": (lambda: plain.detect(image), 1),
        "C++ module: 1 intra-op thread": (with_threads(1, lambda: optimized.detect(image)), 1),
        "C++ module: non-contiguous input (copied at the boundary)": (lambda: optimized.detect(fortran), 1),
        "C++ module: channels-last weights in the artefact": (lambda: optimized_cl.detect(image), 1),
        f"C++ module: batch of {BATCH}, per image": (lambda: optimized.detect_batch([image] * BATCH), BATCH),
        "TorchScript from Python: freeze + optimize_for_inference": (ts(frozen), 1),
        "TorchScript from Python: freeze only": (ts(frozen_only), 1),
        "TorchScript from Python: channels-last weights, freeze + optimize": (ts(channels_last), 1),
        "eager: contiguous (NCHW)": (lambda: eager.detect(image), 1),
        "eager: channels-last weights": (lambda: eager_cl.detect(image), 1),
    }


def _row(
    context: Context, variant: str, median_ms: float, p90_ms: Optional[float], runs: int, base: float, interleaved: bool
) -> dict:
    return {
        "model": context.spec.name,
        "height": context.size[0],
        "width": context.size[1],
        "threads": context.threads,
        "variant": variant,
        "median_ms": round(median_ms, 2),
        "p90_ms": None if p90_ms is None else round(p90_ms, 2),
        "runs": runs,
        "speedup_vs_default": round(base / median_ms, 3),
        "interleaved": interleaved,
    }


def tune(record: "Record", context: Context, jpeg: bytes) -> None:
    """Append tuning.csv rows for the context's model at its size, with all its threads."""
    import torch

    try:
        detr_cpp = cpp_module()
        path = str(context.artefacts.get("torchscript", context))
    except Skip as error:
        record.skip("tuning", context.spec.name, str(error))
        return
    all_cores = context.threads
    image = decode(jpeg)
    first = first_calls(detr_cpp, path, all_cores, image)
    variants = _variants(context, path, image, detr_cpp)
    record.step(f"{context.spec.name}: tuning, {len(variants)} variants")
    torch.set_num_threads(all_cores)
    times = time_interleaved(
        {name: function for name, (function, _) in variants.items()},
        repeats=context.settings.repeats,
        warmup=context.settings.warmup,
    )
    base = None
    for name, seconds in times.items():
        stats = summarise([s / variants[name][1] for s in seconds])
        base = base or stats["median_ms"]
        record.tuning.append(_row(context, name, stats["median_ms"], stats["p90_ms"], len(seconds), base, True))
    for variant, milliseconds in first.items():
        record.tuning.append(_row(context, variant, milliseconds, None, 1, base, False))
    # inter-op threads can only be set before a process's first parallel work: own processes
    # plus OpenMP's passive wait: idle workers sleep instead of spinning, which matters when
    # the cores are shared with other processes (libgomp reads it once, at start-up)
    configs = [(1, {}), (all_cores, {}), (all_cores, {"OMP_WAIT_POLICY": "PASSIVE"})]
    image_path = CACHE_DIR / "images" / f"card_{context.size[0]}x{context.size[1]}.jpg"
    for interop, extra_env in configs if context.settings.interop else ():
        record.step(f"{context.spec.name}: tuning, inter-op {interop}" + (" passive wait" if extra_env else ""))
        command = [
            sys.executable,
            "-m",
            MODULE,
            "--interop",
            str(interop),
            "--threads",
            str(all_cores),
            "--model",
            path,
            "--image",
            str(image_path),
            "--warmup",
            str(context.settings.warmup),
            "--repeats",
            str(context.settings.repeats),
        ]
        result = subprocess.run(
            command, capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore", **extra_env)
        )
        if result.returncode != 0:
            record.skip("tuning inter-op", context.spec.name, result.stderr.strip()[-200:])
            continue
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        variant = (
            f"TorchScript from Python: {interop} inter-op thread(s)"
            + "".join(f", {k}={v}" for k, v in extra_env.items())
            + ", own process"
        )
        record.tuning.append(
            _row(context, variant, stats["median_ms"], stats["p90_ms"], context.settings.repeats, base, False)
        )
    record.progress.update(1)


def first_calls(detr_cpp, path: str, threads: int, image: np.ndarray, calls: int = 3) -> Dict[str, float]:
    """Milliseconds of each of the first ``calls`` calls of a freshly loaded Detector, with and
    without the profiling executor. The process has run the model already, so oneDNN's kernel
    cache is warm for both and only the executor differs; the cold-start table has the rest."""
    timed = {}
    for profiling, name in ((True, "profiling executor (before)"), (False, "no profiling executor")):
        detector = detr_cpp.Detector(path, num_threads=threads, profiling_executor=profiling)
        for call in range(1, calls + 1):
            start = time.perf_counter()
            detector.detect(image)
            timed[f"C++ module: call {call} after loading, {name}"] = (time.perf_counter() - start) * 1e3
        del detector
    return timed


def main(argv: Optional[Sequence[str]] = None) -> int:
    """One inter-op setting in this process: the frozen + optimized TorchScript row, timed;
    prints its median and p90 in ms as JSON."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=main.__doc__.split(";")[0])
    for name in ("interop", "threads", "warmup", "repeats"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--model", required=True, help="TorchScript artefact")
    parser.add_argument("--image", required=True, help="JPEG file")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_interop_threads(args.interop)  # before any parallel work
    torch.set_num_threads(args.threads)
    detect = torchscript_detector(args.model).detect
    image = decode(Path(args.image).read_bytes())
    seconds = time_interleaved({"torchscript": lambda: detect(image)}, repeats=args.repeats, warmup=args.warmup)[
        "torchscript"
    ]
    print(json.dumps(summarise(seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
