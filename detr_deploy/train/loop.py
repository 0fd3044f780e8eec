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

Settings are a :class:`~detr_deploy.train.config.TrainConfig`; the command line is built from it
(the full list: ``--help``)::

    python -m detr_deploy.train --out runs/cpu --device cpu --time-budget 600
    python -m detr_deploy.train --out runs/x --render-cache 20000 --val-synthetic 500 \\
        --device cuda --batch-size 32 --time-budget 300 --dn-groups 3 --extra-groups 2

    train(TrainConfig(out="runs/cpu", device="cpu", time_budget=600))  # the same in Python

Files in ``--out``: ``checkpoint.pth`` (for ``--resume``; also loadable by
``detr_deploy.model.checkpoint.load_model`` and ``python -m detr_deploy.evaluate --checkpoint``),
``model.pth`` (weights only, fp32; ``--save-fp16`` adds ``model_fp16.pth``),
``log.csv`` (one row per ``--log-every`` steps and per validation) and ``log.json``
(settings, status and validation history).

:func:`train` is a few named steps: :func:`start_run` (device, seeds, model and optimiser, data,
resume), :func:`run_steps` (the loop: learning rate, :meth:`TrainingRun.train_step`, log rows,
validation, checkpoints), then a last validation and the final files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detr_deploy.data.datasets import class_names
from detr_deploy.model.box_ops import box_cxcywh_to_xyxy
from detr_deploy.model.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from detr_deploy.model.detr import DETR, DETRConfig, build_detr, detr_small
from detr_deploy.train.config import TrainConfig, build_parser
from detr_deploy.train.losses import SetCriterion, TrainingQueries
from detr_deploy.train.matcher import HungarianMatcher, TargetBatch
from detr_deploy.train.records import CSV_FIELDS, LossWindow, ProgressBar, TrainLog
from detr_deploy.train.streams import TrainingData, build_data

__all__ = [
    "TrainConfig",
    "build_parser",
    "train",
    "main",
    "lr_factor",
    "validate",
    "CSV_FIELDS",
    "TrainingRun",
    "start_run",
    "run_steps",
]

CHECKPOINT_NAME = "checkpoint.pth"
DIVERGED = "diverged (non-finite loss)"
MAX_NONFINITE_STEPS = 20


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
    processor = platform.processor() or platform.machine()
    return f"CPU ({processor}), {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _on_cpu(module: nn.Module) -> Dict[str, Tensor]:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


@dataclass
class Runtime:
    """Where and in which precision the run computes: bf16 autocast and channels-last on CUDA."""

    device: torch.device
    amp_dtype: Optional[torch.dtype]
    channels_last: bool

    @classmethod
    def for_config(cls, config: TrainConfig) -> "Runtime":
        device = pick_device(config.device)
        amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
        if config.amp == "auto":
            amp_dtype = torch.bfloat16 if device.type == "cuda" else None
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(device, amp_dtype, channels_last=device.type == "cuda")

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def memory_format(self, pixels: Tensor) -> Tensor:
        return pixels.contiguous(memory_format=torch.channels_last) if self.channels_last else pixels


@torch.no_grad()
def validate(
    model: DETR,
    batches,
    device: torch.device,
    amp_dtype: Optional[torch.dtype],
    channels_last: bool = False,
    score_threshold: float = 0.001,
) -> Dict[str, object]:
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
            detections.append(
                (
                    (boxes[index][keep] * scale).cpu().numpy(),
                    scores[index][keep].cpu().numpy(),
                    labels[index][keep].cpu().numpy(),
                )
            )
            ground_truth.append(
                ((box_cxcywh_to_xyxy(target["boxes"].float()) * scale).cpu().numpy(), target["labels"].cpu().numpy())
            )
    if was_training:
        model.train()
    return coco_map(ground_truth, detections, model.config.num_classes)


