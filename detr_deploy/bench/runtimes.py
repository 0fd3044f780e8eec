"""What the benchmark can time, and how each runtime loads.

Each :class:`Runtime` of :data:`RUNTIMES` is one row family of the latency table. The
functions that turn a model or an artefact into a :class:`Loaded` detector
(:func:`eager_detector`, :func:`torchscript_detector`, :func:`cpp_detector`,
:func:`runner_detector`) are the only loaders: the in-process run calls them through
``Runtime.load`` and the cold-start children (:mod:`detr_deploy.bench.coldstart`) call them
directly. This module imports torch only inside the torch runtimes' functions, so a child
that runs the C++ module, ONNX Runtime or OpenVINO never imports it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from detr_deploy.bench.settings import ModelSpec, Settings

if TYPE_CHECKING:
    from detr_deploy.bench.artefacts import Artefacts

__all__ = [
    "Loaded",
    "Skip",
    "Context",
    "Runtime",
    "RUNTIMES",
    "CLI_RUNTIME",
    "CLI_LABEL",
    "executor",
    "eager_detector",
    "torchscript_detector",
    "cpp_detector",
    "runner_detector",
    "cpp_module",
]


@dataclass
class Loaded:
    """A runtime ready to run: ``detect(image)`` on a uint8 RGB [H, W, 3] array, and
    ``detect_batch(images)`` when the runtime takes several images in one call."""

    detect: Callable[[np.ndarray], object]
    detect_batch: Optional[Callable[[List[np.ndarray]], object]] = None
    note: str = ""


class Skip(Exception):
    """This runtime cannot run here; the message says why (recorded in benchmark.json)."""


@dataclass
class Context:
    """What a runtime's loader gets: the model, its artefacts (made on demand), the settings."""

    spec: ModelSpec
    model: object
    size: Tuple[int, int]
    threads: int
    settings: Settings
    artefacts: "Artefacts"


@dataclass(frozen=True)
class Runtime:
    """One row family of the latency table.

    ``load(context) -> Loaded`` (raise :class:`Skip` with a reason when it cannot run);
    ``threads_per_instance``: the thread count is fixed when loading (ONNX Runtime,
    OpenVINO), so a new instance is loaded per thread setting; otherwise torch's
    process-wide setting is changed between groups. ``child``: which program of
    :data:`detr_deploy.bench.coldstart.CHILDREN` a fresh process runs for the cold start.
    """

    name: str
    label: str
    load: Callable[[Context], Loaded]
    artefact: Optional[str]  # which exported artefact it runs ("torchscript", "aoti", ...)
    child: Optional[str]
    torch_in_python: bool  # the Python process imports torch
    cpp_api: bool  # usable from a C++ application
    ships: Tuple[str, ...]  # what a service installs: distributions or "runtime_folder"
    threads_per_instance: bool = False


# ---------------------------------------------------------------------------- the loaders


def executor(frozen_graph: bool):
    """A frozen + optimised TorchScript graph runs without the profiling executor, as the C++
    module runs it (``profiling_executor=False``): on the CPU it only adds slow first calls
    and re-specialisation per input shape. Anything else: torch's default."""
    import torch

    return torch.jit.optimized_execution(False) if frozen_graph else contextlib.nullcontext()


def _torch_loaded(single, batch, frozen_graph: bool = False) -> Loaded:
    """``single(tensor)`` and ``batch([tensors])`` as a :class:`Loaded` on numpy images."""
    import torch

    def detect(image):
        with torch.inference_mode(), executor(frozen_graph):
            return single(torch.from_numpy(image))

    def detect_batch(images):
        with torch.inference_mode(), executor(frozen_graph):
            return batch([torch.from_numpy(image) for image in images])

    return Loaded(detect, detect_batch)


def eager_detector(model, size: Tuple[int, int], score_threshold: float) -> Loaded:
    """The eager Python pipeline around ``model`` for inputs resized to ``size``."""
    from detr_deploy.export.torchscript import make_pipeline

    height, width = size
    pipeline = make_pipeline(model, min_size=height, max_size=width, score_threshold=score_threshold)
    return _torch_loaded(pipeline, pipeline.forward_batch)


def torchscript_detector(path: Union[str, Path]) -> Loaded:
    """A TorchScript artefact, frozen and optimised, run from Python."""
    from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact

    module = freeze_and_optimize(load_artefact(path)[0])
    return _torch_loaded(module, module.forward_batch, frozen_graph=True)


