"""What a benchmark run measures: the quick and full settings, and the models it times."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Tuple

from detr_deploy.demo_model import demo_settings
from detr_deploy.paths import BUILD_DIR, MODELS_DIR

__all__ = ["ALL_CORES", "CACHE_DIR", "Settings", "QUICK", "FULL", "ModelSpec", "MODELS", "demo_model"]

ALL_CORES = os.cpu_count() or 1
CACHE_DIR = BUILD_DIR / "benchmark"  # exported artefacts and images, keyed by a hash (gitignored)


@dataclass(frozen=True)
class Settings:
    """What one run measures. ``sweep_size`` is the size (an entry of ``sizes``) at which
    threads, batch, cold start and tuning are swept; the other sizes run all cores, batch 1."""

    mode: str
    models: Tuple[str, ...]
    sizes: Tuple[Tuple[int, int], ...]  # model input (height, width); images are made at that size
    sweep_size: Tuple[int, int]
    threads: Tuple[int, ...]
    batches: Tuple[int, ...]
    repeats: int
    warmup: int
    cold_runs: int
    tuning: bool = True
    interop: bool = True  # tuning includes two processes with 1 and all inter-op threads
    aoti: str = "sweep"  # "sweep": AOTInductor compiled at sweep_size only; "cached": only if already compiled
    seed: int = 0


QUICK = Settings(
    mode="quick",
    models=("demo",),
    sizes=((384, 512),),
    sweep_size=(384, 512),
    threads=(ALL_CORES,),
    batches=(1,),
    repeats=3,
    warmup=2,
    cold_runs=1,
    aoti="cached",
    interop=False,
)
# Sized for ~20 min on 2 cores (DETR-R50 at 640x853 is ~2 s a call there); the first run
# also exports/compiles every artefact (AOTInductor: minutes), later runs reuse the cache.
FULL = Settings(
    mode="full",
    models=("demo", "detr_resnet50"),
    sizes=((384, 512), (512, 683), (640, 853)),
    sweep_size=(512, 683),
    threads=tuple(sorted({1, ALL_CORES})),
    batches=(1, 4),
    repeats=9,
    warmup=2,
    cold_runs=2,
    aoti="sweep",
)


@dataclass(frozen=True)
class ModelSpec:
    """A model to time: how to build it, its score threshold, what its weights are."""

    name: str
    build: Callable[[], object]
    score_threshold: float
    weights: str


def demo_model():
    """The trained demo model of ``data/models/demo_weights.pth``."""
    from detr_deploy.model.checkpoint import load_model

    return load_model(MODELS_DIR / "demo_weights.pth")


def _r50_model():
    from detr_deploy.model.detr import detr_resnet50

    return detr_resnet50(seed=0)


MODELS: Dict[str, ModelSpec] = {
    "demo": ModelSpec(
        "demo",
        demo_model,
        demo_settings()["score_threshold"],
        "trained: data/models/demo_weights.pth (ResNet-18 to layer3)",
    ),
    "detr_resnet50": ModelSpec(
        "detr_resnet50", _r50_model, 0.5, "random (seed 0): timing does not depend on the weights' values"
    ),
}