# ------------------------------------------------------------------------------ model and optimiser
def _param_groups(model: nn.Module, aids: nn.Module, lr: float, lr_backbone: float, weight_decay: float):
    groups = {"backbone_decay": [], "backbone_no_decay": [], "decay": [], "no_decay": []}
    named = [(f"model.{n}", p) for n, p in model.named_parameters()] + [
        (f"aids.{n}", p) for n, p in aids.named_parameters()
    ]
    for name, parameter in named:
        if not parameter.requires_grad:
            continue
        prefix = "backbone_" if name.startswith("model.backbone.") else ""
        groups[prefix + ("decay" if parameter.dim() > 1 else "no_decay")].append(parameter)
    out = []
    for key, params in groups.items():
        if params:
            out.append(
                {
                    "params": params,
                    "lr": lr_backbone if key.startswith("backbone") else lr,
                    "base_lr": lr_backbone if key.startswith("backbone") else lr,
                    "weight_decay": 0.0 if key.endswith("no_decay") else weight_decay,
                    "name": key,
                }
            )
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


@dataclass
class Learner:
    """The model and everything that trains it: training-only queries, loss, optimiser, loss scaler."""

    model: DETR
    aids: TrainingQueries
    criterion: SetCriterion
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler


def freeze_backbone_stages(model: DETR, stages: int) -> None:
    """No gradients for the ResNet stem and ``layer1..layer{stages}``: backward stops before them."""
    if stages == 0:
        return
    body = model.backbone[0].body
    layers = [name for name, _ in body.named_children() if name.startswith("layer")]
    if not 0 <= stages <= len(layers):
        raise ValueError(f"--freeze-stages {stages}: the backbone has {len(layers)} stages")
    for name in ["conv1", "bn1"] + layers[:stages]:
        getattr(body, name).requires_grad_(False)


