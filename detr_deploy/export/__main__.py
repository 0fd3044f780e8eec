"""One command line for every export format.

    python -m detr_deploy.export --checkpoint data/models/demo_weights.pth --out build/models/demo.pt
    python -m detr_deploy.export --format aoti --checkpoint data/models/demo_weights.pth --out build/models/demo.pt2
    python -m detr_deploy.export --int8 --checkpoint data/models/demo_weights.pth --out build/models/demo_int8.pt2
    python -m detr_deploy.export --format onnx --checkpoint data/models/demo_weights.pth --out build/models/demo.onnx
    python -m detr_deploy.export --format openvino --checkpoint data/models/demo_weights.pth --out build/models/demo.xml
    python -m detr_deploy.export --arch detr_resnet50 --checkpoint detr-r50-e632da11.pth --out build/models/r50.pt

``--checkpoint`` names weights (a detr_deploy checkpoint alone, or official DETR weights with
``--arch``); the artefact goes to ``--out`` with its ``.json`` sidecar beside it. The demo
checkpoint's pipeline settings default from its ``demo.json`` sidecar. ``--int8`` (AOTInductor only,
the default format with it) quantizes with PT2E calibrated on rendered synthetic cards, never on
the real validation cards (:mod:`detr_deploy.quantize`, chapter 02c); the package's metadata says
``precision: int8``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from detr_deploy.cli import add_checkpoint_arguments, model_from_arguments
from detr_deploy.demo_model import DEMO_SIDECAR, demo_settings
from detr_deploy.paths import relative

FORMATS = ("torchscript", "aoti", "onnx", "openvino")
EXPORTERS = {"aoti": "export_aoti", "onnx": "export_onnx", "openvino": "export_openvino"}
TORCH_EXPORT_FORMATS = tuple(EXPORTERS)
# the options that only some formats take (the others refuse them)
FORMAT_OPTIONS = {
    "method": ("torchscript",),
    "trace_size": ("torchscript",),
    "static": TORCH_EXPORT_FORMATS,
    "example_size": TORCH_EXPORT_FORMATS,
    "exporter": ("onnx",),
    "fp16_weights": ("openvino",),
    "int8": ("aoti",),
}
# what --int8 takes (refused without it)
INT8_OPTIONS = ("calibration_images", "int8_scope")
DEFAULT_CALIBRATION_IMAGES = 32
DEFAULT_SETTINGS = {"min_size": 800, "max_size": 1333, "score_threshold": 0.5}
DEMO_CHECKPOINT = "demo_weights.pth"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.export",
        description="Export a DETR with its image pipeline: TorchScript (.pt), AOTInductor (.pt2), ONNX (.onnx) "
        "or OpenVINO IR (.xml + .bin), each with a .json sidecar.",
    )
    parser.add_argument("--format", choices=FORMATS, help="artefact format (default: torchscript; aoti with --int8)")
    add_checkpoint_arguments(parser)
    parser.add_argument("--out", required=True, help="output file; the .json sidecar is written beside it")
    parser.add_argument("--min-size", type=int, help="default: the demo checkpoint's (384) or 800")
    parser.add_argument("--max-size", type=int, help="default: the demo checkpoint's (640) or 1333")
    parser.add_argument(
        "--threshold", type=float, help="default score threshold (default: the demo checkpoint's, or 0.5)"
    )
    parser.add_argument("--top-k", type=int, default=0, help="keep at most K detections (0 = all)")
    torchscript = parser.add_argument_group("torchscript only")
    torchscript.add_argument("--method", choices=["script", "trace"], help="default: script")
    torchscript.add_argument(
        "--trace-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="example image size for --method trace (default: 480 640)",
    )
    exported = parser.add_argument_group("aoti, onnx and openvino only")
    exported.add_argument(
        "--static", action="store_true", default=None, help="fixed input size (--example-size) instead of dynamic"
    )
    exported.add_argument(
        "--example-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="the image size torch.export traces with (default: 480 640)",
    )
    exported.add_argument(
        "--exporter", choices=["dynamo", "legacy"], help="onnx only: the ONNX exporter (default: dynamo)"
    )
    exported.add_argument(
        "--fp16-weights", action="store_true", default=None, help="openvino only: store fp16 weights (default fp32)"
    )
    int8 = parser.add_argument_group("aoti only: int8 (needs requirements-runtimes.txt)")
    int8.add_argument(
        "--int8",
        action="store_true",
        default=None,
        help="PT2E static int8 quantization, calibrated on rendered synthetic cards",
    )
    int8.add_argument(
        "--calibration-images",
        type=int,
        help=f"synthetic cards to calibrate on (default: {DEFAULT_CALIBRATION_IMAGES})",
    )
    int8.add_argument(
        "--int8-scope",
        choices=["all", "backbone"],
        help="what becomes int8: all = convolutions and linear layers (default), backbone = convolutions only",
    )
    return parser


def _refuse_other_formats_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for option, formats in FORMAT_OPTIONS.items():
        if getattr(args, option) is not None and args.format not in formats:
            flag = "--" + option.replace("_", "-")
            parser.error(f"{flag} applies to --format {' or '.join(formats)}, not to --format {args.format}")
    for option in INT8_OPTIONS:
        if getattr(args, option) is not None and not args.int8:
            parser.error(f"--{option.replace('_', '-')} applies to --int8 only")
    if args.calibration_images is not None and args.calibration_images < 1:
        parser.error("--calibration-images needs at least 1")


def _pipeline_settings(args: argparse.Namespace) -> dict:
    """min_size, max_size, score_threshold and top_k: the command line's, else the demo
    checkpoint's (from the demo.json beside it), else the pipeline's defaults."""
    defaults = dict(DEFAULT_SETTINGS)
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is not None and checkpoint.name == DEMO_CHECKPOINT and (checkpoint.parent / DEMO_SIDECAR).is_file():
        defaults = demo_settings(checkpoint.parent)
    return dict(
        min_size=args.min_size or defaults["min_size"],
        max_size=args.max_size or defaults["max_size"],
        score_threshold=defaults["score_threshold"] if args.threshold is None else args.threshold,
        top_k=args.top_k,
    )


def _export_torchscript(model, args: argparse.Namespace, settings: dict) -> str:
    """Script (or trace) and save; returns what to print: the files and torch's warnings."""
    import torch

    from detr_deploy.export.torchscript import export_model

    method = args.method or "script"
    example = torch.zeros((*(args.trace_size or (480, 640)), 3), dtype=torch.uint8) if method == "trace" else None
    sidecar, report = export_model(model, args.out, method=method, example_image=example, **settings)
    info = json.loads(sidecar.read_text())
    lines = [
        f"wrote {args.out} ({info['size_bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:12]}) and {sidecar}",
        f"{method} took {report.seconds:.1f} s; torch warnings:",
    ]
    lines += [f"  {count:4d} x {message}" for message, count in report.warnings_table()]
    return "\n".join(lines)


