"""Chapter 04's measurements in one command: latency, cold start, memory, sizes, FLOPs.

    python -m detr_deploy.bench --out data/benchmarks            # full run (~20 min, 2 cores)
    python -m detr_deploy.bench --out build/benchmark_quick --quick   # CI / notebook (1-2 min)

Writes into ``--out``:

* ``latency.csv``  one row per (model, runtime, input size, threads, batch): median and p90
  of interleaved timed runs, ratio to the eager Python pipeline timed in the same group,
  FLOPs per image, achieved GFLOP/s and that as a fraction of this machine's GEMM rate;
* ``coldstart.csv`` per runtime: seconds from process start to the first detection, the
  phases (imports, loading, first call) and the child's peak resident memory;
* ``tuning.csv``   the libtorch path's options (optimize on/off, threads, channels-last,
  batching, copies at the boundary), interleaved, against its default;
* ``sizes.csv``    installed packages, torch/lib by library, the slim runtime folder,
  what stripping saves, artefacts, and what each runtime ships;
* ``models.csv``   #params and fp16/fp32/fp64 bytes of DETR variants and other detectors;
* ``benchmark.json`` the machine (CPU, cores, threads, library versions), the settings,
  GEMM peak rates, FLOPs per size, runtimes skipped and why, and the wall time.

Timing follows the repository's rule: same images, thresholds and thread count for every
runtime, warm-up calls, then runs interleaved across runtimes (``timing.time_interleaved``)
and ratios taken within one group. Every in-process row is end to end from JPEG bytes:
Pillow decode -> runtime -> detections. The CMake program's row is its own steady-state
timer (``detr_cli --repeat``), which excludes decoding (``includes_decode`` = False).
Runtimes are entries of :data:`RUNTIMES`; a missing optional package or exporter skips
its row with the reason recorded, never the run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from detr_deploy.bench import sizes as size_tools
from detr_deploy.paths import BUILD_DIR, MODELS_DIR, REPO_ROOT, SAMPLES_DIR, relative

__all__ = [
    "Settings",
    "QUICK",
    "FULL",
    "ModelSpec",
    "MODELS",
    "Runtime",
    "RUNTIMES",
    "Loaded",
    "machine_info",
    "summarise",
    "run_benchmark",
    "load_results",
    "headline",
    "decision_table",
    "goals",
    "main",
]

ALL_CORES = os.cpu_count() or 1
CACHE_DIR = BUILD_DIR / "benchmark"  # exported artefacts and images, keyed by a hash (gitignored)


# ---------------------------------------------------------------------------- settings


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
    mode="quick", models=("demo",), sizes=((384, 512),), sweep_size=(384, 512), threads=(ALL_CORES,),
    batches=(1,), repeats=3, warmup=2, cold_runs=1, aoti="cached", interop=False,
)
# Sized for ~20 min on 2 cores (DETR-R50 at 640x853 is ~2 s a call there); the first run
# also exports/compiles every artefact (AOTInductor: minutes), later runs reuse the cache.
FULL = Settings(
    mode="full", models=("demo", "detr_resnet50"), sizes=((384, 512), (512, 683), (640, 853)),
    sweep_size=(512, 683), threads=tuple(sorted({1, ALL_CORES})), batches=(1, 4), repeats=9, warmup=2,
    cold_runs=2, aoti="sweep",
)


# ---------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """A model to time: how to build it, its score threshold, what its weights are."""

    name: str
    build: Callable[[], object]
    score_threshold: float
    weights: str


def _demo_model():
    from detr_deploy.model.checkpoint import load_model

    return load_model(MODELS_DIR / "demo_weights.pth")


def _r50_model():
    from detr_deploy.model.detr import detr_resnet50

    return detr_resnet50(seed=0)


MODELS: Dict[str, ModelSpec] = {
    "demo": ModelSpec("demo", _demo_model, 0.85, "trained: data/models/demo_weights.pth (ResNet-18 to layer3)"),
    "detr_resnet50": ModelSpec("detr_resnet50", _r50_model, 0.5,
                               "random (seed 0): timing does not depend on the weights' values"),
}


# ---------------------------------------------------------------------------- runtimes


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
    process-wide setting is changed between groups. ``child``: the code a fresh process
    runs for the cold-start measurement (see :data:`_CHILD_TEMPLATE`).
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


def _executor(frozen_graph: bool):
    """A frozen + optimised TorchScript graph runs without the profiling executor, as the C++
    module runs it (``profiling_executor=False``): on the CPU it only adds slow first calls
    and re-specialisation per input shape. Anything else: torch's default."""
    import torch

    return torch.jit.optimized_execution(False) if frozen_graph else contextlib.nullcontext()


def _torch_detect(function, frozen_graph: bool = False):
    import torch

    def detect(image):
        with torch.inference_mode(), _executor(frozen_graph):
            return function(torch.from_numpy(image))

    return detect


def _torch_detect_batch(function, frozen_graph: bool = False):
    import torch

    def detect_batch(images):
        with torch.inference_mode(), _executor(frozen_graph):
            return function([torch.from_numpy(image) for image in images])

    return detect_batch


def _load_eager(context: Context) -> Loaded:
    from detr_deploy.export.torchscript import make_pipeline

    height, width = context.size
    pipeline = make_pipeline(context.model, min_size=height, max_size=width,
                             score_threshold=context.spec.score_threshold)
    return Loaded(_torch_detect(pipeline), _torch_detect_batch(pipeline.forward_batch))


def _load_torchscript(context: Context) -> Loaded:
    from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact

    module, _ = load_artefact(context.artefacts.get("torchscript", context))
    module = freeze_and_optimize(module)
    return Loaded(_torch_detect(module, frozen_graph=True), _torch_detect_batch(module.forward_batch, frozen_graph=True))


def _cpp_module():
    from detr_deploy.native import cpp_build

    try:
        return cpp_build.build_module()
    except cpp_build.BuildError as error:
        raise Skip(f"the detr_cpp module does not build: {str(error).splitlines()[0]}") from None


def _load_cpp(context: Context, kind: str, backend: str) -> Loaded:
    detr_cpp = _cpp_module()
    path = context.artefacts.get(kind, context)
    try:
        detector = detr_cpp.Detector(str(path), num_threads=context.threads)
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


def _alternatives():
    try:
        from detr_deploy.export import alternatives
    except ImportError as error:
        raise Skip(f"detr_deploy.export.alternatives is not importable: {error}") from None
    return alternatives


