"""The data of a training run: an endless stream of training batches and the validation batches.

Training batches come from one of three sources (``--data``): synthetic cards rendered on the fly,
a render cache held in (GPU) memory (``--render-cache`` writes one first), or a labelled folder.
Validation batches are built once: from ``--val-data`` (a render cache or a labelled data set) or
from ``--val-synthetic`` cards of ``--val-seed``. Every batch is ``(normalised pixels, padding
mask, targets)`` on the training device.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from detr_deploy.data.datasets import (
    Augment,
    CardDataset,
    LabelledFolder,
    SyntheticCards,
    TensorBatcher,
    collate,
    is_cache,
    load_cache,
    normalize,
    render_cache,
    worker_init,
)
from detr_deploy.train.config import TrainConfig

__all__ = ["LoaderStream", "TrainingData", "build_data"]

Batch = Tuple[Tensor, Tensor, List[Dict[str, Tensor]]]


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
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            collate_fn=collate,
            num_workers=self.workers,
            worker_init_fn=worker_init if self.workers else None,
            generator=generator,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )

    def batch(self) -> Batch:
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


TrainStream = Union[LoaderStream, TensorBatcher]


@dataclass
class TrainingData:
    """``stream.batch()`` gives the next training batch; ``info`` describes both for the logs."""

    stream: TrainStream
    validation: List[Batch]
    info: Dict[str, object]


def build_data(config: TrainConfig, device: torch.device, names: Sequence[str], out: Path) -> TrainingData:
    """The training stream and the validation batches that ``config`` names."""
    info: Dict[str, object] = {}
    stream = _training_stream(config, device, names, out, info)
    validation = _validation_batches(config, device, names, info)
    return TrainingData(stream, validation, info)


def _augment(config: TrainConfig) -> Optional[Augment]:
    return None if config.no_augment else Augment(scale_jitter=config.scale_jitter, seed=config.seed)


def _loader_stream(config: TrainConfig, dataset, device: torch.device) -> LoaderStream:
    workers = config.workers if config.workers >= 0 else min(4, max(1, (os.cpu_count() or 2) - 1))
    return LoaderStream(dataset, config.batch_size, workers, config.seed, device)


def _render_training_cache(config: TrainConfig, names: Sequence[str], out: Path, info: Dict[str, object]) -> str:
    """Render ``--render-cache`` cards into the cache folder unless it holds them already; -> the folder."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else out / "cache"
    if not is_cache(cache_dir) or len(load_cache(cache_dir)["sizes"]) != config.render_cache:
        start = time.time()
        render_cache(
            cache_dir,
            SyntheticCards(config.render_cache, config.seed, names=names),
            config.min_size,
            config.max_size,
            workers=max(config.workers, 0),
        )
        info["render_seconds"] = round(time.time() - start, 1)
    info["train_cards"] = config.render_cache
    return str(cache_dir)


def _training_stream(
    config: TrainConfig, device: torch.device, names: Sequence[str], out: Path, info: Dict[str, object]
) -> TrainStream:
    train_path = _render_training_cache(config, names, out, info) if config.render_cache else config.data
    if train_path == "synthetic":
        dataset = CardDataset(
            SyntheticCards(config.num_train, config.seed, names=names),
            config.min_size,
            config.max_size,
            _augment(config),
        )
        info.update(train="synthetic on the fly", train_cards=config.num_train, train_seed=config.seed)
        return _loader_stream(config, dataset, device)
    if is_cache(train_path):
        cache = load_cache(train_path)
        scale = config.min_size / cache["min_size"]
        if abs(cache["max_size"] * scale - config.max_size) > 1:
            raise SystemExit(
                f"cache {train_path} was rendered at {cache['min_size']}/{cache['max_size']}; "
                f"--min-size/--max-size must keep that ratio"
            )
        stream = TensorBatcher(
            cache,
            config.batch_size,
            device,
            augment=not config.no_augment,
            scale_jitter=config.scale_jitter,
            resolution_scale=scale,
            seed=config.seed,
        )
        info.update(
            train=f"render cache {train_path}",
            train_cards=len(stream),
            train_seed=config.seed,
            cache_resolution=[cache["min_size"], cache["max_size"]],
        )
        return stream
    dataset = CardDataset(LabelledFolder(train_path, names), config.min_size, config.max_size, _augment(config))
    info.update(train=f"labelled {train_path}", train_cards=len(dataset))
    return _loader_stream(config, dataset, device)


def _batches_of(dataset, batch_size: int, device: torch.device) -> List[Batch]:
    batches = []
    for start in range(0, len(dataset), batch_size):
        images, mask, targets = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        images, mask = images.to(device), mask.to(device)
        batches.append((normalize(images, mask), mask, _targets_to(targets, device)))
    return batches


def _validation_batches(
    config: TrainConfig, device: torch.device, names: Sequence[str], info: Dict[str, object]
) -> List[Batch]:
    batch_size = max(config.batch_size, 16)
    if config.val_data and is_cache(config.val_data):
        cache = load_cache(config.val_data)
        info.update(val=f"render cache {config.val_data}", val_cards=len(cache["sizes"]))
        return list(
            TensorBatcher(
                cache, batch_size, device, augment=False, resolution_scale=config.min_size / cache["min_size"]
            ).batches()
        )
    if config.val_data:
        dataset = CardDataset(LabelledFolder(config.val_data, names), config.min_size, config.max_size)
        info.update(val=f"labelled {config.val_data}", val_cards=len(dataset))
        return _batches_of(dataset, batch_size, device)
    if config.val_synthetic > 0:
        if config.val_seed == config.seed:
            raise SystemExit("--val-seed must differ from --seed (held-out cards)")
        cards = SyntheticCards(config.val_synthetic, config.val_seed, names=names)
        info.update(val="synthetic", val_cards=config.val_synthetic, val_seed=config.val_seed)
        return _batches_of(CardDataset(cards, config.min_size, config.max_size), batch_size, device)
    return []