def _export_int8(model, out, *, calibration_images: int, scope: str, **settings) -> Path:
    """The int8 AOTInductor package (:func:`detr_deploy.quantize.pt2e.export_int8_aoti`),
    calibrated on ``calibration_images`` rendered synthetic cards."""
    from detr_deploy.quantize import pt2e

    images = pt2e.calibration_images(calibration_images)  # synthetic cards; refuses the held-out seed
    return pt2e.export_int8_aoti(model, out, images, scope=scope, calibration=pt2e.calibration_record(), **settings)


def _export_with_torch_export(model, args: argparse.Namespace, settings: dict) -> str:
    """AOTInductor (float32 or int8), ONNX or OpenVINO from one torch.export program; returns what to print."""
    from detr_deploy.export.program import DEFAULT_EXAMPLE_SIZE

    export = getattr(importlib.import_module(f"detr_deploy.export.{args.format}"), EXPORTERS[args.format])
    settings = dict(settings, dynamic=not args.static, example_size=tuple(args.example_size or DEFAULT_EXAMPLE_SIZE))
    if args.int8:
        export = _export_int8
        settings.update(
            calibration_images=args.calibration_images or DEFAULT_CALIBRATION_IMAGES, scope=args.int8_scope or "all"
        )
    if args.format == "onnx":
        settings["exporter"] = args.exporter or "dynamo"
    if args.format == "openvino":
        settings["compress_to_fp16"] = bool(args.fp16_weights)
    start = time.perf_counter()
    path = Path(export(model, args.out, **settings))
    info = json.loads(path.with_suffix(".json").read_text())
    size = info["size_bytes"] + info.get("weights_size_bytes", 0)
    precision = f", {info['precision']}" if "precision" in info else ""
    return (
        f"wrote {relative(path)} ({size / 1e6:.1f} MB{precision}) and {path.with_suffix('.json').name} "
        f"in {time.perf_counter() - start:.0f} s"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.format = args.format or ("aoti" if args.int8 else "torchscript")
    _refuse_other_formats_options(parser, args)
    export = _export_torchscript if args.format == "torchscript" else _export_with_torch_export
    try:
        summary = export(model_from_arguments(args), args, _pipeline_settings(args))
    except (ImportError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
