"""Train the small DETR on synthetic Adaptive Cards (or a labelled folder).

The deployed model is a plain :class:`~detr_deploy.model.detr.DETR` (same exported interface);
everything that speeds up convergence lives in training only:

* Hungarian matching (:mod:`detr_deploy.train.matcher`) and the set criterion with auxiliary
  decoder losses (:mod:`detr_deploy.train.losses`);
* denoising queries (DN-DETR) and extra query groups (Group DETR / H-DETR one-to-many),
  fed through the model's ``extra_query_*`` / ``self_attn_mask`` hooks;
* AdamW with separate learning rates for the trunk and the transformer/heads, linear
  warm-up, a cosine decay over the last part of the run, gradient clipping;
* augmentation (photometric jitter, scale jitter), fixed seeds, bf16 autocast and
  channels-last on CUDA.

The schedule runs on *progress*: the larger of ``step / --steps`` and
``elapsed / --time-budget``, so a run bounded by wall-clock time still warms up, decays
and ends cleanly. Checkpoints are written every ``--checkpoint-every`` seconds and at the
end (also on Ctrl-C / SIGTERM); ``--resume`` continues from ``OUT/checkpoint.pth`` (model,
training-only queries, optimiser, counters, random states, data order; time already spent
counts against ``--time-budget``).

Command line (the full list: ``--help``)::

    python -m detr_deploy.train --out runs/cpu --device cpu --time-budget 600
    python -m detr_deploy.train --out runs/x --render-cache 20000 --val-synthetic 500 \\
        --device cuda --batch-size 32 --time-budget 300 --dn-groups 3 --extra-groups 2

Files in ``--out``: ``checkpoint.pth`` (for ``--resume``; also loadable by
``detr_deploy.model.checkpoint.load_model`` and ``python -m detr_deploy.evaluate --model``),
``model.pth`` (weights only, fp32; ``--save-fp16`` adds ``model_fp16.pth``),
``log.csv`` (one row per ``--log-every`` steps and per validation) and ``log.json``
(settings, status and validation history).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import random
import signal
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detr_deploy.model.box_ops import box_cxcywh_to_xyxy
from detr_deploy.model.checkpoint import save_checkpoint
from detr_deploy.data.datasets import (
    Augment,
    CardDataset,
    LabelledFolder,
    SyntheticCards,
    TensorBatcher,
    class_names,
    collate,
    is_cache,
    load_cache,
    normalize,
    render_cache,
    worker_init,
)
from detr_deploy.train.losses import SetCriterion, TrainingQueries
from detr_deploy.train.matcher import HungarianMatcher, TargetBatch
from detr_deploy.model.detr import DETR, DETRConfig, build_detr, detr_small

__all__ = ["build_parser", "train", "main", "lr_factor", "validate", "CSV_FIELDS"]

CSV_FIELDS = [
    "step", "epoch", "images", "elapsed_s", "lr", "loss", "loss_class", "loss_bbox", "loss_giou",
    "loss_dn", "loss_extra", "grad_norm", "images_per_s", "val_map50", "val_map",
]


# ------------------------------------------------------------------------------ arguments
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m detr_deploy.train",
        description="Train the small DETR on synthetic Adaptive Cards (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", required=True, help="output folder (checkpoint, weights, logs)")
    g.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth if it exists")
    g.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto")
    g.add_argument("--time-budget", type=float, default=0.0,
                   help="stop cleanly after this many seconds of training (counted across resumes); 0 = none")
    g.add_argument("--steps", type=int, default=0, help="stop after this many optimiser steps; 0 = none")
    g.add_argument("--seed", type=int, default=1, help="seed of the weights, the data order and the training cards")
    g.add_argument("--name", default="", help="label stored in the logs")
    g.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds between checkpoints")
    g.add_argument("--eval-every", type=float, default=0.0, help="seconds between validations; 0 = only at the end")
    g.add_argument("--log-every", type=int, default=20, help="steps between log.csv rows")
    g.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    g.add_argument("--save-fp16", action="store_true",
                   help="also write model_fp16.pth (half the size) at every checkpoint")
    g = p.add_argument_group("data")
    g.add_argument("--data", default="synthetic",
                   help="'synthetic' (render cards on the fly), a folder written by --render-cache, "
                        "or a labelled COCO json / folder / VOC folder")
    g.add_argument("--num-train", type=int, default=200_000, help="synthetic: size of the card stream")
    g.add_argument("--render-cache", type=int, default=0,
                   help="first pre-render this many synthetic cards (seed --seed) at the training resolution into "
                        "--cache-dir, then train from memory (GPU runs)")
    g.add_argument("--cache-dir", default=None, help="where --render-cache writes (default OUT/cache)")
    g.add_argument("--val-data", default=None, help="validation: a render cache folder or a labelled data set")
    g.add_argument("--val-synthetic", type=int, default=32, help="without --val-data: this many cards of --val-seed")
    g.add_argument("--val-seed", type=int, default=2, help="seed of the synthetic validation cards (not --seed)")
    g.add_argument("--workers", type=int, default=-1,
                   help="DataLoader worker processes for on-the-fly / folder data (0 = load in the main process) "
                        "and render processes for --render-cache; -1 = automatic")
    g.add_argument("--min-size", type=int, default=384, help="resize: shorter side (as the exported pipeline)")
    g.add_argument("--max-size", type=int, default=640, help="resize: cap of the longer side")
    g.add_argument("--no-augment", action="store_true")
    g.add_argument("--scale-jitter", type=float, default=0.1, help="random rescale by 1 +- this")
    g = p.add_argument_group("model")
    g.add_argument("--num-queries", type=int, default=64, help="object queries (cards hold up to ~60 elements)")
    g.add_argument("--dropout", type=float, default=0.0)
    g.add_argument("--model-json", default="{}", help="other detr_small overrides as JSON, e.g. '{\"d_model\": 192}'")
    g = p.add_argument_group("optimisation")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--lr", type=float, default=2e-4, help="transformer, projections and heads")
    g.add_argument("--lr-backbone", type=float, default=2e-4, help="ResNet trunk (trained from scratch)")
    g.add_argument("--weight-decay", type=float, default=1e-4)
    g.add_argument("--clip", type=float, default=0.1, help="gradient-norm clipping; 0 = off")
    g.add_argument("--warmup", type=int, default=200, help="linear warm-up steps")
    g.add_argument("--decay-start", type=float, default=0.7,
                   help="fraction of the run after which the learning rate follows a cosine to --final-lr-ratio "
                        "(1 = constant)")
    g.add_argument("--final-lr-ratio", type=float, default=0.05)
    g.add_argument("--amp", choices=["auto", "none", "bf16", "fp16"], default="auto",
                   help="autocast dtype; auto = bf16 on CUDA, none on CPU")
    g = p.add_argument_group("loss and training-only queries")
    g.add_argument("--eos-coef", type=float, default=0.1, help="weight of the no-object class")
    g.add_argument("--cost-class", type=float, default=2.0)
    g.add_argument("--cost-bbox", type=float, default=5.0)
    g.add_argument("--cost-giou", type=float, default=2.0)
    g.add_argument("--weight-class", type=float, default=2.0)
    g.add_argument("--weight-bbox", type=float, default=5.0)
    g.add_argument("--weight-giou", type=float, default=2.0)
    g.add_argument("--no-aux", action="store_true", help="no auxiliary decoder losses")
    g.add_argument("--iou-aware", action="store_true", help="IoU-aware soft classification targets")
    g.add_argument("--dn-groups", type=int, default=0, help="denoising groups (0 = off)")
    g.add_argument("--dn-box-noise", type=float, default=0.4)
    g.add_argument("--dn-label-noise", type=float, default=0.2)
    g.add_argument("--dn-max-queries", type=int, default=200, help="cap on denoising queries per image")
    g.add_argument("--extra-groups", type=int, default=2,
                   help="extra training-only query groups (Group DETR; 2 in the shipped recipe); 0 = off")
    g.add_argument("--extra-group-k", type=int, default=1, help="targets repeated k times for extra groups (H-DETR)")
    return p


# ------------------------------------------------------------------------------ helpers
def lr_factor(step: int, progress: float, warmup: int, decay_start: float, final_ratio: float) -> float:
    """Multiplier of the base learning rates: linear warm-up over ``warmup`` steps, then 1,
    then from ``decay_start`` (a fraction of the run) a cosine down to ``final_ratio``."""
    factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    if decay_start < 1.0 and progress > decay_start:
        t = min(1.0, (progress - decay_start) / (1.0 - decay_start))
        factor *= final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    return factor


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available here")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {os.cpu_count()} CPUs"
    return f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _targets_to(targets: Sequence[Dict[str, Tensor]], device: torch.device) -> List[Dict[str, Tensor]]:
    return [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in targets]


class LoaderStream:
    """Endless batches from a Dataset through a DataLoader, normalised on the device."""

    def __init__(self, dataset, batch_size: int, workers: int, seed: int, device: torch.device) -> None:
        self.dataset = dataset
        self.batch_size = min(batch_size, len(dataset))
        self.workers = workers
        self.seed = seed
        self.device = device
        self.epoch = 0
        self.iterator: Optional[Iterator] = None

    def _loader(self):
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
            num_workers=self.workers, worker_init_fn=worker_init if self.workers else None, generator=generator,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )

    def batch(self):
        while True:
            if self.iterator is None:
                self.iterator = iter(self._loader())
            try:
                images, mask, targets = next(self.iterator)
                break
            except StopIteration:
                self.iterator = None
                self.epoch += 1
        images = images.to(self.device, non_blocking=True)
        mask = mask.to(self.device, non_blocking=True)
        return normalize(images, mask), mask, _targets_to(targets, self.device)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state.get("epoch", 0)) + 1  # a fresh shuffle after a resume


def _val_batches_from_dataset(dataset, batch_size: int, device: torch.device):
    batches = []
    for start in range(0, len(dataset), batch_size):
        images, mask, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        images, mask = images.to(device), mask.to(device)
        batches.append((normalize(images, mask), mask, _targets_to(targets, device)))
    return batches


@torch.no_grad()
def validate(model: DETR, batches, device: torch.device, amp_dtype: Optional[torch.dtype],
             channels_last: bool = False, score_threshold: float = 0.001) -> Dict[str, object]:
    """mAP of ``model`` on pre-built batches ``(pixels, mask, targets with "size")``, computed
    with :func:`detr_deploy.evaluate.coco_map` in resized-image pixels."""
    from detr_deploy.evaluate import coco_map

    was_training = model.training
    model.eval()
    ground_truth, detections = [], []
    for pixels, mask, targets in batches:
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            out = model(pixels, mask)
        probabilities = out["pred_logits"].float().softmax(-1)[..., :-1]
        scores, labels = probabilities.max(-1)
        boxes = box_cxcywh_to_xyxy(out["pred_boxes"].float())
        for index, target in enumerate(targets):
            height, width = (int(v) for v in target["size"].tolist())
            scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
            keep = scores[index] > score_threshold
            detections.append(((boxes[index][keep] * scale).cpu().numpy(), scores[index][keep].cpu().numpy(),
                               labels[index][keep].cpu().numpy()))
            ground_truth.append(((box_cxcywh_to_xyxy(target["boxes"].float()) * scale).cpu().numpy(),
                                 target["labels"].cpu().numpy()))
    if was_training:
        model.train()
    return coco_map(ground_truth, detections, model.config.num_classes)


# ------------------------------------------------------------------------------ training
def _build_data(args, device: torch.device, names: Sequence[str], out: Path):
    """-> (train stream with .batch(), validation batches, description dict)."""
    loader_workers = args.workers if args.workers >= 0 else min(4, max(1, (os.cpu_count() or 2) - 1))
    augment = not args.no_augment
    info: Dict[str, object] = {}
    train_path = args.data
    if args.render_cache:
        cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"
        if not is_cache(cache_dir) or len(load_cache(cache_dir)["sizes"]) != args.render_cache:
            start = time.time()
            render_cache(cache_dir, SyntheticCards(args.render_cache, args.seed, names=names),
                         args.min_size, args.max_size, workers=max(args.workers, 0))
            info["render_seconds"] = round(time.time() - start, 1)
        train_path = str(cache_dir)
        info["train_cards"] = args.render_cache
    if train_path == "synthetic":
        source = SyntheticCards(args.num_train, args.seed, names=names)
        dataset = CardDataset(source, args.min_size, args.max_size,
                              Augment(scale_jitter=args.scale_jitter, seed=args.seed) if augment else None)
        stream = LoaderStream(dataset, args.batch_size, loader_workers, args.seed, device)
        info.update(train="synthetic on the fly", train_cards=args.num_train, train_seed=args.seed)
    elif is_cache(train_path):
        cache = load_cache(train_path)
        scale = args.min_size / cache["min_size"]
        if abs(cache["max_size"] * scale - args.max_size) > 1:
            raise SystemExit(f"cache {train_path} was rendered at {cache['min_size']}/{cache['max_size']}; "
                             f"--min-size/--max-size must keep that ratio")
        stream = TensorBatcher(cache, args.batch_size, device, augment=augment, scale_jitter=args.scale_jitter,
                               resolution_scale=scale, seed=args.seed)
        info.update(train=f"render cache {train_path}", train_cards=len(stream), train_seed=args.seed,
                    cache_resolution=[cache["min_size"], cache["max_size"]])
    else:
        dataset = CardDataset(LabelledFolder(train_path, names), args.min_size, args.max_size,
                              Augment(scale_jitter=args.scale_jitter, seed=args.seed) if augment else None)
        stream = LoaderStream(dataset, args.batch_size, loader_workers, args.seed, device)
        info.update(train=f"labelled {train_path}", train_cards=len(dataset))

    val_batch = max(args.batch_size, 16)
    if args.val_data and is_cache(args.val_data):
        cache = load_cache(args.val_data)
        val = list(TensorBatcher(cache, val_batch, device, augment=False,
                                 resolution_scale=args.min_size / cache["min_size"]).batches())
        info.update(val=f"render cache {args.val_data}", val_cards=len(cache["sizes"]))
    elif args.val_data:
        dataset = CardDataset(LabelledFolder(args.val_data, names), args.min_size, args.max_size)
        val = _val_batches_from_dataset(dataset, val_batch, device)
        info.update(val=f"labelled {args.val_data}", val_cards=len(dataset))
    elif args.val_synthetic > 0:
        if args.val_seed == args.seed:
            raise SystemExit("--val-seed must differ from --seed (held-out cards)")
        dataset = CardDataset(SyntheticCards(args.val_synthetic, args.val_seed, names=names), args.min_size, args.max_size)
        val = _val_batches_from_dataset(dataset, val_batch, device)
        info.update(val="synthetic", val_cards=args.val_synthetic, val_seed=args.val_seed)
    else:
        val = []
    return stream, val, info


def _param_groups(model: nn.Module, aids: nn.Module, lr: float, lr_backbone: float, weight_decay: float):
    groups = {"backbone_decay": [], "backbone_no_decay": [], "decay": [], "no_decay": []}
    named = [(f"model.{n}", p) for n, p in model.named_parameters()] + [(f"aids.{n}", p) for n, p in aids.named_parameters()]
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        prefix = "backbone_" if name.startswith("model.backbone.") else ""
        groups[prefix + ("decay" if parameter.dim() > 1 else "no_decay")].append(parameter)
    out = []
    for key, params in groups.items():
        if params:
            out.append({"params": params, "lr": lr_backbone if key.startswith("backbone") else lr,
                        "base_lr": lr_backbone if key.startswith("backbone") else lr,
                        "weight_decay": 0.0 if key.endswith("no_decay") else weight_decay,
                        "name": key})
    return out


def heads_in_float32(model: DETR) -> None:
    """Run the class and box heads outside autocast, in float32.

    Under bf16 autocast the sigmoid box outputs would be rounded to about 1/256 of the
    image (2-3 pixels at 640), too coarse for 8-pixel checkboxes. Only this training
    process is affected: the instance's ``forward`` is wrapped, the weights and their
    names do not change.
    """
    for module in (model.class_embed, model.bbox_embed):
        inner = module.forward

        def forward(x: Tensor, _inner=inner) -> Tensor:
            with torch.autocast(x.device.type, enabled=False):
                return _inner(x.float())

        module.forward = forward


class _StopFlag:
    def __init__(self) -> None:
        self.stop = False
        self.previous = {}

    def __enter__(self):
        def handler(signum, frame):
            self.stop = True

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def train(args: argparse.Namespace) -> Dict[str, object]:
    """Run (or resume) training as configured by ``args`` (see :func:`build_parser`)."""
    if args.steps <= 0 and args.time_budget <= 0:
        raise SystemExit("give --steps and/or --time-budget")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    seed_everything(args.seed)
    names = class_names()
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    if args.amp == "auto":
        amp_dtype = torch.bfloat16 if device.type == "cuda" else None
    channels_last = device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    checkpoint_path = out / "checkpoint.pth"
    state = None
    if args.resume and checkpoint_path.is_file():
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    elif args.resume:
        print(f"--resume: no {checkpoint_path}, starting a new run", file=sys.stderr)

    if state is not None:
        model = build_detr(DETRConfig(**state["config"]))
    else:
        overrides = json.loads(args.model_json)
        model = detr_small(seed=args.seed, num_queries=args.num_queries, num_classes=len(names),
                           class_names=list(names), dropout=args.dropout, **overrides)
    config = model.config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed + 1)
        aids = TrainingQueries(config.d_model, config.num_classes, config.num_queries, dn_groups=args.dn_groups,
                               box_noise=args.dn_box_noise, label_noise=args.dn_label_noise,
                               extra_groups=args.extra_groups, extra_group_k=args.extra_group_k,
                               max_dn_queries=args.dn_max_queries)
    criterion = SetCriterion(
        config.num_classes, HungarianMatcher(args.cost_class, args.cost_bbox, args.cost_giou),
        eos_coef=args.eos_coef, weight_class=args.weight_class, weight_bbox=args.weight_bbox,
        weight_giou=args.weight_giou, aux=not args.no_aux, iou_aware=args.iou_aware,
    )
    model.to(device).train()
    aids.to(device).train()
    criterion.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if amp_dtype is not None:
        heads_in_float32(model)
    optimizer = torch.optim.AdamW(_param_groups(model, aids, args.lr, args.lr_backbone, args.weight_decay),
                                  lr=args.lr, weight_decay=args.weight_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    step, images_seen, elapsed_before = 0, 0, 0.0
    val_history: List[dict] = []
    setup_start = time.time()
    stream, val_batches, data_info = _build_data(args, device, names, out)
    setup_seconds = time.time() - setup_start
    if state is not None:
        model.load_state_dict(state["model"])
        aids.load_state_dict(state["aids"])
        optimizer.load_state_dict(state["optimizer"])
        step, images_seen, elapsed_before = int(state["step"]), int(state["images"]), float(state["elapsed"])
        val_history = list(state.get("val_history", []))
        if "data" in state:
            stream.load_state_dict(state["data"])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate(rng["python"])
        if "cuda" in rng and device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        print(f"resumed {checkpoint_path} at step {step} ({elapsed_before:.0f} s trained)", file=sys.stderr)

    csv_path = out / "log.csv"
    new_csv = not (args.resume and csv_path.is_file() and state is not None)
    csv_file = open(csv_path, "w" if new_csv else "a", newline="")
    writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
    if new_csv:
        writer.writeheader()

    def progress_of(step_: int, elapsed_: float) -> float:
        fractions = []
        if args.steps > 0:
            fractions.append(step_ / args.steps)
        if args.time_budget > 0:
            fractions.append(elapsed_ / args.time_budget)
        return max(fractions)

    def summary(status: str, elapsed_: float) -> dict:
        return {
            "name": args.name, "status": status, "step": step, "images": images_seen,
            "elapsed_s": round(elapsed_, 1), "images_per_s": round(images_seen / max(elapsed_, 1e-9), 2),
            "epoch": getattr(stream, "epoch", 0), "device": str(device), "hardware": hardware(device),
            "torch": torch.__version__, "amp": str(amp_dtype), "setup_s": round(setup_seconds, 1),
            "data": data_info, "model_config": config.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "training_only_parameters": sum(p.numel() for p in aids.parameters()),
            "pipeline": {"min_size": args.min_size, "max_size": args.max_size},
            "val_history": val_history, "final_val": val_history[-1] if val_history else None,
            "args": {k: v for k, v in vars(args).items()},
            "argv": list(sys.argv),
        }

    def save(status: str, elapsed_: float) -> None:
        content = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": config.to_dict(), "aids": {k: v.detach().cpu() for k, v in aids.state_dict().items()},
            "optimizer": optimizer.state_dict(), "step": step, "images": images_seen, "elapsed": elapsed_,
            "val_history": val_history, "data": stream.state_dict() if hasattr(stream, "state_dict") else {},
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    **({"cuda": torch.cuda.get_rng_state_all()} if device.type == "cuda" else {})},
            "pipeline": {"min_size": args.min_size, "max_size": args.max_size},
            "args": {k: v for k, v in vars(args).items()}, "status": status,
        }
        _atomic_save(content, checkpoint_path)
        if args.save_fp16:  # small enough to copy off a machine at every checkpoint
            half = {k: (v.half() if v.is_floating_point() else v) for k, v in content["model"].items()}
            _atomic_save({"model": half, "config": config.to_dict(), "pipeline": content["pipeline"],
                          "training": {"step": step, "images": images_seen, "elapsed_s": round(elapsed_, 1),
                                       "status": status, "seed": args.seed,
                                       "final_val": val_history[-1] if val_history else None}},
                         out / "model_fp16.pth")
        (out / "log.json").write_text(json.dumps(summary(status, elapsed_), indent=2, default=str) + "\n")

    def run_validation(elapsed_: float) -> Optional[dict]:
        if not val_batches:
            return None
        start = time.time()
        metrics = validate(model, val_batches, device, amp_dtype, channels_last)
        record = {"step": step, "images": images_seen, "elapsed_s": round(elapsed_, 1),
                  "map50": round(metrics["map50"], 4), "map": round(metrics["map"], 4),
                  "per_class_ap50": {names[c]: round(v, 4) for c, v in metrics["ap50_per_class"].items()},
                  "seconds": round(time.time() - start, 1)}
        val_history.append(record)
        writer.writerow({"step": step, "epoch": getattr(stream, "epoch", 0), "images": images_seen,
                         "elapsed_s": round(elapsed_, 1), "val_map50": record["map50"], "val_map": record["map"]})
        csv_file.flush()
        return record

    total_for_bar = args.steps if args.steps > 0 else int(math.ceil(args.time_budget))
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total_for_bar, initial=min(step if args.steps > 0 else int(elapsed_before), total_for_bar),
                   unit="step" if args.steps > 0 else "s", desc=args.name or "train", dynamic_ncols=True,
                   mininterval=1.0 if sys.stderr.isatty() else 15.0, file=sys.stderr)

    window: Dict[str, float] = {}
    window_count, window_images, window_start = 0, 0, time.time()
    start_time = time.time()
    last_checkpoint = last_eval = start_time
    status = "finished"
    nonfinite = 0
    elapsed = elapsed_before
    with _StopFlag() as flag:
        while True:
            elapsed = elapsed_before + (time.time() - start_time)
            if args.steps > 0 and step >= args.steps:
                status = "finished"
                break
            if args.time_budget > 0 and elapsed >= args.time_budget:
                status = "time budget reached"
                break
            if flag.stop:
                status = "interrupted"
                break
            progress = progress_of(step, elapsed)
            factor = lr_factor(step, progress, args.warmup, args.decay_start, args.final_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor

            pixels, mask, targets = stream.batch()
            if channels_last:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            target_batch = TargetBatch.from_targets(targets, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                content, query_pos, attn_mask, layout = aids(target_batch, pixels.shape[0], device)
                outputs = model(pixels, mask, content, query_pos, attn_mask)
            losses = criterion(outputs, target_batch, layout)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                nonfinite += 1
                optimizer.zero_grad(set_to_none=True)
                if nonfinite > 20:
                    status = "diverged (non-finite loss)"
                    break
                continue
            nonfinite = 0
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, args.clip if args.clip > 0 else float("inf"))
            scaler.step(optimizer)
            scaler.update()
            step += 1
            images_seen += pixels.shape[0]
            window_images += pixels.shape[0]
            window_count += 1
            for key, value in losses.items():
                window[key] = window.get(key, 0.0) + value.detach()
            window["grad_norm"] = window.get("grad_norm", 0.0) + grad_norm.detach()

            now = time.time()
            if step % args.log_every == 0 or (args.steps > 0 and step >= args.steps):
                values = {k: float(v) / window_count for k, v in window.items()}
                rate = window_images / max(now - window_start, 1e-9)
                writer.writerow({
                    "step": step, "epoch": getattr(stream, "epoch", 0), "images": images_seen,
                    "elapsed_s": round(elapsed_before + now - start_time, 1),
                    "lr": f"{optimizer.param_groups[0]['lr']:.3g}",
                    **{k: round(values.get(k, 0.0), 5) for k in
                       ("loss", "loss_class", "loss_bbox", "loss_giou", "loss_dn", "loss_extra", "grad_norm")},
                    "images_per_s": round(rate, 1),
                })
                csv_file.flush()
                if bar is not None:
                    bar.set_postfix(loss=f"{values['loss']:.3f}", l1=f"{values['loss_bbox']:.3f}",
                                    giou=f"{values['loss_giou']:.3f}", img_s=f"{rate:.0f}", step=step, refresh=False)
                window, window_count, window_images, window_start = {}, 0, 0, now
            if bar is not None:
                position = step if args.steps > 0 else int(elapsed_before + now - start_time)
                bar.update(max(0, min(position, total_for_bar) - bar.n))
            if args.eval_every > 0 and now - last_eval >= args.eval_every:
                record = run_validation(elapsed_before + now - start_time)
                if record and bar is not None:
                    bar.write(f"step {step}: val mAP@0.5 {record['map50']:.3f}  mAP {record['map']:.3f}")
                last_eval = time.time()
                start_time += last_eval - now  # validation time does not count as training time
            if now - last_checkpoint >= args.checkpoint_every:
                save("running", elapsed_before + now - start_time)
                last_checkpoint = time.time()
    elapsed = elapsed_before + (time.time() - start_time)
    if bar is not None:
        bar.close()
    if status != "diverged (non-finite loss)" and (not val_history or val_history[-1]["step"] != step):
        run_validation(elapsed)
    save(status, elapsed)
    pipeline = {"min_size": args.min_size, "max_size": args.max_size}
    training = {"step": step, "images": images_seen, "elapsed_s": round(elapsed, 1), "status": status,
                "final_val": val_history[-1] if val_history else None, "seed": args.seed}
    save_checkpoint(model, out / "model.pth", pipeline=pipeline, training=training)
    csv_file.close()
    result = summary(status, elapsed)
    final = result["final_val"]
    print(f"{args.name or 'train'}: {status} after {step} steps, {images_seen} images, {elapsed:.0f} s"
          + (f"; val mAP@0.5 {final['map50']:.3f}, mAP {final['map']:.3f}" if final else ""), file=sys.stderr)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
