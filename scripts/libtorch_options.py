"""Options for the libtorch path that were measured and not adopted (chapter 04, section 5).

    .venv/bin/python scripts/libtorch_options.py [--model-name detr_resnet50] [--repeats 8]

1. TorchScript fusers on the frozen pipeline, each in its own process (they are global switches):
   the oneDNN Graph fuser (``torch.jit.enable_onednn_fusion``) and NNC on the CPU
   (``torch._C._jit_override_can_fuse_on_cpu``). Does the graph run with them, and how fast?
2. AOTInductor compile options, timed through the C++ module against the default package
   (``freezing``): ``max_autotune`` with the C++ GEMM template, and a static input size
   (one size only: a service would have to pad every image to it).

Prints a table and writes build/libtorch_options/<model>.csv. Compiling takes minutes
(DETR-R50 on 2 cores: default ~2, autotune ~4, static ~1); packages are cached between runs.
Run it on a quiet machine: the timings are interleaved, but two cores have no slack.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detr_deploy.bench.settings import ALL_CORES, MODELS  # noqa: E402
from detr_deploy.bench.timing import summarise, summarise_times, time_interleaved  # noqa: E402
from detr_deploy.export.aoti import DEFAULT_INDUCTOR_CONFIGS, export_aoti  # noqa: E402
from detr_deploy.export.torchscript import export_model, load_artefact  # noqa: E402
from detr_deploy.native import cpp_build  # noqa: E402
from detr_deploy.paths import BUILD_DIR  # noqa: E402

OUT = BUILD_DIR / "libtorch_options"
SIZE = (512, 683)
AUTOTUNE = {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}
FUSERS = {  # label: the switch --fuser-child turns on
    "frozen graph, no fuser (reference)": "none",
    "frozen graph + oneDNN Graph fuser": "onednn",
    "frozen graph + NNC fuser on the CPU": "nnc",
}


def _time_fuser(artefact: str, fuser: str, threads: int, repeats: int) -> dict:
    """In this process, since the fusers are global switches: load, freeze (no
    optimize_for_inference: the fusers want plain aten ops), switch the fuser on, warm up, time."""
    import torch

    torch.set_num_threads(threads)
    module = torch.jit.freeze(load_artefact(artefact)[0].eval(), preserved_attrs=["forward_batch"])
    if fuser == "onednn":
        torch.jit.enable_onednn_fusion(True)
    elif fuser == "nnc":
        torch._C._jit_override_can_fuse_on_cpu(True)
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8))
    try:
        with torch.inference_mode():
            seconds = time_interleaved({fuser: lambda: module(image)}, repeats=repeats, warmup=3)[fuser]
        return {"median_ms": summarise(seconds)["median_ms"]}
    except Exception as error:
        return {"error": type(error).__name__ + ": " + str(error).strip().splitlines()[-1][:160]}


def _fuser_rows(artefact: Path, threads: int, repeats: int) -> list:
    rows = []
    for label, fuser in FUSERS.items():
        command = [
            sys.executable,
            __file__,
            "--fuser-child",
            fuser,
            "--model",
            str(artefact),
            "--threads",
            str(threads),
            "--repeats",
            str(repeats),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        lines = result.stdout.strip().splitlines()
        outcome = json.loads(lines[-1]) if lines else {"error": result.stderr.strip()[-160:]}
        rows.append({"option": label, "median_ms": outcome.get("median_ms"), "error": outcome.get("error", "")})
        print(f"  {label}: {outcome}", flush=True)
    return rows


def _package(model, name: str, settings: dict, configs: dict, static: bool) -> Path:
    path = OUT / f"{name}.pt2"
    if not path.is_file():
        print(f"  compiling {path.name} (minutes) ...", flush=True)
        extra = dict(dynamic=False, example_size=SIZE) if static else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_aoti(model, path, inductor_configs=configs, **settings, **extra)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-name", default="detr_resnet50", choices=sorted(MODELS), help="the benchmark's model")
    parser.add_argument("--threads", type=int, default=ALL_CORES)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--fuser-child", choices=sorted(set(FUSERS.values())), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.fuser_child:  # one fuser measurement, in its own process (see _fuser_rows)
        warnings.filterwarnings("ignore")
        print(json.dumps(_time_fuser(args.model, args.fuser_child, args.threads, args.repeats)))
        return 0
    OUT.mkdir(parents=True, exist_ok=True)
    spec = MODELS[args.model_name]
    model = spec.build().eval()
    settings = dict(min_size=SIZE[0], max_size=SIZE[1], score_threshold=spec.score_threshold)

    artefact = OUT / f"{args.model_name}.pt"
    if not artefact.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_model(model, artefact, method="script", **settings)
    print("TorchScript fusers, one process each:", flush=True)
    rows = _fuser_rows(artefact, args.threads, args.repeats)

    print("AOTInductor compile options, through the C++ module:", flush=True)
    packages = {
        "AOTInductor default (freezing, dynamic size)": _package(
            model, f"{args.model_name}_default", settings, dict(DEFAULT_INDUCTOR_CONFIGS), False
        ),
        "AOTInductor + max_autotune (C++ GEMM template)": _package(
            model, f"{args.model_name}_autotune", settings, dict(DEFAULT_INDUCTOR_CONFIGS, **AUTOTUNE), False
        ),
        f"AOTInductor, static size {SIZE[0]}x{SIZE[1]}": _package(
            model, f"{args.model_name}_static", settings, dict(DEFAULT_INDUCTOR_CONFIGS), True
        ),
    }
    detr_cpp = cpp_build.build_module()
    image = np.random.default_rng(0).integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    detectors = {label: detr_cpp.Detector(str(path), num_threads=args.threads) for label, path in packages.items()}
    times = time_interleaved(
        {label: (lambda d=d: d.detect(image)) for label, d in detectors.items()}, repeats=args.repeats, warmup=2
    )
    table = summarise_times(times)
    for label, row in table.iterrows():
        rows.append({"option": label, "median_ms": round(float(row["median_ms"]), 1), "error": ""})
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame.to_csv(OUT / f"{args.model_name}.csv", index=False)
    print(table.to_string())
    print(f"wrote {(OUT / f'{args.model_name}.csv').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
