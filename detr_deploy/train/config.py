"""The settings of a training run: one dataclass, and the command line built from it.

Every field of :class:`TrainConfig` is a flag of ``python -m detr_deploy.train`` (``time_budget``
is ``--time-budget``), with the same default and help; a ``bool`` field is a switch. In Python::

    from detr_deploy.train import TrainConfig, train

    train(TrainConfig(out="runs/cpu", device="cpu", steps=30))

:meth:`TrainConfig.from_argv` parses a command line, :meth:`TrainConfig.to_argv` writes one back.
``--checkpoint FILE`` starts from a saved model's weights (fine-tuning; its architecture overrides the
model flags); ``--resume`` continues a run from ``OUT/checkpoint.pth`` and takes precedence.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import MISSING, dataclass, field
from typing import List, Optional, Sequence

__all__ = ["TrainConfig", "build_parser"]


def _option(
    default=MISSING, help: Optional[str] = None, choices: Optional[Sequence[str]] = None, section: Optional[str] = None
):
    """A field that is also a flag; ``section`` starts a new group of flags in ``--help``."""
    return field(default=default, metadata={"help": help, "choices": choices, "section": section})


@dataclass
class TrainConfig:
    """Settings of :func:`detr_deploy.train.loop.train`; the help of each is ``--help``'s."""

    out: str = _option(help="output folder (checkpoint, weights, logs)", section="run")
    resume: bool = _option(False, "continue from OUT/checkpoint.pth if it exists")
    checkpoint: Optional[str] = _option(
        None, "fine-tune: start from these weights (a detr_deploy checkpoint, which fixes the architecture)"
    )
    device: str = _option("auto", choices=["cpu", "cuda", "auto"])
    time_budget: float = _option(
        0.0, "stop cleanly after this many seconds of training (counted across resumes); 0 = none"
    )
    steps: int = _option(0, "stop after this many optimiser steps; 0 = none")
    seed: int = _option(1, "seed of the weights, the data order and the training cards")
    name: str = _option("", "label stored in the logs")
    checkpoint_every: float = _option(120.0, "seconds between checkpoints")
    eval_every: float = _option(0.0, "seconds between validations; 0 = only at the end")
    log_every: int = _option(20, "steps between log.csv rows")
    no_progress: bool = _option(False, "no tqdm progress bar")
    save_fp16: bool = _option(False, "also write model_fp16.pth (half the size) at every checkpoint")

    data: str = _option(
        "synthetic",
        "'synthetic' (render cards on the fly), a folder written by --render-cache, "
        "or a labelled COCO json / folder / VOC folder",
        section="data",
    )
    num_train: int = _option(200_000, "synthetic: size of the card stream")
    render_cache: int = _option(
        0,
        "first pre-render this many synthetic cards (seed --seed) at the training resolution into --cache-dir, "
        "then train from memory (GPU runs)",
    )
    cache_dir: Optional[str] = _option(None, "where --render-cache writes (default OUT/cache)")
    val_data: Optional[str] = _option(None, "validation: a render cache folder or a labelled data set")
    val_synthetic: int = _option(32, "without --val-data: this many cards of --val-seed")
    val_seed: int = _option(2, "seed of the synthetic validation cards (not --seed)")
    workers: int = _option(
        -1,
        "DataLoader worker processes for on-the-fly / folder data (0 = load in the main "
        "process) and render processes for --render-cache; -1 = automatic",
    )
    min_size: int = _option(384, "resize: shorter side (as the exported pipeline)")
    max_size: int = _option(640, "resize: cap of the longer side")
    no_augment: bool = _option(False)
    scale_jitter: float = _option(0.1, "random rescale by 1 +- this")

    num_queries: int = _option(64, "object queries (cards hold up to ~60 elements)", section="model")
    dropout: float = _option(0.0)
    freeze_stages: int = _option(
        0, "freeze the ResNet stem and its first N stages (1: stem and layer1, as official DETR trains)"
    )
    model_json: str = _option("{}", "other detr_small overrides as JSON, e.g. '{\"d_model\": 192}'")

    batch_size: int = _option(8, section="optimisation")
    lr: float = _option(2e-4, "transformer, projections and heads")
    lr_backbone: float = _option(2e-4, "ResNet trunk (trained from scratch)")
    weight_decay: float = _option(1e-4)
    clip: float = _option(0.1, "gradient-norm clipping; 0 = off")
    warmup: int = _option(200, "linear warm-up steps")
    decay_start: float = _option(
        0.7, "fraction of the run after which the learning rate follows a cosine to --final-lr-ratio (1 = constant)"
    )
    final_lr_ratio: float = _option(0.05)
    amp: str = _option(
        "auto", "autocast dtype; auto = bf16 on CUDA, none on CPU", choices=["auto", "none", "bf16", "fp16"]
    )

    eos_coef: float = _option(0.1, "weight of the no-object class", section="loss and training-only queries")
    cost_class: float = _option(2.0)
    cost_bbox: float = _option(5.0)
    cost_giou: float = _option(2.0)
    weight_class: float = _option(2.0)
    weight_bbox: float = _option(5.0)
    weight_giou: float = _option(2.0)
    no_aux: bool = _option(False, "no auxiliary decoder losses")
    iou_aware: bool = _option(False, "IoU-aware soft classification targets")
    dn_groups: int = _option(0, "denoising groups (0 = off)")
    dn_box_noise: float = _option(0.4)
    dn_label_noise: float = _option(0.2)
    dn_max_queries: int = _option(200, "cap on denoising queries per image")
    extra_groups: int = _option(2, "extra training-only query groups (Group DETR; 2 in the shipped recipe); 0 = off")
    extra_group_k: int = _option(1, "targets repeated k times for extra groups (H-DETR)")

    @classmethod
    def from_argv(cls, argv: Optional[Sequence[str]] = None) -> "TrainConfig":
        """The configuration a command line names (``None``: ``sys.argv[1:]``)."""
        return cls(**vars(build_parser().parse_args(argv)))

    def to_argv(self) -> List[str]:
        """The command line of this configuration: ``--out`` and every setting that is not the default."""
        argv: List[str] = []
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.default is not MISSING and value == spec.default:
                continue
            if isinstance(value, bool):
                argv.append(_flag(spec.name))
            else:
                argv += [_flag(spec.name), str(value)]
        return argv


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser() -> argparse.ArgumentParser:
    """``python -m detr_deploy.train``: one flag per :class:`TrainConfig` field, in its groups."""
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.train",
        description="Train the small DETR on synthetic Adaptive Cards (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False,  # --model (an exported artefact elsewhere) must not abbreviate --model-json
    )
    types = typing.get_type_hints(TrainConfig)
    group = parser
    for spec in dataclasses.fields(TrainConfig):
        options = dict(help=spec.metadata["help"])
        if spec.metadata["section"]:
            group = parser.add_argument_group(spec.metadata["section"])
        if types[spec.name] is bool:
            options["action"] = "store_true"
        elif spec.default is MISSING:
            options["required"] = True
        else:
            options.update(default=spec.default, choices=spec.metadata["choices"])
            if types[spec.name] in (int, float):
                options["type"] = types[spec.name]
        group.add_argument(_flag(spec.name), **options)
    return parser