def _load_runner(context: Context, class_name: str, artefact: str, package: str) -> Loaded:
    """A torch-free runner of detr_deploy.native.runners (``class_name``) on the ``artefact`` export."""
    alternatives = _alternatives()
    if not hasattr(alternatives, class_name):
        raise Skip(f"detr_deploy.export.alternatives has no {class_name}")
    try:
        detector = getattr(alternatives, class_name)(str(context.artefacts.get(artefact, context)),
                                                     num_threads=context.threads)
    except ImportError as error:
        raise Skip(f"{package} is not installed ({error}); pip install -r requirements-runtimes.txt") from None
    return Loaded(detector.detect, getattr(detector, "detect_batch", None))


def _load_onnxruntime(context: Context) -> Loaded:
    return _load_runner(context, "OnnxRuntimeDetector", "onnx", "onnxruntime")


def _load_openvino(context: Context) -> Loaded:
    return _load_runner(context, "OpenVinoDetector", "openvino", "openvino")


# Cold start: the code a fresh interpreter runs. It prints one JSON line with wall-clock
# timestamps (time.time(), comparable with the parent's) after its imports, after loading,
# and after the first detection; the parent reads peak memory from os.wait4.
_CHILD_TEMPLATE = """
import time, json, sys, io
started = time.time()
sys.path.insert(0, {repo!r})
{imports}
imported = time.time()
{load}
loaded = time.time()
from PIL import Image
import numpy as np
image = np.asarray(Image.open({image!r}).convert("RGB"))
result = detect(image)
first = time.time()
print(json.dumps({{"started": started, "imported": imported, "loaded": loaded, "first": first,
                  "torch_imported": "torch" in sys.modules}}))
"""

_CHILDREN = {
    "eager": (
        "import torch\nfrom detr_deploy.model.checkpoint import load_model\nfrom detr_deploy.export.torchscript import make_pipeline",
        "torch.set_num_threads({threads})\n"
        "pipeline = make_pipeline(load_model({weights!r}), min_size={height}, max_size={width}, "
        "score_threshold={threshold})\n"
        "def detect(image):\n    with torch.inference_mode():\n        return pipeline(torch.from_numpy(image))",
    ),
    "torchscript": (
        "import torch\nfrom detr_deploy.export.torchscript import load_artefact, freeze_and_optimize",
        "torch.set_num_threads({threads})\nmodule = freeze_and_optimize(load_artefact({artefact!r})[0])\n"
        "def detect(image):\n    with torch.inference_mode(), torch.jit.optimized_execution(False):\n"
        "        return module(torch.from_numpy(image))",
    ),
    "cpp": (
        "import importlib.util\nspec = importlib.util.spec_from_file_location('detr_cpp', {module!r})\n"
        "detr_cpp = importlib.util.module_from_spec(spec); spec.loader.exec_module(detr_cpp)",
        "detector = detr_cpp.Detector({artefact!r}, num_threads={threads})\ndetect = detector.detect",
    ),
    "onnxruntime": (
        "from detr_deploy.native.runners import OnnxRuntimeDetector",
        "detect = OnnxRuntimeDetector({artefact!r}, num_threads={threads}).detect",
    ),
    "openvino": (
        "from detr_deploy.native.runners import OpenVinoDetector",
        "detect = OpenVinoDetector({artefact!r}, num_threads={threads}).detect",
    ),
}

RUNTIMES: Dict[str, Runtime] = {
    runtime.name: runtime
    for runtime in [
        Runtime("eager", "eager PyTorch (Python pipeline)", _load_eager, None, "eager", True, False,
                ("torch", "torchvision")),
        # cpp_api False: a C++ application runs the same artefact as the cpp_torchscript row
        Runtime("torchscript", "TorchScript from Python (frozen + optimized)", _load_torchscript, "torchscript",
                "torchscript", True, False, ("torch",)),
        Runtime("cpp_torchscript", "C++ module, TorchScript backend", lambda c: _load_cpp(c, "torchscript", "torchscript"),
                "torchscript", "cpp", False, True, ("runtime_folder",)),
        Runtime("cpp_aotinductor", "C++ module, AOTInductor backend", lambda c: _load_cpp(c, "aoti", "aotinductor"),
                "aoti", "cpp", False, True, ("runtime_folder",)),
        Runtime("onnxruntime", "ONNX Runtime", _load_onnxruntime, "onnx", "onnxruntime", False, True,
                ("onnxruntime",), threads_per_instance=True),
        Runtime("openvino", "OpenVINO", _load_openvino, "openvino", "openvino", False, True,
                ("openvino",), threads_per_instance=True),
    ]
}
CLI_RUNTIME = "cli"  # the CMake program: timed by its own --repeat, outside the interleaving
CLI_LABEL = "CMake program detr_cli (in-process timer, no decode)"


# ---------------------------------------------------------------------------- artefacts