def cpp_detector(detr_cpp, path: Union[str, Path], threads: int):
    """A ``detr_cpp.Detector`` on the artefact at ``path`` (TorchScript or AOTInductor)."""
    return detr_cpp.Detector(str(path), num_threads=threads)


def runner_detector(class_name: str, path: Union[str, Path], threads: int):
    """A torch-free runner of :mod:`detr_deploy.native.runners` (``class_name``) on ``path``."""
    from detr_deploy.native import runners

    return getattr(runners, class_name)(str(path), num_threads=threads)


def cpp_module():
    """The ``detr_cpp`` module, built if it is not current (:class:`Skip` when it does not build)."""
    from detr_deploy.native import cpp_build

    try:
        return cpp_build.build_module()
    except cpp_build.BuildError as error:
        raise Skip(f"the detr_cpp module does not build: {str(error).splitlines()[0]}") from None


# ---------------------------------------------------------------------------- in-process loading


def _load_eager(context: Context) -> Loaded:
    return eager_detector(context.model, context.size, context.spec.score_threshold)


def _load_torchscript(context: Context) -> Loaded:
    return torchscript_detector(context.artefacts.get("torchscript", context))


def _load_cpp(context: Context, kind: str, backend: str) -> Loaded:
    detr_cpp = cpp_module()
    path = context.artefacts.get(kind, context)
    try:
        detector = cpp_detector(detr_cpp, path, context.threads)
    except Exception as error:  # an old module without this backend raises on load
        raise Skip(f"detr_cpp.Detector cannot load {path.suffix}: {str(error).splitlines()[0]}") from None
    if detector.backend != backend:
        raise Skip(f"detr_cpp.Detector ran backend {detector.backend!r}, expected {backend!r}")
    probe = np.zeros((context.size[0], context.size[1], 3), np.uint8)
    try:
        detector.detect_batch([probe, probe])
        batch = detector.detect_batch
    except Exception:  # e.g. an AOTInductor artefact compiled for batch 1
        batch = None
    return Loaded(detector.detect, batch)


def _load_runner(context: Context, class_name: str, artefact: str, package: str) -> Loaded:
    """A torch-free runner (``class_name``) on the ``artefact`` export."""
    path = context.artefacts.get(artefact, context)
    try:
        detector = runner_detector(class_name, path, context.threads)
    except ImportError as error:
        raise Skip(f"{package} is not installed ({error}); pip install -r requirements-runtimes.txt") from None
    return Loaded(detector.detect, detector.detect_batch)


def _load_onnxruntime(context: Context) -> Loaded:
    return _load_runner(context, "OnnxRuntimeDetector", "onnx", "onnxruntime")


def _load_openvino(context: Context) -> Loaded:
    return _load_runner(context, "OpenVinoDetector", "openvino", "openvino")


RUNTIMES: Dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in [
        Runtime(
            "eager",
            "eager PyTorch (Python pipeline)",
            _load_eager,
            None,
            "eager",
            True,
            False,
            ("torch", "torchvision"),
        ),
        # cpp_api False: a C++ application runs the same artefact as the cpp_torchscript row
        Runtime(
            "torchscript",
            "TorchScript from Python (frozen + optimized)",
            _load_torchscript,
            "torchscript",
            "torchscript",
            True,
            False,
            ("torch",),
        ),
        Runtime(
            "cpp_torchscript",
            "C++ module, TorchScript backend",
            lambda context: _load_cpp(context, "torchscript", "torchscript"),
            "torchscript",
            "cpp",
            False,
            True,
            ("runtime_folder",),
        ),
        Runtime(
            "cpp_aotinductor",
            "C++ module, AOTInductor backend",
            lambda context: _load_cpp(context, "aoti", "aotinductor"),
            "aoti",
            "cpp",
            False,
            True,
            ("runtime_folder",),
        ),
        Runtime(
            "onnxruntime",
            "ONNX Runtime",
            _load_onnxruntime,
            "onnx",
            "onnxruntime",
            False,
            True,
            ("onnxruntime",),
            threads_per_instance=True,
        ),
        Runtime(
            "openvino",
            "OpenVINO",
            _load_openvino,
            "openvino",
            "openvino",
            False,
            True,
            ("openvino",),
            threads_per_instance=True,
        ),
    ]
}
CLI_RUNTIME = "cli"  # the CMake program: timed by its own --repeat, outside the interleaving
CLI_LABEL = "CMake program detr_cli (in-process timer, no decode)"
