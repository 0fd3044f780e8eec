"""What a training run reports while it runs: ``log.csv`` rows, loss averages, the progress bar."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Dict

from torch import Tensor

from detr_deploy.train.config import TrainConfig

__all__ = ["CSV_FIELDS", "TrainLog", "LossWindow", "ProgressBar"]

CSV_FIELDS = [
    "step",
    "epoch",
    "images",
    "elapsed_s",
    "lr",
    "loss",
    "loss_class",
    "loss_bbox",
    "loss_giou",
    "loss_dn",
    "loss_extra",
    "grad_norm",
    "images_per_s",
    "val_map50",
    "val_map",
]


class TrainLog:
    """``log.csv``, open for the run: one row per logged step and per validation, flushed at once.

    ``append`` continues the file of a resumed run (a new file, with its header, if there is none).
    """

    def __init__(self, path: Path, append: bool = False) -> None:
        append = append and path.is_file()
        self.file = open(path, "a" if append else "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=CSV_FIELDS)
        if not append:
            self.writer.writeheader()

    def write(self, row: Dict[str, object]) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def __enter__(self) -> "TrainLog":
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


class LossWindow:
    """Sums of the loss terms and gradient norms since the last logged row, and the images per second."""

    def __init__(self, now: float) -> None:
        self.reset(now)

    def reset(self, now: float) -> None:
        self.sums: Dict[str, object] = {}
        self.count = 0
        self.images = 0
        self.start = now

    def add(self, losses: Dict[str, Tensor], grad_norm: Tensor, images: int) -> None:
        self.images += images
        self.count += 1
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach()
        self.sums["grad_norm"] = self.sums.get("grad_norm", 0.0) + grad_norm.detach()

    def means(self) -> Dict[str, float]:
        return {key: float(value) / self.count for key, value in self.sums.items()}

    def images_per_s(self, now: float) -> float:
        return self.images / max(now - self.start, 1e-9)


class ProgressBar:
    """The tqdm bar on stderr, counting steps (``--steps``) or seconds of ``--time-budget``;
    nothing with ``--no-progress``. A context manager that closes the bar."""

    def __init__(self, config: TrainConfig, step: int, elapsed: float) -> None:
        self.by_steps = config.steps > 0
        self.total = config.steps if self.by_steps else int(math.ceil(config.time_budget))
        self.bar = None
        if not config.no_progress:
            from tqdm import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=min(self._position(step, elapsed), self.total),
                unit="step" if self.by_steps else "s",
                desc=config.name or "train",
                dynamic_ncols=True,
                mininterval=1.0 if sys.stderr.isatty() else 15.0,
                file=sys.stderr,
            )

    def _position(self, step: int, elapsed: float) -> int:
        return step if self.by_steps else int(elapsed)

    def show_progress(self, step: int, elapsed: float) -> None:
        if self.bar is not None:
            self.bar.update(max(0, min(self._position(step, elapsed), self.total) - self.bar.n))

    def show_losses(self, means: Dict[str, float], images_per_s: float, step: int) -> None:
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{means['loss']:.3f}",
                l1=f"{means['loss_bbox']:.3f}",
                giou=f"{means['loss_giou']:.3f}",
                img_s=f"{images_per_s:.0f}",
                step=step,
                refresh=False,
            )

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
