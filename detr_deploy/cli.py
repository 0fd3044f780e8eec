"""The two model arguments every command line of this repository shares, with one meaning each.

``--model FILE``
    an *exported artefact*: a TorchScript ``.pt`` (``python -m detr_deploy.export``), or another
    format a command accepts (an AOTInductor ``.pt2``, ...). What the C++ module, the service and
    the model repository run.
``--checkpoint FILE``
    *weights* (``.pth``): a checkpoint saved by this repository (it carries its configuration), or
    an official DETR checkpoint together with ``--arch``. What export, training and evaluation
    start from.

Importing this module does not import torch: torch-free commands use it too.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

ARCHITECTURE_NAMES = ("detr_resnet50", "detr_resnet50_dc5", "detr_resnet101", "detr_resnet101_dc5", "detr_small")


def add_model_argument(
    parser: argparse.ArgumentParser,
    required: bool = False,
    default: Optional[str] = None,
    what: str = "exported artefact (.pt)",
) -> None:
    """``--model FILE``: an exported artefact."""
    hint = f" (default: {default})" if default else ""
    parser.add_argument("--model", required=required, default=default, metavar="FILE", help=f"{what}{hint}")


def add_checkpoint_arguments(
    parser: argparse.ArgumentParser, required: bool = False, default_arch: Optional[str] = None
) -> None:
    """``--checkpoint FILE`` (weights), ``--arch NAME``, ``--num-classes N`` and ``--seed N``."""
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="FILE",
        help="weights (.pth): a detr_deploy checkpoint (carries its configuration), "
        "or official DETR weights with --arch",
    )
    parser.add_argument(
        "--arch",
        choices=ARCHITECTURE_NAMES,
        default=default_arch,
        help="architecture to build; without --checkpoint its weights are random",
    )
    parser.add_argument("--num-classes", type=int, help="class count for a new architecture (random weights only)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")


def model_from_arguments(args: argparse.Namespace):
    """The DETR that ``--checkpoint`` / ``--arch`` name, in eval mode.

    ``--checkpoint`` alone rebuilds the model from the configuration the checkpoint carries;
    with ``--arch`` the architecture is built and the checkpoint's weights loaded into it.
    """
    from detr_deploy.model.checkpoint import load_checkpoint, load_model
    from detr_deploy.model.detr import ARCHITECTURES

    checkpoint = getattr(args, "checkpoint", None)
    arch = getattr(args, "arch", None)
    if checkpoint and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    if checkpoint and not arch:
        return load_model(checkpoint).eval()
    if not arch:
        raise ValueError("name the model: --checkpoint FILE (a detr_deploy checkpoint), or --arch NAME")
    overrides = {"num_classes": args.num_classes} if getattr(args, "num_classes", None) else {}
    if checkpoint and overrides:
        raise ValueError("--num-classes applies to random weights only; a checkpoint fixes the class count")
    model = ARCHITECTURES[arch](seed=getattr(args, "seed", 0), **overrides)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    return model.eval()
