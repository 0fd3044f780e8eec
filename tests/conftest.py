"""Shared fixtures: a small seeded DETR, its exported artefact, deterministic test images, the C++ module and program.

The small model has random weights; ``score_threshold=0`` keeps every query so that
comparisons see full outputs rather than empty ones.
"""

from __future__ import annotations

import subprocess
import threading
from typing import Callable, List

import numpy as np
import pytest
import torch

from detr_deploy.export.torchscript import export_model
from detr_deploy.model.detr import detr_small
from detr_deploy.native import cpp_build
from detr_deploy.paths import REPO_ROOT

SMALL_PIPELINE = dict(min_size=224, max_size=384, score_threshold=0.0)
SMALL_CLASSES = ["textbox", "radiobutton", "checkbox", "actionset", "image", "rating"]


def run_in_threads(work: Callable[[int], None], workers: int) -> List[BaseException]:
    """Run ``work(worker)`` for worker 0 .. workers-1 in that many threads at once; returns
    the exceptions they raised (the caller asserts there are none)."""
    errors: List[BaseException] = []

    def guarded(worker):
        try:
            work(worker)
        except Exception as error:  # pragma: no cover - reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(worker,)) for worker in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def make_test_image(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 RGB image with smooth gradients and a few flat rectangles (not just noise)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [
            128 + 100 * np.sin(xs / max(width, 1) * 6.0 + rng.uniform(0, 6)),
            128 + 100 * np.cos(ys / max(height, 1) * 4.0 + rng.uniform(0, 6)),
            rng.uniform(0, 255) * np.ones_like(xs),
        ],
        axis=2,
    )
    for _ in range(4):
        y0, x0 = rng.integers(0, max(height - 1, 1)), rng.integers(0, max(width - 1, 1))
        y1, x1 = y0 + rng.integers(1, height // 2 + 2), x0 + rng.integers(1, width // 2 + 2)
        image[y0:y1, x0:x1] = rng.uniform(0, 255, size=3)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def detr_cpp():
    """The compiled C++ module: built once per session if a source changed, else just imported."""
    return cpp_build.build_module()


@pytest.fixture(scope="session")
def detr_cli():
    """The CMake program ``detr_cli``, built once per session (skips where its system packages are missing)."""
    check = subprocess.run([str(REPO_ROOT / "scripts" / "install_system_deps.sh"), "--check"], capture_output=True)
    if check.returncode != 0:
        pytest.skip("system packages for the CMake program are missing: run scripts/install_system_deps.sh")
    return cpp_build.build_cli()


@pytest.fixture(scope="session")
def small_model():
    torch.manual_seed(0)
    return detr_small(seed=0, num_classes=6, class_names=SMALL_CLASSES).eval()


@pytest.fixture(scope="session")
def small_artefact(small_model, tmp_path_factory):
    """Path of the scripted small model's artefact (.pt; sidecar .json beside it)."""
    path = tmp_path_factory.mktemp("artefact") / "detr_small.pt"
    export_model(small_model, path, method="script", **SMALL_PIPELINE)
    return path


@pytest.fixture(scope="session")
def test_images():
    """Deterministic images: landscape, portrait, square, small and very thin."""
    sizes = [(240, 320), (333, 250), (200, 200), (37, 53), (30, 300)]
    return [make_test_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
