"""``python -m detr_deploy.quantize``: int8 packages for the C++ Detector, and what they cost and buy.

    python -m detr_deploy.quantize export [--model demo|detr_resnet50] [--scope all|backbone] [--out FILE.pt2]
    python -m detr_deploy.quantize accuracy [--out data/benchmarks/int8_accuracy.json]
    python -m detr_deploy.quantize speed [--out data/benchmarks/int8_speed.json]
    python -m detr_deploy.quantize readme [--check]

``export`` quantizes (PT2E, calibrated on synthetic cards) and compiles with AOTInductor; the
package is cached under build/quantize and copied to ``--out`` if given. ``accuracy`` builds the
demo model's six artefacts (C++ AOTInductor, OpenVINO, ONNX Runtime; float32 and int8) and scores
each on the synthetic held-out cards (seed 3) and the real validation cards. ``speed`` times
them, with the eager float32 pipeline, on one image in interleaved rounds. Both print a table
and write JSON. Heavy: run with ``nice`` on a shared machine, and time with
``OMP_WAIT_POLICY=PASSIVE``: on a busy machine libtorch's OpenMP threads otherwise spin at every
barrier while their partner waits for a core, and torch's times grow many-fold (measured here:
eager DETR-R50 from 0.36 s to 4.5 s) while OpenVINO's and ONNX Runtime's barely move; the
ONNX Runtime runner turns its spinning off for the same reason.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from detr_deploy.paths import DATA_DIR, relative

DEFAULT_SIZE = (512, 683)


def _model(name: str, size=DEFAULT_SIZE):
    """(model, pipeline settings) by name: the trained demo model at its own settings, or DETR-R50
    with random weights (speed does not depend on their values) resizing to ``size``."""
    if name == "demo":
        from detr_deploy.demo_model import demo_settings
        from detr_deploy.model.checkpoint import load_model
        from detr_deploy.paths import MODELS_DIR

        return load_model(MODELS_DIR / "demo_weights.pth").eval(), demo_settings()
    if name == "detr_resnet50":
        from detr_deploy.model.detr import detr_resnet50

        return detr_resnet50(seed=0).eval(), dict(min_size=size[0], max_size=size[1], score_threshold=0.5)
    raise ValueError(f"unknown model {name!r}: demo or detr_resnet50")


def _calibration(num_images: int):
    from detr_deploy.quantize import pt2e

    return pt2e.calibration_images(num_images), pt2e.calibration_record()


def _write(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {relative(path)}", file=sys.stderr)


def cmd_export(args) -> int:
    from detr_deploy.quantize import pt2e

    model, settings = _model(args.model)
    images, info = _calibration(args.calibration_images)
    start = time.perf_counter()
    path = pt2e.cached_int8_aoti(model, images, name=args.model, scope=args.scope, calibration=info, **settings)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, out)
        shutil.copyfile(path.with_suffix(".json"), out.with_suffix(".json"))
        path = out
    metadata = pt2e.read_package_metadata(path)
    print(
        json.dumps(
            {
                "package": relative(path),
                "precision": metadata["precision"],
                "kernels": metadata["kernels"],
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
    )
    return 0


def accuracy_document(heldout_images: int, calibration_images: int, scopes: Sequence[str], threads: int) -> dict:
    """The accuracy measurement of the demo model, as written to ``int8_accuracy.json``."""
    from detr_deploy.export.artefact import make_pipeline
    from detr_deploy.quantize import artefacts, measure

    model, settings = _model("demo")
    images, info = _calibration(calibration_images)
    paths = artefacts.build_artefacts(model, images, name="demo", scopes=scopes, calibration=info, **settings)
    runners = {
        "PyTorch eager fp32": measure.EagerRunner(make_pipeline(model, **settings)),
        **artefacts.load_runners(paths, threads),
    }
    datasets = {
        f"synthetic held-out (seed {measure.HELDOUT_SEED})": measure.heldout_cards(heldout_images),
        "real validation cards": measure.REAL_CARDS,
    }
    rows = measure.accuracy(runners, datasets, model.config.class_names)
    samples = measure.sample_images()
    # every artefact against the eager reference, and each int8 one against its runtime's float32
    diffs = []
    for name, runner in runners.items():
        bases = ["PyTorch eager fp32", name.split(" int8")[0] + " fp32"]
        for base in dict.fromkeys(base for base in bases if base != name and base in runners):
            diff = measure.differences(runners[base], runner, samples, settings["score_threshold"])
            diffs.append({"runner": name, "against": base, **diff})
    return {
        "model": "demo (data/models/demo_weights.pth)",
        "settings": settings,
        "scopes": list(scopes),
        "calibration": dict(info, num_images=calibration_images),
        "accuracy": rows,
        "differences_on_sample_cards": {"score_threshold": settings["score_threshold"], "rows": diffs},
        "skipped": {f"{r} {p}": str(v) for (r, p), v in paths.items() if not isinstance(v, Path)},
        "machine": measure.machine_record(threads),
    }


def speed_document(
    models: Sequence[str],
    size,
    calibration_images: int,
    scopes: Sequence[str],
    threads: int,
    repeats: int,
    cold_start: bool = True,
    breakdown: bool = True,
) -> dict:
    """The speed measurement, as written to ``int8_speed.json``: latency in interleaved rounds,
    artefact sizes, (``cold_start``) each artefact's cold start in a fresh process, and
    (``breakdown``) where the time of the C++ int8 package and of OpenVINO int8 goes, part by
    part of the graph (a profiled build of the package: compiling it takes minutes once)."""
    from detr_deploy.export.artefact import make_pipeline
    from detr_deploy.paths import BUILD_DIR
    from detr_deploy.quantize import artefacts, measure

    image = measure.timing_image(*size)
    images, info = _calibration(calibration_images)
    results = {}
    for name in models:
        model, settings = _model(name, size)
        paths = artefacts.build_artefacts(model, images, name=name, scopes=scopes, calibration=info, **settings)
        runners = {
            "PyTorch eager fp32": measure.EagerRunner(make_pipeline(model, **settings)),
            **artefacts.load_runners(paths, threads),
        }
        torch.set_num_threads(threads)  # the eager pipeline's (the C++ module sets its own)
        times = measure.speed(runners, image, repeats=repeats)
        table = measure.summarise_times(times)
        median = {key: float(np.median(value)) for key, value in times.items()}
        ratios = {"int8 C++ vs eager fp32": median["PyTorch eager fp32"] / median["C++ AOTInductor int8"]}
        ratios["int8 C++ vs fp32 C++"] = median["C++ AOTInductor fp32"] / median["C++ AOTInductor int8"]
        for runner in median:
            if runner.startswith("C++ AOTInductor int8 "):  # another scope
                ratios[runner.replace("C++ AOTInductor ", "") + " C++ vs eager fp32"] = (
                    median["PyTorch eager fp32"] / median[runner]
                )
        if "OpenVINO int8" in median:
            ratios["int8 C++ vs OpenVINO int8"] = median["OpenVINO int8"] / median["C++ AOTInductor int8"]
        built = {(runtime, precision): v for (runtime, precision), v in paths.items() if isinstance(v, Path)}
        del runners  # the cold starts below run alone
        scratch = BUILD_DIR / "quantize"
        results[name] = {
            "settings": settings,
            "seconds": {key: [round(v, 5) for v in value] for key, value in times.items()},
            "table": table,
            "ratios": {key: round(value, 2) for key, value in ratios.items()},
            "artefact_bytes": {f"{r} {p}": measure.artefact_bytes(path) for (r, p), path in built.items()},
            "cold_start": {
                f"{r} {p}": measure.cold_start(r, path, image, threads, scratch) for (r, p), path in built.items()
            }
            if cold_start
            else {},
            "skipped": {f"{r} {p}": str(v) for (r, p), v in paths.items() if not isinstance(v, Path)},
        }
        if breakdown:
            profiled = measure.profiled_int8_package(model, images, built[artefacts.RUNNERS[1]], scopes[0], **settings)
            results[name]["breakdown"] = {
                "C++ AOTInductor int8": measure.aoti_breakdown(profiled, image),
                "OpenVINO int8": measure.openvino_breakdown(built[artefacts.RUNNERS[3]], image, threads),
            }
    return {
        "image_size": list(size),
        "batch": 1,
        "repeats": repeats,
        "scopes": list(scopes),
        "calibration": dict(info, num_images=calibration_images),
        "models": results,
        "machine": measure.machine_record(threads),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m detr_deploy.quantize", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--calibration-images", type=int, default=32, help="synthetic cards to calibrate on")
    measured = argparse.ArgumentParser(add_help=False, parents=[common])
    measured.add_argument(
        "--scopes", default="all,backbone", help="int8 packages to measure (comma-separated: all, backbone)"
    )
    export = commands.add_parser("export", parents=[common], help="build the int8 .pt2 package")
    export.add_argument("--scope", choices=["all", "backbone"], default="all", help="what becomes int8")
    export.add_argument("--model", choices=["demo", "detr_resnet50"], default="demo")
    export.add_argument("--out", help="copy the package (and its sidecar .json) here")
    accuracy = commands.add_parser("accuracy", parents=[measured], help="mAP of every runtime in fp32 and int8")
    accuracy.add_argument("--heldout-images", type=int, default=200)
    accuracy.add_argument("--threads", type=int, default=2)
    accuracy.add_argument("--out", default=str(DATA_DIR / "benchmarks" / "int8_accuracy.json"))
    speed = commands.add_parser("speed", parents=[measured], help="int8 vs fp32 latency, interleaved rounds")
    speed.add_argument("--models", default="detr_resnet50,demo")
    speed.add_argument("--size", default="x".join(map(str, DEFAULT_SIZE)), help="image HEIGHTxWIDTH")
    speed.add_argument("--threads", type=int, default=2)
    speed.add_argument("--repeats", type=int, default=9)
    speed.add_argument("--no-cold-start", action="store_true", help="skip the cold starts (a fresh process each)")
    speed.add_argument(
        "--no-breakdown", action="store_true", help="skip the per-part profile (compiles a profiled int8 package)"
    )
    speed.add_argument("--out", default=str(DATA_DIR / "benchmarks" / "int8_speed.json"))
    readme = commands.add_parser("readme", help="write the README's int8 block from the two JSON files")
    readme.add_argument("--check", action="store_true", help="only check; exit 1 when README.md is out of date")
    args = parser.parse_args(argv)
    if args.command == "readme":
        from detr_deploy.quantize.readme import check_or_write

        return check_or_write(args.check)
    if args.command == "export":
        return cmd_export(args)
    if args.command == "accuracy":
        scopes = [scope for scope in args.scopes.split(",") if scope]
        document = accuracy_document(args.heldout_images, args.calibration_images, scopes, args.threads)
        for row in document["accuracy"]:
            print(json.dumps(row))
        _write(Path(args.out), document)
        return 0
    size = tuple(int(side) for side in args.size.lower().split("x"))
    scopes = [scope for scope in args.scopes.split(",") if scope]
    models = [model for model in args.models.split(",") if model]
    document = speed_document(
        models,
        size,
        args.calibration_images,
        scopes,
        args.threads,
        args.repeats,
        cold_start=not args.no_cold_start,
        breakdown=not args.no_breakdown,
    )
    for name, result in document["models"].items():
        print(name, json.dumps(result["ratios"]))
        for row in result["table"]:
            print("  ", json.dumps(row))
    _write(Path(args.out), document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