def build_learner(
    config: TrainConfig, names: Sequence[str], runtime: Runtime, saved_model_config: Optional[dict] = None
) -> Learner:
    """A new model (seed ``config.seed``), or the architecture a checkpoint saved, and its training parts."""
    if saved_model_config is not None:
        model = build_detr(DETRConfig(**saved_model_config))
    else:
        model = detr_small(
            seed=config.seed,
            num_queries=config.num_queries,
            num_classes=len(names),
            class_names=list(names),
            dropout=config.dropout,
            **json.loads(config.model_json),
        )
    model_config = model.config
    freeze_backbone_stages(model, config.freeze_stages)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        aids = TrainingQueries(
            model_config.d_model,
            model_config.num_classes,
            model_config.num_queries,
            dn_groups=config.dn_groups,
            box_noise=config.dn_box_noise,
            label_noise=config.dn_label_noise,
            extra_groups=config.extra_groups,
            extra_group_k=config.extra_group_k,
            max_dn_queries=config.dn_max_queries,
        )
    criterion = SetCriterion(
        model_config.num_classes,
        HungarianMatcher(config.cost_class, config.cost_bbox, config.cost_giou),
        eos_coef=config.eos_coef,
        weight_class=config.weight_class,
        weight_bbox=config.weight_bbox,
        weight_giou=config.weight_giou,
        aux=not config.no_aux,
        iou_aware=config.iou_aware,
    )
    model.to(runtime.device).train()
    aids.to(runtime.device).train()
    criterion.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    if runtime.amp_dtype is not None:
        heads_in_float32(model)
    optimizer = torch.optim.AdamW(
        _param_groups(model, aids, config.lr, config.lr_backbone, config.weight_decay),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    return Learner(model, aids, criterion, optimizer, scaler)


# ------------------------------------------------------------------------------ the run
@dataclass
class StepResult:
    """What one optimiser step reports: its loss terms, the gradient norm before clipping, the batch size."""

    losses: Dict[str, Tensor]
    grad_norm: Tensor
    images: int


@dataclass
class TrainingRun:
    """One run's state: what trains, its data, its counters; the steps of :func:`train` are its methods."""

    config: TrainConfig
    out: Path
    runtime: Runtime
    names: List[str]
    learner: Learner
    data: TrainingData
    setup_seconds: float = 0.0
    step: int = 0
    images: int = 0
    resumed: bool = False
    elapsed_before: float = 0.0  # training seconds of the runs this one resumes
    val_history: List[dict] = field(default_factory=list)

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def pipeline(self) -> Dict[str, int]:
        return {"min_size": self.config.min_size, "max_size": self.config.max_size}

    @property
    def final_val(self) -> Optional[dict]:
        return self.val_history[-1] if self.val_history else None

    def progress(self, elapsed: float) -> float:
        """Fraction of the run done: the larger of the step and the time fractions."""
        fractions = []
        if self.config.steps > 0:
            fractions.append(self.step / self.config.steps)
        if self.config.time_budget > 0:
            fractions.append(elapsed / self.config.time_budget)
        return max(fractions)

    def set_learning_rate(self, elapsed: float) -> None:
        config = self.config
        factor = lr_factor(self.step, self.progress(elapsed), config.warmup, config.decay_start, config.final_lr_ratio)
        for group in self.learner.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    def train_step(self) -> Optional[StepResult]:
        """One optimiser step on the next batch; ``None`` (and no step) when the loss is not finite."""
        learner, runtime, device = self.learner, self.runtime, self.runtime.device
        pixels, mask, targets = self.data.stream.batch()
        pixels = runtime.memory_format(pixels)
        target_batch = TargetBatch.from_targets(targets, device)
        with runtime.autocast():
            content, query_pos, attn_mask, layout = learner.aids(target_batch, pixels.shape[0], device)
            outputs = learner.model(pixels, mask, content, query_pos, attn_mask)
        losses = learner.criterion(outputs, target_batch, layout)
        loss = losses["loss"]
        learner.optimizer.zero_grad(set_to_none=True)
        if not torch.isfinite(loss):
            return None
        learner.scaler.scale(loss).backward()
        learner.scaler.unscale_(learner.optimizer)
        params = [p for group in learner.optimizer.param_groups for p in group["params"]]
        clip = self.config.clip if self.config.clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
        learner.scaler.step(learner.optimizer)
        learner.scaler.update()
        self.step += 1
        self.images += pixels.shape[0]
        return StepResult(losses, grad_norm, pixels.shape[0])

    def step_row(self, means: Dict[str, float], images_per_s: float, elapsed: float) -> Dict[str, object]:
        """The log.csv row of the steps since the last one."""
        losses = ("loss", "loss_class", "loss_bbox", "loss_giou", "loss_dn", "loss_extra", "grad_norm")
        return {
            "step": self.step,
            "epoch": self.data.stream.epoch,
            "images": self.images,
            "elapsed_s": round(elapsed, 1),
            "lr": f"{self.learner.optimizer.param_groups[0]['lr']:.3g}",
            **{key: round(means.get(key, 0.0), 5) for key in losses},
            "images_per_s": round(images_per_s, 1),
        }

    def validate_and_log(self, elapsed: float, log: TrainLog) -> Optional[dict]:
        """Score the validation batches, add the result to the history and to log.csv."""
        if not self.data.validation:
            return None
        start = time.time()
        runtime = self.runtime
        metrics = validate(
            self.learner.model, self.data.validation, runtime.device, runtime.amp_dtype, runtime.channels_last
        )
        record = {
            "step": self.step,
            "images": self.images,
            "elapsed_s": round(elapsed, 1),
            "map50": round(metrics["map50"], 4),
            "map": round(metrics["map"], 4),
            "per_class_ap50": {self.names[c]: round(v, 4) for c, v in metrics["ap50_per_class"].items()},
            "seconds": round(time.time() - start, 1),
        }
        self.val_history.append(record)
        log.write(
            {
                "step": self.step,
                "epoch": self.data.stream.epoch,
                "images": self.images,
                "elapsed_s": round(elapsed, 1),
                "val_map50": record["map50"],
                "val_map": record["map"],
            }
        )
        return record

    def training_record(self, status: str, elapsed: float) -> Dict[str, object]:
        """What the weights files say about the training that made them."""
        return {
            "step": self.step,
            "images": self.images,
            "elapsed_s": round(elapsed, 1),
            "status": status,
            "seed": self.config.seed,
            "final_val": self.final_val,
        }

    def summary(self, status: str, elapsed: float) -> Dict[str, object]:
        """log.json: settings, counters, hardware, data and validation history."""
        model, device = self.learner.model, self.runtime.device
        return {
            "name": self.config.name,
            "status": status,
            "step": self.step,
            "images": self.images,
            "elapsed_s": round(elapsed, 1),
            "images_per_s": round(self.images / max(elapsed, 1e-9), 2),
            "epoch": self.data.stream.epoch,
            "device": str(device),
            "hardware": hardware(device),
            "torch": torch.__version__,
            "amp": str(self.runtime.amp_dtype),
            "setup_s": round(self.setup_seconds, 1),
            "data": self.data.info,
            "model_config": model.config.to_dict(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "training_only_parameters": sum(p.numel() for p in self.learner.aids.parameters()),
            "pipeline": self.pipeline,
            "val_history": self.val_history,
            "final_val": self.final_val,
            "args": dataclasses.asdict(self.config),
            "argv": list(sys.argv),
        }

    def save(self, status: str, elapsed: float) -> None:
        """checkpoint.pth (everything ``--resume`` needs), model_fp16.pth with ``--save-fp16``, log.json."""
        learner = self.learner
        content = {
            "model": _on_cpu(learner.model),
            "config": learner.model.config.to_dict(),
            "aids": _on_cpu(learner.aids),
            "optimizer": learner.optimizer.state_dict(),
            "step": self.step,
            "images": self.images,
            "elapsed": elapsed,
            "val_history": self.val_history,
            "data": self.data.stream.state_dict(),
            "rng": self._rng_states(),
            "pipeline": self.pipeline,
            "args": dataclasses.asdict(self.config),
            "status": status,
        }
        _atomic_save(content, self.checkpoint_path)
        if self.config.save_fp16:  # small enough to copy off a machine at every checkpoint
            half = {k: (v.half() if v.is_floating_point() else v) for k, v in content["model"].items()}
            _atomic_save(
                {
                    "model": half,
                    "config": content["config"],
                    "pipeline": self.pipeline,
                    "training": self.training_record(status, elapsed),
                },
                self.out / "model_fp16.pth",
            )
        summary = json.dumps(self.summary(status, elapsed), indent=2, default=str)
        (self.out / "log.json").write_text(summary + "\n")

    def save_weights(self, status: str, elapsed: float) -> None:
        """model.pth: the plain DETR's weights in fp32, without the training-only parts."""
        save_checkpoint(
            self.learner.model,
            self.out / "model.pth",
            pipeline=self.pipeline,
            training=self.training_record(status, elapsed),
        )

    def _rng_states(self) -> dict:
        states = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.runtime.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint written by :meth:`save`: weights, optimiser, counters, data order, RNGs."""
        learner = self.learner
        self.resumed = True
        learner.model.load_state_dict(state["model"])
        learner.aids.load_state_dict(state["aids"])
        learner.optimizer.load_state_dict(state["optimizer"])
        self.step, self.images, self.elapsed_before = int(state["step"]), int(state["images"]), float(state["elapsed"])
        self.val_history = list(state.get("val_history", []))
        if "data" in state:
            self.data.stream.load_state_dict(state["data"])
        rng = state.get("rng", {})
        if "torch" in rng:
            torch.set_rng_state(rng["torch"])
        if "python" in rng:
            random.setstate(rng["python"])
        if "cuda" in rng and self.runtime.device.type == "cuda":
            torch.cuda.set_rng_state_all(rng["cuda"])
        print(
            f"resumed {self.checkpoint_path} at step {self.step} ({self.elapsed_before:.0f} s trained)", file=sys.stderr
        )


def _read_resume_state(config: TrainConfig, path: Path) -> Optional[dict]:
    if config.resume and path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    if config.resume:
        print(f"--resume: no {path}, starting a new run", file=sys.stderr)
    return None


def _start_weights(config: TrainConfig) -> Optional[Tuple[Dict[str, Tensor], dict]]:
    """``--checkpoint``: its weights and the model configuration it carries (which must name these classes)."""
    if not config.checkpoint:
        return None
    state, extra = read_state_dict(config.checkpoint)
    saved = extra.get("config")
    if not isinstance(saved, dict):
        raise ValueError(
            f"--checkpoint {config.checkpoint}: not a detr_deploy checkpoint (it carries no model configuration)"
        )
    if list(saved.get("class_names") or []) != class_names():
        raise ValueError(
            f"--checkpoint {config.checkpoint}: its classes {saved.get('class_names')} "
            f"are not the card classes {class_names()}"
        )
    return state, saved


def start_run(config: TrainConfig) -> TrainingRun:
    """Device and seeds, the model and its optimiser, the data; with ``--resume`` the saved state."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    runtime = Runtime.for_config(config)
    seed_everything(config.seed)
    names = class_names()
    state = _read_resume_state(config, out / CHECKPOINT_NAME)
    start_weights = _start_weights(config) if state is None else None
    saved_config = state["config"] if state is not None else start_weights[1] if start_weights else None
    learner = build_learner(config, names, runtime, saved_config)
    if start_weights is not None:
        load_checkpoint(learner.model, start_weights[0])
        print(f"fine-tuning from {config.checkpoint}", file=sys.stderr)
    setup_start = time.time()
    data = build_data(config, runtime.device, names, out)
    run = TrainingRun(config, out, runtime, names, learner, data, setup_seconds=time.time() - setup_start)
    if state is not None:
        run.restore(state)
    return run


# ------------------------------------------------------------------------------ the loop
class _StopFlag:
    """Set by SIGINT / SIGTERM while inside ``with``: the loop then saves and ends cleanly."""

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


class TrainingClock:
    """Training seconds: those of the resumed runs plus this one's, validation time excluded."""

    def __init__(self, before: float) -> None:
        self.before = before
        self.start = time.time()

    def at(self, now: float) -> float:
        return self.before + now - self.start

    def elapsed(self) -> float:
        return self.at(time.time())

    def exclude(self, since: float, until: float) -> None:
        self.start += until - since


def _stop_reason(config: TrainConfig, step: int, elapsed: float, interrupted: bool) -> Optional[str]:
    if config.steps > 0 and step >= config.steps:
        return "finished"
    if config.time_budget > 0 and elapsed >= config.time_budget:
        return "time budget reached"
    if interrupted:
        return "interrupted"
    return None


def run_steps(run: TrainingRun, log: TrainLog, bar: ProgressBar) -> Tuple[str, float]:
    """Train until ``--steps``, ``--time-budget``, a signal or a diverged loss; -> (status, training seconds)."""
    config = run.config
    window = LossWindow(time.time())
    clock = TrainingClock(run.elapsed_before)
    last_checkpoint = last_eval = clock.start
    nonfinite = 0
    with _StopFlag() as flag:
        while True:
            elapsed = clock.elapsed()
            status = _stop_reason(config, run.step, elapsed, flag.stop)
            if status is not None:
                break
            run.set_learning_rate(elapsed)
            result = run.train_step()
            if result is None:
                nonfinite += 1
                if nonfinite > MAX_NONFINITE_STEPS:
                    status = DIVERGED
                    break
                continue
            nonfinite = 0
            window.add(result.losses, result.grad_norm, result.images)

            now = time.time()
            if run.step % config.log_every == 0 or (config.steps > 0 and run.step >= config.steps):
                means, rate = window.means(), window.images_per_s(now)
                log.write(run.step_row(means, rate, clock.at(now)))
                bar.show_losses(means, rate, run.step)
                window.reset(now)
            bar.show_progress(run.step, clock.at(now))
            if config.eval_every > 0 and now - last_eval >= config.eval_every:
                record = run.validate_and_log(clock.at(now), log)
                if record:
                    bar.write(f"step {run.step}: val mAP@0.5 {record['map50']:.3f}  mAP {record['map']:.3f}")
                last_eval = time.time()
                clock.exclude(now, last_eval)  # validation time does not count as training time
            if now - last_checkpoint >= config.checkpoint_every:
                run.save("running", clock.at(now))
                last_checkpoint = time.time()
    return status, clock.elapsed()


def train(config: TrainConfig) -> Dict[str, object]:
    """Run (or resume) training as ``config`` says; -> the summary written to ``log.json``."""
    if config.steps <= 0 and config.time_budget <= 0:
        raise SystemExit("give --steps and/or --time-budget")
    run = start_run(config)
    with TrainLog(run.out / "log.csv", append=run.resumed) as log:
        with ProgressBar(config, run.step, run.elapsed_before) as bar:
            status, elapsed = run_steps(run, log, bar)
        if status != DIVERGED and (not run.val_history or run.val_history[-1]["step"] != run.step):
            run.validate_and_log(elapsed, log)
        run.save(status, elapsed)
    run.save_weights(status, elapsed)
    summary = run.summary(status, elapsed)
    final = run.final_val
    print(
        f"{config.name or 'train'}: {status} after {run.step} steps, {run.images} images, {elapsed:.0f} s"
        + (f"; val mAP@0.5 {final['map50']:.3f}, mAP {final['map']:.3f}" if final else ""),
        file=sys.stderr,
    )
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    train(TrainConfig.from_argv(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