def _digest(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else json.dumps(part, sort_keys=True).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _quiet():
    """Silence stdout, stderr and logging below ERROR for the duration."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


class Artefacts:
    """Exported artefacts, made on first use and cached under ``build/benchmark/artefacts``.

    The key hashes the model's weights, the pipeline settings, the torch version and the
    source of the code that exports (model, pipeline, exporters), so a change to any of
    them re-exports; otherwise an AOTInductor compile (minutes) is paid once.
    """

    EXPORTERS = {"torchscript": "export.py", "aoti": "alternatives.py", "onnx": "alternatives.py",
                 "openvino": "alternatives.py"}
    SUFFIX = {"torchscript": ".pt", "aoti": ".pt2", "onnx": ".onnx", "openvino": ".xml"}

    def __init__(self, cache_dir: Path = CACHE_DIR / "artefacts", cached_only: Sequence[str] = ()):
        self.cache_dir = Path(cache_dir)
        self.cached_only = set(cached_only)
        self.made: Dict[Tuple[str, str, Tuple[int, int]], Path] = {}
        self.export_seconds: Dict[str, float] = {}
        self._weights: Dict[str, str] = {}

    def _weights_digest(self, spec: ModelSpec, model) -> str:
        if spec.name not in self._weights:
            state = model.state_dict()
            self._weights[spec.name] = _digest(*[key.encode() + state[key].numpy().tobytes() for key in sorted(state)])
        return self._weights[spec.name]

    def key(self, kind: str, spec: ModelSpec, model, size: Tuple[int, int]) -> str:
        import torch

        sources = [(Path(__file__).parent / name) for name in ("model.py", "deploy.py", self.EXPORTERS[kind])]
        source_bytes = [path.read_bytes() for path in sources if path.is_file()]
        return _digest(kind, list(size), spec.score_threshold, torch.__version__,
                       self._weights_digest(spec, model), *source_bytes)[:16]

    def path(self, kind: str, spec: ModelSpec, model, size: Tuple[int, int]) -> Path:
        folder = self.cache_dir / f"{spec.name}_{size[0]}x{size[1]}_{kind}_{self.key(kind, spec, model, size)}"
        return folder / ("model" + self.SUFFIX[kind])

    def get(self, kind: str, context: Context) -> Path:
        """The artefact of ``kind`` for the context's model and size: cached, or exported now."""
        spec, model, size = context.spec, context.model, context.size
        memo = (kind, spec.name, size)
        if memo in self.made:
            return self.made[memo]
        target = self.path(kind, spec, model, size)
        done = target.parent / "done.json"
        if done.is_file():
            path = target.parent / json.loads(done.read_text())["file"]
            self.made[memo] = path
            return path
        if kind in self.cached_only:
            raise Skip(f"{kind} export not cached and skipped in this mode (it takes minutes): run the full "
                       "benchmark once to compile it")
        target.parent.mkdir(parents=True, exist_ok=True)
        settings = dict(min_size=size[0], max_size=size[1], score_threshold=spec.score_threshold)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporters' deprecation chatter; chapters 01-02 show it
            if kind == "torchscript":
                from detr_deploy.export.torchscript import export_model

                export_model(model, target, method="script", **settings)
                path = target
            else:
                alternatives = _alternatives()
                function = {"aoti": "export_aoti", "onnx": "export_onnx", "openvino": "export_openvino"}[kind]
                if not hasattr(alternatives, function):
                    raise Skip(f"detr_deploy.export.alternatives has no {function}")
                source, kwargs = model, settings
                if kind == "openvino":  # converting the ONNX file takes seconds; from the model, a new export
                    try:
                        source, kwargs = self.get("onnx", context), {}
                        start = time.perf_counter()  # the ONNX export has its own entry
                    except Skip:
                        pass
                try:
                    with _quiet():  # converters print a note per op
                        path = Path(getattr(alternatives, function)(source, target, **kwargs))
                except ImportError as error:
                    raise Skip(f"{function} needs a package that is not installed: {error}") from None
        self.export_seconds[f"{spec.name} {size[0]}x{size[1]} {kind}"] = round(time.perf_counter() - start, 1)
        done.write_text(json.dumps({"file": str(path.relative_to(target.parent))}))
        self.made[memo] = path
        return path


# ---------------------------------------------------------------------------- inputs


def make_image(height: int, width: int, seed: int = 0) -> bytes:
    """A JPEG (quality 90) of a sample card resized to ``height x width``: the same bytes
    for every runtime. ``seed`` picks the card."""
    from PIL import Image

    cards = sorted((SAMPLES_DIR / "images").glob("card_*.jpg"))
    if not cards:
        raise FileNotFoundError(f"no sample images in {relative(SAMPLES_DIR / 'images')}")
    with Image.open(cards[seed % len(cards)]) as card:
        image = card.convert("RGB").resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decode(jpeg: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 RGB [H, W, 3] with Pillow, as a Python service would."""
    from PIL import Image

    from detr_deploy.images import to_rgb_array

    with Image.open(io.BytesIO(jpeg)) as image:
        return to_rgb_array(image)


# ---------------------------------------------------------------------------- machine


def machine_info(threads: Sequence[int]) -> dict:
    """CPU model, core counts, threads used, OS and library versions (for benchmark.json)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "pillow", "onnxruntime", "openvino", "opencv-python-headless"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "usable_cores": affinity, "threads_used": list(threads),
            "system": f"{platform.system()} {platform.release()}", "machine": platform.machine(),
            "versions": versions}


# ---------------------------------------------------------------------------- statistics


def summarise(seconds: Sequence[float]) -> Dict[str, float]:
    """Median and 90th percentile of call times, in milliseconds."""
    values = np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    return {"median_ms": float(np.median(values) * 1e3), "p90_ms": float(np.percentile(values, 90) * 1e3)}


# ---------------------------------------------------------------------------- the run


@dataclass
class _Run:
    settings: Settings
    out: Path
    progress: object
    skipped: List[dict] = field(default_factory=list)
    latency: List[dict] = field(default_factory=list)
    tuning: List[dict] = field(default_factory=list)
    cold: List[dict] = field(default_factory=list)
    flops: Dict[str, Dict[str, int]] = field(default_factory=dict)
    peak: Dict[int, float] = field(default_factory=dict)

    def skip(self, runtime: str, model: str, reason: str) -> None:
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # colour codes some exporters print
        if not any(s["runtime"] == runtime and s["model"] == model and s["reason"] == reason for s in self.skipped):
            self.skipped.append({"runtime": runtime, "model": model, "reason": reason})
            self.progress.write(f"  skipped {runtime} ({model}): {reason}")

    def step(self, text: str) -> None:
        self.progress.set_description(text[:60])


def _load_all(run: _Run, context: Context, names: Sequence[str]) -> Dict[str, Loaded]:
    loaded = {}
    for name in names:
        runtime = RUNTIMES[name]
        run.step(f"{context.spec.name} {context.size[0]}x{context.size[1]}: load {name}")
        try:
            loaded[name] = runtime.load(context)
        except Skip as error:
            run.skip(name, context.spec.name, str(error))
        except Exception as error:  # a runtime that fails must not end the run: record why
            run.skip(name, context.spec.name, f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")
    return loaded


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _time_group(run: _Run, context: Context, loaded: Dict[str, Loaded], jpeg: bytes, batch: int) -> None:
    """Interleave every loaded runtime on the same image(s); append rows with ratios to eager."""
    from detr_deploy.bench.timing import time_interleaved

    settings = context.settings
    if batch == 1:
        candidates = {name: (lambda item=item: item.detect(decode(jpeg))) for name, item in loaded.items()}
    else:
        candidates = {
            name: (lambda item=item: item.detect_batch([decode(jpeg) for _ in range(batch)]))
            for name, item in loaded.items() if item.detect_batch is not None
        }
    if not candidates:
        return
    _set_threads(context.threads)
    height, width = context.size
    run.step(f"{context.spec.name} {height}x{width} t{context.threads} b{batch}: time {len(candidates)} runtimes")
    times = time_interleaved(candidates, repeats=settings.repeats, warmup=settings.warmup)
    rows = [_latency_row(run, context, name, RUNTIMES[name].label, batch, summarise(seconds), len(seconds), True)
            for name, seconds in times.items()]
    _add_ratios(rows)
    run.latency.extend(rows)
    run.progress.update(1)


def _latency_row(run: _Run, context: Context, name: str, label: str, batch: int, stats: dict, runs: int,
                 includes_decode: bool) -> dict:
    height, width = context.size
    flops = run.flops[context.spec.name][f"{height}x{width}"]
    achieved = flops * batch / (stats["median_ms"] / 1e3) / 1e9
    return {
        "model": context.spec.name, "runtime": name, "label": label, "height": height, "width": width,
        "threads": context.threads, "batch": batch, "median_ms": round(stats["median_ms"], 2),
        "p90_ms": round(stats["p90_ms"], 2) if stats.get("p90_ms") is not None else None,
        "ms_per_image": round(stats["median_ms"] / batch, 2), "runs": runs,
        "gflop_per_image": round(flops / 1e9, 3), "achieved_gflops": round(achieved, 2),
        "fraction_of_peak": round(achieved / run.peak[context.threads], 4), "includes_decode": includes_decode,
    }


def _add_ratios(rows: List[dict], eager: Optional[float] = None) -> None:
    if eager is None:
        eager = next((row["median_ms"] for row in rows if row["runtime"] == "eager"), None)
    for row in rows:
        row["ratio_to_eager"] = round(eager / row["median_ms"], 3) if eager else None


def _time_cli(run: _Run, context: Context, image_path: Path) -> None:
    """The CMake program's own steady-state median (``--repeat``): no decode, no Python."""
    from detr_deploy.native import cpp_build

    try:
        program = cpp_build.build_cli()
    except cpp_build.BuildError as error:
        run.skip(CLI_RUNTIME, context.spec.name, f"detr_cli does not build: {str(error).splitlines()[0]}")
        return
    model = context.artefacts.get("torchscript", context)
    run.step(f"{context.spec.name} {context.size[0]}x{context.size[1]}: detr_cli")
    command = [str(program), str(model), str(image_path), "--threads", str(context.threads),
               "--warmup", str(context.settings.warmup), "--repeat", str(context.settings.repeats)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        run.skip(CLI_RUNTIME, context.spec.name, f"detr_cli failed: {result.stderr.strip()[:200]}")
        return
    # detr_cli times each run after its untimed warm-up runs; same statistics as the other rows
    run_seconds = [milliseconds / 1e3 for milliseconds in json.loads(result.stdout)["run_ms"]]
    row = _latency_row(run, context, CLI_RUNTIME, CLI_LABEL, 1, summarise(run_seconds), len(run_seconds), False)
    eager = next((r["median_ms"] for r in run.latency if r["model"] == context.spec.name
                  and r["runtime"] == "eager" and (r["height"], r["width"]) == context.size
                  and r["threads"] == context.threads and r["batch"] == 1), None)
    _add_ratios([row], eager)
    run.latency.append(row)


def _cold_start(run: _Run, context: Context, name: str, image_path: Path, weights: Path) -> None:
    """Fresh processes: seconds from spawn to first detection, and peak RSS (median of runs)."""
    from detr_deploy.native import cpp_build

    height, width = context.size
    if name == CLI_RUNTIME:
        try:
            program = cpp_build.build_cli()
        except cpp_build.BuildError:
            return
        command = [str(program), str(context.artefacts.get("torchscript", context)), str(image_path),
                   "--threads", str(context.threads)]
    else:
        runtime = RUNTIMES[name]
        try:
            artefact = str(context.artefacts.get(runtime.artefact, context)) if runtime.artefact else ""
        except Skip as error:
            run.skip(name, context.spec.name, str(error))
            return
        imports, load = _CHILDREN[runtime.child]
        values = dict(threads=context.threads, weights=str(weights), height=height, width=width,
                      threshold=context.spec.score_threshold, artefact=artefact,
                      module=str(cpp_build.module_path()) if runtime.child == "cpp" else "")
        code = _CHILD_TEMPLATE.format(repo=str(REPO_ROOT), image=str(image_path),
                                      imports=imports.format(**values), load=load.format(**values))
        command = [sys.executable, "-c", code]
    samples = []
    for _ in range(context.settings.cold_runs):
        run.step(f"{context.spec.name}: cold start {name}")
        sample = _spawn(command)
        if sample is None or "error" in sample:
            run.skip(name, context.spec.name, "cold start failed: " + (sample or {}).get("error", "no output")[:200])
            return
        samples.append(sample)
    keys = [key for key in samples[0] if isinstance(samples[0][key], (int, float)) and not isinstance(samples[0][key], bool)]
    row = {"model": context.spec.name, "runtime": name, "threads": context.threads, "runs": len(samples)}
    row.update({key: round(float(np.median([s[key] for s in samples])), 3) for key in keys})
    row["torch_imported"] = samples[0].get("torch_imported")
    run.cold.append(row)


# Runs the measured command as its child and reports its rusage. The indirection matters:
# Linux keeps a process's peak RSS across fork + exec, so a child forked straight from this
# (large) benchmark process would report our peak, not its own; forked from this small
# launcher it reports its own (the launcher's ~10 MB floor is far below any runtime's).
_LAUNCHER = """
import json, os, subprocess, sys, time
spawned = time.time()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
out, err = process.communicate()
ended = time.time()
usage = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
print(json.dumps({"spawned": spawned, "ended": ended, "code": process.returncode, "max_rss_kib": usage.ru_maxrss,
                  "stdout": out.decode(errors="replace"), "stderr": err.decode(errors="replace")[-2000:]}))
"""


def _spawn(command: List[str]) -> Optional[dict]:
    """Run ``command`` in a fresh process: wall time from spawn to its first detection (a
    Python child prints the timestamps of its phases) or to its exit (detr_cli), and its
    peak resident memory."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True,
                            env=env, cwd=str(REPO_ROOT))
    if result.returncode != 0:
        return {"error": "launcher failed: " + result.stderr.strip()[-200:]}
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["code"] != 0:
        lines = [line for line in report["stderr"].strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit code {report['code']}"}
    spawned = report["spawned"]
    sample = {"peak_rss_mb": report["max_rss_kib"] / 1024.0}  # ru_maxrss is in KiB on Linux
    try:
        phases = json.loads(report["stdout"].strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        phases = None
    if isinstance(phases, dict) and "first" in phases:  # a Python child: timestamps of its phases
        sample["cold_start_s"] = phases["first"] - spawned
        sample["interpreter_s"] = phases["started"] - spawned
        sample["imports_s"] = phases["imported"] - phases["started"]
        sample["load_s"] = phases["loaded"] - phases["imported"]
        sample["first_detect_s"] = phases["first"] - phases["loaded"]
        sample["torch_imported"] = phases["torch_imported"]
    else:  # detr_cli: the whole process (it exits right after its one detection)
        sample["cold_start_s"] = report["ended"] - spawned
        sample["torch_imported"] = False
    return sample


def _tuning(run: _Run, context: Context, jpeg: bytes) -> None:
    """The libtorch path's options, interleaved, on the sweep size: what each one buys."""
    import torch

    from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact
    from detr_deploy.bench.timing import time_interleaved

    try:
        detr_cpp = _cpp_module()
        path = str(context.artefacts.get("torchscript", context))
    except Skip as error:
        run.skip("tuning", context.spec.name, str(error))
        return
    all_cores = context.threads
    image = decode(jpeg)
    first_calls = _first_calls(detr_cpp, path, all_cores, image)
    fortran = np.asfortranarray(image)  # same pixels, not C-contiguous: the module must copy it
    optimized = detr_cpp.Detector(path, num_threads=all_cores, optimize=True)
    profiled = detr_cpp.Detector(path, num_threads=all_cores, optimize=True, profiling_executor=True)
    plain = detr_cpp.Detector(path, num_threads=all_cores, optimize=False)

    def with_threads(threads, function):
        def call():
            torch.set_num_threads(threads)
            try:
                return function()
            finally:
                torch.set_num_threads(all_cores)
        return call

    module, _ = load_artefact(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ScriptModule.to() touches .grad of non-leaf tensors: harmless
        channels_last = freeze_and_optimize(copy.deepcopy(module).to(memory_format=torch.channels_last))
    frozen = freeze_and_optimize(module)
    frozen_only = torch.jit.freeze(load_artefact(path)[0].eval(), preserved_attrs=["forward_batch"])
    # the same weights saved channels-last into an artefact, so the C++ module loads them so
    cl_path = Path(path).with_name("model_channels_last.pt")
    if not cl_path.is_file():
        from detr_deploy.export.torchscript import save_artefact

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cl_module, cl_metadata = load_artefact(path)
            save_artefact(cl_module.to(memory_format=torch.channels_last), cl_path, cl_metadata)
    optimized_cl = detr_cpp.Detector(str(cl_path), num_threads=all_cores, optimize=True)
    eager = RUNTIMES["eager"].load(context)
    eager_cl_model = copy.deepcopy(context.model).to(memory_format=torch.channels_last)
    eager_cl = RUNTIMES["eager"].load(replace(context, model=eager_cl_model))

    def ts(function):
        def call():
            with torch.inference_mode(), _executor(frozen_graph=True):
                return function(torch.from_numpy(image))
        return call

    batch = 4
    variants = {
        "C++ module: default (freeze + optimize_for_inference, all cores)": (lambda: optimized.detect(image), 1),
        "C++ module: profiling executor (torch's default; before)": (lambda: profiled.detect(image), 1),
        "C++ module: optimize=False (graph as saved)": (lambda: plain.detect(image), 1),
        "C++ module: 1 intra-op thread": (with_threads(1, lambda: optimized.detect(image)), 1),
        "C++ module: non-contiguous input (copied at the boundary)": (lambda: optimized.detect(fortran), 1),
        "C++ module: channels-last weights in the artefact": (lambda: optimized_cl.detect(image), 1),
        f"C++ module: batch of {batch}, per image": (lambda: optimized.detect_batch([image] * batch), batch),
        "TorchScript from Python: freeze + optimize_for_inference": (ts(frozen), 1),
        "TorchScript from Python: freeze only": (ts(frozen_only), 1),
        "TorchScript from Python: channels-last weights, freeze + optimize": (ts(channels_last), 1),
        "eager: contiguous (NCHW)": (lambda: eager.detect(image), 1),
        "eager: channels-last weights": (lambda: eager_cl.detect(image), 1),
    }
    run.step(f"{context.spec.name}: tuning, {len(variants)} variants")
    _set_threads(all_cores)
    times = time_interleaved({name: function for name, (function, _) in variants.items()},
                             repeats=context.settings.repeats, warmup=context.settings.warmup)
    base = None
    for name, seconds in times.items():
        per_image = [s / variants[name][1] for s in seconds]
        stats = summarise(per_image)
        base = base or stats["median_ms"]
        run.tuning.append({"model": context.spec.name, "height": context.size[0], "width": context.size[1],
                           "threads": all_cores, "variant": name, "median_ms": round(stats["median_ms"], 2),
                           "p90_ms": round(stats["p90_ms"], 2), "runs": len(seconds),
                           "speedup_vs_default": round(base / stats["median_ms"], 3), "interleaved": True})
    for variant, milliseconds in first_calls.items():
        run.tuning.append({"model": context.spec.name, "height": context.size[0], "width": context.size[1],
                           "threads": all_cores, "variant": variant, "median_ms": round(milliseconds, 2),
                           "p90_ms": None, "runs": 1, "speedup_vs_default": round(base / milliseconds, 3),
                           "interleaved": False})
    # inter-op threads can only be set before a process's first parallel work: own processes
    # plus OpenMP's passive wait: idle workers sleep instead of spinning, which matters when
    # the cores are shared with other processes (libgomp reads it once, at start-up)
    configs = [(1, {}), (all_cores, {}), (all_cores, {"OMP_WAIT_POLICY": "PASSIVE"})]
    for interop, extra_env in configs if context.settings.interop else ():
        run.step(f"{context.spec.name}: tuning, inter-op {interop}" + (" passive wait" if extra_env else ""))
        code = _INTEROP_CHILD.format(repo=str(REPO_ROOT), interop=interop, threads=all_cores, artefact=path,
                                     image=str(CACHE_DIR / "images" / f"card_{context.size[0]}x{context.size[1]}.jpg"),
                                     warmup=context.settings.warmup, repeats=context.settings.repeats)
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=dict(os.environ, PYTHONWARNINGS="ignore", **extra_env))
        if result.returncode != 0:
            run.skip("tuning inter-op", context.spec.name, result.stderr.strip()[-200:])
            continue
        stats = json.loads(result.stdout.strip().splitlines()[-1])
        run.tuning.append({"model": context.spec.name, "height": context.size[0], "width": context.size[1],
                           "threads": all_cores,
                           "variant": f"TorchScript from Python: {interop} inter-op thread(s)"
                                      + "".join(f", {k}={v}" for k, v in extra_env.items()) + ", own process",
                           "median_ms": round(stats["median_ms"], 2), "p90_ms": round(stats["p90_ms"], 2),
                           "runs": context.settings.repeats, "speedup_vs_default": round(base / stats["median_ms"], 3),
                           "interleaved": False})
    run.progress.update(1)


def _first_calls(detr_cpp, path: str, threads: int, image: np.ndarray, calls: int = 3) -> Dict[str, float]:
    """Milliseconds of each of the first ``calls`` calls of a freshly loaded Detector, with and
    without the profiling executor. The process has run the model already, so oneDNN's kernel
    cache is warm for both and only the executor differs; the cold-start table has the rest."""
    timed = {}
    for profiling, name in ((True, "profiling executor (before)"), (False, "no profiling executor")):
        detector = detr_cpp.Detector(path, num_threads=threads, profiling_executor=profiling)
        for call in range(1, calls + 1):
            start = time.perf_counter()
            detector.detect(image)
            timed[f"C++ module: call {call} after loading, {name}"] = (time.perf_counter() - start) * 1e3
        del detector
    return timed


# One process per inter-op setting: frozen + optimized TorchScript, warm-up, timed calls.
_INTEROP_CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, torch
torch.set_num_interop_threads({interop})
torch.set_num_threads({threads})
from PIL import Image
from detr_deploy.export.torchscript import freeze_and_optimize, load_artefact
module = freeze_and_optimize(load_artefact({artefact!r})[0])
image = torch.from_numpy(np.asarray(Image.open({image!r}).convert("RGB")).copy())
times = []
with torch.inference_mode(), torch.jit.optimized_execution(False):
    for index in range({warmup} + {repeats}):
        start = time.perf_counter()
        module(image)
        if index >= {warmup}:
            times.append(time.perf_counter() - start)
print(json.dumps({{"median_ms": float(np.median(times)) * 1e3, "p90_ms": float(np.percentile(times, 90)) * 1e3}}))
"""


# ---------------------------------------------------------------------------- sizes


def _size_rows(run: _Run, artefacts: Artefacts, models: Dict[str, object]) -> Tuple[List[dict], List[dict]]:
    """sizes.csv and models.csv rows (see the module docstring)."""
    import torch

    rows: List[dict] = []

    def add(category, item, size, note=""):
        rows.append({"category": category, "item": item, "bytes": int(size), "note": note})

    # 1. installed packages: what `pip install torch` brings, and the alternatives
    run.step("sizes: installed packages")
    closure = size_tools.requirement_closure("torch")
    cuda = [name for name in closure if name.startswith(("nvidia-", "cuda-", "triton"))]
    for name in closure + ["torchvision", "numpy", "pillow", "opencv-python-headless", "onnxruntime", "openvino"]:
        size = size_tools.optional_distribution_size(name)
        if size is None:
            add("package", name, 0, "not installed here")
        else:
            note = "CUDA, pulled in by the default torch wheel" if name in cuda else (
                "pulled in by torch" if name in closure and name != "torch" else "")
            add("package", name, size, note)
    sizes_by_name = {row["item"]: row["bytes"] for row in rows if row["category"] == "package"}
    add("package_group", "torch with everything pip installs for it", sum(sizes_by_name[n] for n in closure))
    add("package_group", "of which CUDA libraries (nvidia-*, cuda-*, triton)", sum(sizes_by_name[n] for n in cuda))

    # 2. torch/lib by library
    torch_lib = Path(torch.__file__).parent / "lib"
    for name, size in size_tools.library_sizes(torch_lib).items():
        add("torch_lib", name, size)
    add("package_group", "torch/lib total", size_tools.tree_size(torch_lib))

    # 3. the slim runtime folder, unstripped, and what stripping each library saves
    run.step("sizes: runtime folder + strip")
    folder_bytes = None
    try:
        from detr_deploy.native import runtime_folder

        demo_pt = MODELS_DIR / "demo.pt"
        folder = runtime_folder.assemble(CACHE_DIR / "runtime", demo_pt, strip=False, quiet=True)
        for name, size in folder.files.items():
            add("runtime_folder", name, size, "unstripped copy")
        folder_bytes = folder.total_bytes
        add("package_group", "runtime folder (module + libtorch libraries it needs + demo model)", folder_bytes)
        libraries = [folder.path / "lib" / name for name in folder.libraries] + [folder.module]
        stripped_total = 0
        for name, (before, after) in size_tools.strip_savings(libraries).items():
            add("strip", name, before - after, f"strip --strip-unneeded: {before} -> {after} bytes")
            stripped_total += before - after
        add("package_group", "runtime folder, libraries stripped", folder_bytes - stripped_total)
        needed = set(folder.libraries)
        unused = sum(size for name, size in size_tools.library_sizes(torch_lib).items() if name not in needed)
        add("package_group", "torch/lib libraries the module does not need", unused)
        cuda_needed = sum(info["size_bytes"] for name, info in folder.libraries.items()
                          if name.startswith(("libcu", "libnv")))
        add("package_group", "CUDA libraries in the runtime folder (linked by the CUDA build of libtorch_cpu)",
            cuda_needed, "a CPU-only torch build would not need them")
    except Exception as error:  # no compiler, no strip: record and go on
        run.skip("runtime_folder", "demo", f"{type(error).__name__}: {str(error).splitlines()[0][:200]}")

    # 4. artefacts: whatever this run exported
    for (kind, model_name, size), path in sorted(artefacts.made.items(), key=lambda item: str(item[0])):
        measured = size_tools.tree_size(path.parent) - size_tools.tree_size(path.parent / "done.json")
        add("artefact", f"{model_name} {kind} ({size[0]}x{size[1]})", measured, relative(path).split("/")[-1])

    # 5. what each runtime ships (numpy and Pillow for every Python row)
    common = sizes_by_name.get("numpy", 0) + sizes_by_name.get("pillow", 0)
    for runtime in list(RUNTIMES.values()):
        total, parts = common, ["numpy", "pillow"]
        for item in runtime.ships:
            if item == "runtime_folder":
                if folder_bytes is None:
                    total = None
                    break
                model_files = sum(r["bytes"] for r in rows if r["category"] == "runtime_folder"
                                  and r["item"] in ("model.pt", "model.json"))
                total += folder_bytes - model_files - sum(r["bytes"] for r in rows if r["category"] == "strip")
                parts.append("runtime folder (stripped, model excluded like every row)")
            elif item == "torch":
                total += sum(sizes_by_name[n] for n in closure)
                parts.append("torch + its dependencies")
            else:
                if not sizes_by_name.get(item):
                    total = None
                    break
                total += sizes_by_name[item]
                parts.append(item)
        if total is not None:
            add("deployment", runtime.name, total, " + ".join(parts))

    # models.csv
    run.step("sizes: model table")
    model_rows = _model_rows(models)
    run.progress.update(1)
    return rows, model_rows


def _model_rows(models: Dict[str, object]) -> List[dict]:
    import torch
    import torchvision.models.detection as detection

    from detr_deploy.model.detr import detr_resnet50, detr_resnet50_dc5, detr_resnet101

    rows = []
    builders = {
        "DETR-R50": lambda: models.get("detr_resnet50") or detr_resnet50(seed=0),
        "DETR-R101": lambda: detr_resnet101(seed=0),
        "DETR-R50-DC5": lambda: detr_resnet50_dc5(seed=0),
        "demo (this repository)": lambda: models.get("demo") or _demo_model(),
        "Faster R-CNN R50-FPN (torchvision)": lambda: detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None),
        "RetinaNet R50-FPN (torchvision)": lambda: detection.retinanet_resnet50_fpn(weights=None, weights_backbone=None),
        "SSDlite320 MobileNetV3-L (torchvision)": lambda: detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None),
    }
    torch.manual_seed(0)
    for name, build in builders.items():
        model = build()
        rows.append(size_tools.model_size_row(name, model, "counted (random weights)" if "demo" not in name else "counted"))
        del model
    return rows + size_tools.cited_rows()


# ---------------------------------------------------------------------------- entry


def _write_csv(rows: List[dict], path: Path) -> None:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)


def run_benchmark(settings: Settings, out, runtimes: Optional[Sequence[str]] = None, cli: bool = True,
                  do_sizes: bool = True, command: Optional[str] = None) -> dict:
    """Run the measurement (see :func:`_run_benchmark`); the caller's torch thread count is
    restored afterwards, since the sweeps change it process-wide."""
    import torch

    threads_before = torch.get_num_threads()
    try:
        return _run_benchmark(settings, out, runtimes, cli, do_sizes, command)
    finally:
        torch.set_num_threads(threads_before)


def _run_benchmark(settings: Settings, out, runtimes: Optional[Sequence[str]] = None, cli: bool = True,
                   do_sizes: bool = True, command: Optional[str] = None) -> dict:
    """Run everything ``settings`` asks for and write the files into ``out``; returns the
    benchmark.json content."""
    import torch
    from tqdm import tqdm

    from detr_deploy.bench.flops import detr_flops, gemm_peak_gflops

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    names = list(runtimes or RUNTIMES)
    unknown = [name for name in names if name not in RUNTIMES]
    if unknown:
        raise ValueError(f"unknown runtime(s) {unknown}; choose from {sorted(RUNTIMES)}")
    if "eager" not in names:
        names.insert(0, "eager")  # every ratio is to eager
    groups = sum(len(settings.sizes) + ((len(settings.threads) - 1) + (len(settings.batches) - 1))
                 for _ in settings.models)
    total = groups + (len(settings.models) if settings.tuning else 0) + (1 if do_sizes else 0)
    progress = tqdm(total=total, desc="benchmark", file=sys.stderr, dynamic_ncols=False, ncols=100,
                    mininterval=1.0)
    run = _Run(settings, out, progress)
    artefacts = Artefacts(cached_only=("aoti",) if settings.aoti == "cached" else ())
    image_dir = CACHE_DIR / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    run.step("GEMM peak")
    for threads in settings.threads:
        run.peak[threads] = gemm_peak_gflops(threads)

    warnings.filterwarnings("ignore", category=FutureWarning, message=r".*torch\.jit.*deprecated")
    built_models: Dict[str, object] = {}
    for model_name in settings.models:
        spec = MODELS[model_name]
        run.step(f"{model_name}: build")
        model = spec.build().eval()
        built_models[model_name] = model
        run.flops[model_name] = {f"{h}x{w}": detr_flops(model, h, w) for h, w in settings.sizes}
        weights = MODELS_DIR / "demo_weights.pth"
        if model_name != "demo":  # cold start loads a checkpoint file, as a service would
            from detr_deploy.model.checkpoint import save_checkpoint

            weights = CACHE_DIR / f"{model_name}_seed{settings.seed}.pth"
            if not weights.is_file():
                save_checkpoint(model, weights)
        for size in settings.sizes:
            jpeg = make_image(*size, seed=settings.seed)
            image_path = image_dir / f"card_{size[0]}x{size[1]}.jpg"
            image_path.write_bytes(jpeg)
            sweep = size == settings.sweep_size
            wanted = [n for n in names if n != "cpp_aotinductor" or sweep or settings.aoti != "sweep"]
            thread_list = settings.threads if sweep else (max(settings.threads),)
            shared: Dict[str, Loaded] = {}
            for threads in sorted(thread_list, reverse=True):  # all cores first
                _set_threads(threads)
                context = Context(spec, model, size, threads, settings, artefacts)
                loaded = {}
                per_instance = [n for n in wanted if RUNTIMES[n].threads_per_instance or n not in shared]
                fresh = _load_all(run, context, per_instance)
                for name in wanted:
                    if name in fresh:
                        loaded[name] = fresh[name]
                        if not RUNTIMES[name].threads_per_instance:
                            shared[name] = fresh[name]
                    elif name in shared:
                        loaded[name] = shared[name]
                _time_group(run, context, loaded, jpeg, 1)
                if cli:
                    _time_cli(run, context, image_path)
                if sweep and threads == max(thread_list):
                    for batch in settings.batches:
                        if batch != 1:
                            _time_group(run, context, loaded, jpeg, batch)
                    if settings.tuning:
                        _tuning(run, context, jpeg)
                    for name in wanted + ([CLI_RUNTIME] if cli else []):
                        if name in loaded or name == CLI_RUNTIME:
                            _cold_start(run, context, name, image_path, weights)
            del shared
    # the GEMM rate again at the end: the higher of the two is the peak (a busy moment
    # during one measurement would otherwise make every fraction of peak too high)
    run.step("GEMM peak (again)")
    for threads in settings.threads:
        run.peak[threads] = max(run.peak[threads], gemm_peak_gflops(threads))
    _set_threads(max(settings.threads))
    size_rows, model_rows = _size_rows(run, artefacts, built_models) if do_sizes else ([], [])
    progress.close()

    for row in run.latency:  # against the final peak
        row["fraction_of_peak"] = round(row["achieved_gflops"] / run.peak[row["threads"]], 4)
    _write_csv(run.latency, out / "latency.csv")
    _write_csv(run.cold, out / "coldstart.csv")
    _write_csv(run.tuning, out / "tuning.csv")
    if do_sizes:
        _write_csv(size_rows, out / "sizes.csv")
        _write_csv(model_rows, out / "models.csv")
    result = {
        "created": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC",
        "command": command or f"detr_deploy.bench.benchmark.run_benchmark({settings.mode.upper()})",
        "machine": machine_info(settings.threads),
        "settings": {**asdict(settings), "runtimes": names, "cli": cli},
        "models": {name: {"weights": MODELS[name].weights, "score_threshold": MODELS[name].score_threshold}
                   for name in settings.models},
        "runtimes": {name: {"label": r.label, "torch_in_python": r.torch_in_python, "cpp_api": r.cpp_api,
                            "ships": list(r.ships)} for name, r in RUNTIMES.items()}
        | {CLI_RUNTIME: {"label": CLI_LABEL, "torch_in_python": False, "cpp_api": True, "ships": ["runtime_folder"]}},
        "gemm_peak_gflops": {str(k): round(v, 1) for k, v in run.peak.items()},
        "flops": run.flops,
        "export_seconds": artefacts.export_seconds,
        "skipped": run.skipped,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def load_results(folder) -> dict:
    """Read a benchmark folder: {"info": benchmark.json, "latency": DataFrame, ...}; tables
    the run did not write are empty DataFrames."""
    import pandas as pd

    folder = Path(folder)
    info_path = folder / "benchmark.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{relative(info_path)} not found: run python -m detr_deploy.bench --out "
                                f"{relative(folder)}")
    result = {"info": json.loads(info_path.read_text())}
    for name in ("latency", "coldstart", "tuning", "sizes", "models"):
        path = folder / f"{name}.csv"
        try:
            result[name] = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        except pd.errors.EmptyDataError:
            result[name] = pd.DataFrame()
    return result


# ---------------------------------------------------------------------------- reading a run


def headline(results: dict, model: str):
    """Latency rows at the sweep size, all cores, batch 1, for ``model``: the table every
    comparison in chapter 04 starts from (fastest first)."""
    info, latency = results["info"], results["latency"]
    height, width = info["settings"]["sweep_size"]
    threads = max(info["settings"]["threads"])
    rows = latency[(latency.model == model) & (latency.height == height) & (latency.width == width)
                   & (latency.threads == threads) & (latency.batch == 1)]
    return rows.sort_values("median_ms").reset_index(drop=True)


def _best(rows, names):
    chosen = rows[rows.runtime.isin(list(names)) & rows.includes_decode.astype(bool)].sort_values("median_ms")
    return chosen.iloc[0] if len(chosen) else None


def decision_table(results: dict, model: str):
    """Which runtime wins for each goal on this machine, by how much, for ``model``.

    Goals: smallest image (bytes a service ships), lowest latency, no torch in the Python
    process, usable from a C++ application. Latency compares end-to-end rows (decode
    included) at the sweep size; "margin" is the runner-up's value over the winner's.
    """
    import pandas as pd

    runtimes = results["info"]["runtimes"]
    rows = headline(results, model)
    measured = list(rows.runtime)
    sizes_table = results["sizes"]
    table = []

    def latency_goal(goal, names):
        ranked = rows[rows.runtime.isin(list(names)) & rows.includes_decode.astype(bool)].sort_values("median_ms")
        if ranked.empty:
            table.append({"goal": goal, "winner": None, "measure": "median ms", "value": None,
                          "runner_up": None, "runner_up_value": None, "margin": None})
            return
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        table.append({"goal": goal, "winner": first.runtime, "measure": "median ms", "value": first.median_ms,
                      "runner_up": None if second is None else second.runtime,
                      "runner_up_value": None if second is None else second.median_ms,
                      "margin": None if second is None else round(second.median_ms / first.median_ms, 2)})

    # smallest image: what each measured runtime ships
    if not sizes_table.empty:
        shipped = sizes_table[(sizes_table.category == "deployment") & sizes_table.item.isin(measured)]
        shipped = shipped.sort_values("bytes")
    else:
        shipped = sizes_table
    if len(shipped):
        first, second = shipped.iloc[0], (shipped.iloc[1] if len(shipped) > 1 else None)
        table.append({"goal": "smallest image", "winner": first["item"], "measure": "MB shipped",
                      "value": round(first["bytes"] / 1e6, 1),
                      "runner_up": None if second is None else second["item"],
                      "runner_up_value": None if second is None else round(second["bytes"] / 1e6, 1),
                      "margin": None if second is None else round(second["bytes"] / first["bytes"], 2)})
    else:
        table.append({"goal": "smallest image", "winner": None, "measure": "MB shipped", "value": None,
                      "runner_up": None, "runner_up_value": None, "margin": None})
    latency_goal("lowest latency", measured)
    latency_goal("no torch in Python", [n for n in measured if not runtimes.get(n, {}).get("torch_in_python", True)])
    latency_goal("C++ application", [n for n in measured if runtimes.get(n, {}).get("cpp_api", False)])
    return pd.DataFrame(table)


def goals(results: dict, model: str) -> dict:
    """Issue 6's two targets for the libtorch path, from the headline rows of ``model``:
    the best C++ path at least 1.3x faster than eager end to end, and no slower than the
    best of ONNX Runtime and OpenVINO (None when those were not measured)."""
    rows = headline(results, model)
    eager = _best(rows, ["eager"])
    cpp = _best(rows, ["cpp_torchscript", "cpp_aotinductor"])
    other = _best(rows, ["onnxruntime", "openvino"])
    speedup = None if eager is None or cpp is None else round(eager.median_ms / cpp.median_ms, 2)
    versus = None if other is None or cpp is None else round(other.median_ms / cpp.median_ms, 2)
    return {
        "model": model,
        "best_cpp": None if cpp is None else cpp.runtime,
        "speedup_vs_eager": speedup,
        "faster_than_eager_1.3x": None if speedup is None else bool(speedup >= 1.3),
        "best_alternative": None if other is None else other.runtime,
        "cpp_vs_best_alternative": versus,
        "no_slower_than_alternatives": None if versus is None else bool(versus >= 1.0),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.bench",
        description="Measure latency, cold start, memory, sizes and FLOPs of every runtime; write CSV + JSON.",
    )
    parser.add_argument("--out", default="data/benchmarks", help="output folder (default: data/benchmarks)")
    parser.add_argument("--quick", action="store_true",
                        help="demo model, one size, few repeats (CI / notebook, 1-2 minutes)")
    parser.add_argument("--runtimes", nargs="+", choices=sorted(RUNTIMES), help="only these (eager is always added)")
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), help="only these models")
    parser.add_argument("--repeats", type=int, help=f"timed rounds per group (default: {QUICK.repeats} quick, {FULL.repeats} full)")
    parser.add_argument("--no-cli", action="store_true", help="skip the CMake program")
    parser.add_argument("--no-sizes", action="store_true", help="skip sizes.csv and models.csv")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.models:
        settings = replace(settings, models=tuple(args.models))
    if args.repeats:
        if args.repeats < 1:
            parser.error("--repeats must be >= 1")
        settings = replace(settings, repeats=args.repeats)
    result = run_benchmark(settings, args.out, runtimes=args.runtimes, cli=not args.no_cli,
                           do_sizes=not args.no_sizes,
                           command=" ".join(["python -m detr_deploy.bench", *(argv if argv is not None else sys.argv[1:])]))
    print(f"wrote {relative(args.out)}/{{latency,coldstart,tuning,sizes,models}}.csv and benchmark.json "
          f"in {result['wall_seconds']:.0f} s")
    for skipped in result["skipped"]:
        print(f"  skipped {skipped['runtime']} ({skipped['model']}): {skipped['reason']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
