"""The successor path and the alternatives to TorchScript, on the same pipeline.

Three exports of :class:`~detr_deploy.model.pipeline.DetectionPipeline` (uint8 RGB image in,
boxes/scores/labels out, pre- and post-processing inside the graph):

* :func:`export_aoti`: ``torch.export`` + AOTInductor -> a ``.pt2`` package that the C++
  ``detr_cpp.Detector`` loads like a TorchScript ``.pt`` (``detector.backend ==
  "aotinductor"``), chosen by the metadata embedded in the package.
* :func:`export_onnx` -> ``.onnx``, run by :class:`OnnxRuntimeDetector` (ONNX Runtime).
* :func:`export_openvino` -> OpenVINO IR ``.xml`` + ``.bin``, run by :class:`OpenVinoDetector`.

Each writes a sidecar ``.json`` (the metadata + sha256 and size), like the TorchScript export.
Height and width are dynamic (``torch.export.Dim``, 2 ... ``max_input_side``); the score
threshold is a 0-d float32 tensor input, so it can be chosen per call as with TorchScript.

onnx, onnxruntime and openvino are optional extras (``pip install -r
requirements-runtimes.txt``); importing this module needs none of them.

Command line, one command per artefact::

    python -m detr_deploy.export --format aoti     --model data/models/demo_weights.pth --out build/models/demo.pt2
    python -m detr_deploy.export.alternatives onnx     --model data/models/demo_weights.pth --out build/models/demo.onnx
    python -m detr_deploy.export.alternatives openvino --model data/models/demo_weights.pth --out build/models/demo.xml
    (--arch detr_resnet50 [--checkpoint FILE] instead of --model for the official layout)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import io
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.export.torchscript import _pipeline_metadata, make_pipeline, sha256_of
from detr_deploy.paths import BUILD_DIR, MODELS_DIR, relative
# The runners need numpy and their runtime, not torch: they live in .runners so a service
# (and the cold-start benchmark) can use them without importing torch; re-exported here.
from detr_deploy.native.runners import (  # noqa: F401
    AOTI_FORMAT,
    EXTRA_REQUIREMENT,
    FORMAT_VERSION,
    METADATA_FILE,
    MIN_SIDE,
    ONNX_FORMAT,
    OPENVINO_FORMAT,
    OnnxRuntimeDetector,
    OpenVinoDetector,
    _read_sidecar,
    _require,
)

__all__ = [
    "AOTI_FORMAT",
    "ONNX_FORMAT",
    "OPENVINO_FORMAT",
    "EXTRA_REQUIREMENT",
    "MIN_SIDE",
    "ExportablePipeline",
    "export_program",
    "export_aoti",
    "cached_aoti",
    "load_aoti",
    "cpu_isa_flags",
    "check_cpu",
    "export_onnx",
    "export_openvino",
    "OnnxRuntimeDetector",
    "OpenVinoDetector",
    "main",
]

DEFAULT_EXAMPLE_SIZE = (480, 640)
# freezing folds weights into the compiled graph as constants (slightly faster here).
DEFAULT_INDUCTOR_CONFIGS = {"freezing": True}


# ---------------------------------------------------------------------------- the exported graph


class ExportablePipeline(nn.Module):
    """``forward(image uint8 [H, W, 3], score_threshold float32 []) -> (boxes, scores, labels)``.

    The pipeline's ``forward`` takes the threshold as an ``Optional[float]``; ``torch.export``
    would bake a Python float into the graph as a constant, so here it is a 0-d tensor input.
    """

    def __init__(self, pipeline: DetectionPipeline, topk_order: bool = False) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.topk_order = topk_order  # for ONNX: see DetectionPipeline.postprocess

    def forward(self, image: Tensor, score_threshold: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        pipeline = self.pipeline
        pixels = pipeline.preprocess(image).unsqueeze(0)
        out = pipeline.model(pixels)
        return pipeline.postprocess(
            out["pred_logits"][0], out["pred_boxes"][0], image.shape[0], image.shape[1], score_threshold,
            self.topk_order,
        )


PIPELINE_DEFAULTS = dict(min_size=800, max_size=1333, score_threshold=0.5, top_k=0)


def _as_pipeline(model: nn.Module, settings: dict) -> Tuple[DetectionPipeline, nn.Module]:
    """(pipeline, DETR) from a DETR plus pipeline settings (None: the default), or from a
    ready pipeline (then no settings)."""
    settings = {key: value for key, value in settings.items() if value is not None}
    if isinstance(model, DetectionPipeline):
        if settings:
            raise ValueError("pass pipeline settings (min_size, ...) with a DETR model, not with a DetectionPipeline")
        return model.eval(), model.model
    if not hasattr(model, "config"):
        raise TypeError(f"expected a detr_deploy DETR or DetectionPipeline, got {type(model).__name__}")
    return make_pipeline(model, **dict(PIPELINE_DEFAULTS, **settings)), model


def _example_inputs(pipeline: DetectionPipeline, example_size: Sequence[int]) -> Tuple[Tensor, Tensor]:
    height, width = (int(side) for side in example_size)
    # a non-square example: a square one would let the exporter assume H == W
    image = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return image, torch.tensor(pipeline.score_threshold, dtype=torch.float32)


def export_program(
    model: nn.Module,
    *,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    topk_order: bool = False,
    **settings,
) -> torch.export.ExportedProgram:
    """``torch.export`` the pipeline around ``model`` (a DETR + ``min_size=...`` settings, or
    a :class:`DetectionPipeline`). ``dynamic``: height and width are symbolic in
    [:data:`MIN_SIDE`, ``max_input_side``]; otherwise the graph is fixed at ``example_size``."""
    pipeline, _ = _as_pipeline(model, settings)
    if example_size[0] == example_size[1]:
        raise ValueError("use a non-square example_size: with H == W the export may tie the two sizes together")
    wrapper = ExportablePipeline(pipeline, topk_order=topk_order).eval()
    inputs = _example_inputs(pipeline, example_size)
    dynamic_shapes = None
    if dynamic:
        side = pipeline.max_input_side
        dynamic_shapes = {
            "image": {0: torch.export.Dim("height", min=MIN_SIDE, max=side),
                      1: torch.export.Dim("width", min=MIN_SIDE, max=side)},
            "score_threshold": None,
        }
    with torch.no_grad():
        return torch.export.export(wrapper, inputs, dynamic_shapes=dynamic_shapes, strict=False)


class _Size:
    """Stands in for ``image`` when evaluating the export's guard expressions."""

    def __init__(self, height: int, width: int) -> None:
        self.shape = (height, width, 3)

    def size(self):
        return self.shape


def guards_hold(program: torch.export.ExportedProgram, height: int, width: int) -> bool:
    """Whether an image of ``height`` x ``width`` satisfies every guard of the export.

    ``torch.export`` assumes that no intermediate size is 0 or 1 (the 0/1 specialisation):
    the guards say so, e.g. that the backbone's feature map has both sides >= 2. The eager
    module checks them on each call; the AOTInductor, ONNX and OpenVINO graphs do not, and
    would compute garbage (or fail) outside them."""
    scope = {"L": {"image": _Size(height, width)}, "torch": torch}
    return all(eval(code, scope) for code in _compiled_guards(program))  # noqa: S307 - torch's own code


def _compiled_guards(program: torch.export.ExportedProgram) -> list:
    cached = getattr(program, "_detr_compiled_guards", None)
    if cached is None:
        cached = [compile(code, "<export guard>", "eval") for code in getattr(program, "_guards_code", [])]
        program._detr_compiled_guards = cached
    return cached


def min_resized_side(program: torch.export.ExportedProgram, pipeline: DetectionPipeline) -> int:
    """The smallest resized shorter side for which the export's guards hold.

    The shorter side is resized to min(min_size, round(max_size * short / long)), so it
    drops below min_size only for elongated images; an image (r, max_size) resizes to
    exactly (r, max_size). The guards are evaluated for every r up to min_size, in both
    orientations, and then on random sizes as a check that this one number captures them.
    """
    if not getattr(program, "_guards_code", None):
        return 1
    smallest = MIN_SIDE
    for side in range(MIN_SIDE, pipeline.min_size + 1):
        if not (guards_hold(program, side, pipeline.max_size) and guards_hold(program, pipeline.max_size, side)):
            smallest = side + 1
    rng = np.random.default_rng(0)
    limit = min(pipeline.max_input_side, 4 * pipeline.max_size)
    for height, width in rng.integers(MIN_SIDE, limit + 1, size=(300, 2)):
        resized = min(pipeline.resized_size(int(height), int(width)))
        if resized >= smallest and not guards_hold(program, int(height), int(width)):
            raise RuntimeError(f"the export's guards fail for a {height}x{width} image (resized shorter side "
                               f"{resized} >= {smallest}): they are not a bound on the resized size alone")
    return smallest


def _metadata(pipeline: DetectionPipeline, model: nn.Module, fmt: str, dynamic: bool,
              example_size: Sequence[int], program: Optional[torch.export.ExportedProgram] = None) -> dict:
    metadata = _pipeline_metadata(pipeline, model, "torch.export")
    metadata["format"] = fmt
    metadata["format_version"] = FORMAT_VERSION
    metadata["input"]["min_side"] = MIN_SIDE
    if program is not None and dynamic:
        # images so elongated that their shorter side would be resized below this are refused
        metadata["input"]["min_resized_side"] = min_resized_side(program, pipeline)
    metadata["inputs"] = {"image": "uint8 [H, W, 3] RGB", "score_threshold": "float32 [] (0-d)"}
    if not dynamic:
        metadata["traced_input_size"] = [int(example_size[0]), int(example_size[1])]
    return metadata


def _write_sidecar(path: Path, metadata: dict, **extra) -> Path:
    sidecar = path.with_suffix(".json")
    full = dict(metadata, file=path.name, sha256=sha256_of(path), size_bytes=path.stat().st_size, **extra)
    sidecar.write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return sidecar


# ---------------------------------------------------------------------------- AOTInductor

# x86 instruction-set extensions (as /proc/cpuinfo names them) that compiled code may use.
# Inductor compiles a package with -march=native: it may use any of them the building CPU
# has, and on a CPU without one the process dies of SIGILL. So a package records the
# building CPU's set, and loading it (C++ Detector, load_aoti) refuses a CPU that lacks one.
ISA_FLAGS = frozenset(
    "sse sse2 ssse3 sse4_1 sse4_2 sse4a popcnt avx avx2 fma fma4 f16c bmi1 bmi2 lzcnt movbe adx "
    "aes pclmulqdq sha_ni gfni vaes vpclmulqdq avx_vnni avx_vnni_int8 avx_ifma avx_ne_convert "
    "avx512f avx512dq avx512cd avx512bw avx512vl avx512ifma avx512vbmi avx512_vbmi2 avx512_vnni "
    "avx512_bitalg avx512_vpopcntdq avx512_bf16 avx512_fp16 avx512_vp2intersect "
    "amx_tile amx_bf16 amx_int8 amx_fp16".split()
)


def cpu_isa_flags(cpuinfo: Union[str, Path] = "/proc/cpuinfo") -> list:
    """The instruction-set extensions of this CPU (sorted; empty where /proc/cpuinfo has no
    x86 ``flags`` line, e.g. on ARM or macOS: nothing is then recorded or checked)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return sorted(ISA_FLAGS.intersection(value.split()))
    return []


def _compiled_for(configs: dict) -> dict:
    march = configs.get("cpp.march")  # None (the default): -march=native
    return {"machine": platform.machine(), "march": march or "native",
            "required_cpu_flags": cpu_isa_flags() if march is None else []}


def check_cpu(metadata: dict, path) -> None:
    """Raise ValueError if this CPU lacks an instruction set the package was compiled for."""
    required = (metadata.get("compiled_for") or {}).get("required_cpu_flags") or []
    have = cpu_isa_flags()
    missing = sorted(set(required) - set(have)) if have else []
    if missing:
        raise ValueError(f"{path} was compiled (-march=native) on a CPU with {', '.join(missing)}, which this CPU "
                         f"lacks: compile the package on this machine, or run the TorchScript artefact")


def _drop_libtorch_dependency(library: Path) -> bool:
    """Point the compiled model's DT_NEEDED ``libtorch.so`` at ``libtorch_cpu.so`` instead.

    Inductor links the model with ``-ltorch``, but on the CPU it uses only symbols of
    libtorch_cpu (which it also lists). With the CUDA wheel ``libtorch.so`` pulls in
    ``libtorch_cuda.so`` and CUDA's libraries, and the .so has no rpath, so loading it from
    a process that has not loaded ``libtorch.so`` fails with ``dlopen: libtorch.so: cannot
    open shared object file``. After this, a process that has libtorch_cpu (the detr_cpp
    module, the slim runtime folder) loads it. Returns False if there was nothing to change.
    """
    from detr_deploy.native.runtime_folder import replace_needed

    return replace_needed(library, "libtorch.so", "libtorch_cpu.so")


def export_aoti(
    model: nn.Module,
    out_path,
    *,
    min_size: Optional[int] = None,
    max_size: Optional[int] = None,
    score_threshold: Optional[float] = None,
    top_k: Optional[int] = None,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    inductor_configs: Optional[dict] = None,
    **settings,
) -> Path:
    """Export with ``torch.export``, compile with AOTInductor for the CPU, write ``out_path``
    (``.pt2``, metadata embedded as ``extra/metadata.json``) and its sidecar ``.json``.

    Returns the ``.pt2`` path. The sidecar records ``export_seconds`` and ``compile_seconds``
    (DETR-R50: about 2 minutes on 2 cores; the demo model less: use :func:`cached_aoti`).
    """
    from torch.export.pt2_archive._package import package_pt2

    out_path = Path(out_path)
    if out_path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package must end in .pt2, got {out_path.name}")
    pipeline, detr = _as_pipeline(model, dict(min_size=min_size, max_size=max_size,
                                              score_threshold=score_threshold, top_k=top_k, **settings))
    start = time.perf_counter()
    program = export_program(pipeline, dynamic=dynamic, example_size=example_size)
    export_seconds = time.perf_counter() - start
    configs = dict(DEFAULT_INDUCTOR_CONFIGS if inductor_configs is None else inductor_configs)
    configs["aot_inductor.package"] = True
    metadata = _metadata(pipeline, detr, AOTI_FORMAT, dynamic, example_size, program)
    metadata["compiled_for"] = _compiled_for(configs)
    start = time.perf_counter()
    with torch.no_grad():
        args, kwargs = program.example_inputs
        files = torch._inductor.aot_compile(program.module(check_guards=False), args, kwargs, options=configs)
    compile_seconds = time.perf_counter() - start
    libraries = [Path(f) for f in files if isinstance(f, str) and f.endswith(".so")]
    if len(libraries) != 1:
        raise RuntimeError(f"AOTInductor produced {len(libraries)} shared libraries, expected 1")
    _drop_libtorch_dependency(libraries[0])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial.pt2")  # never leave a half-written package
    package_pt2(str(partial), aoti_files={"model": files},
                extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
    os.replace(partial, out_path)
    _write_sidecar(out_path, metadata, export_seconds=round(export_seconds, 1),
                   compile_seconds=round(compile_seconds, 1), inductor_configs=_jsonable(configs))
    return out_path


def _jsonable(configs: dict) -> dict:
    return {key: value if isinstance(value, (bool, int, float, str)) else repr(value) for key, value in configs.items()}


def _hash_inputs(model: nn.Module, settings: dict) -> str:
    """A key for a compiled package: weights, settings, torch and the code that shapes the graph."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(json.dumps(getattr(model, "config").to_dict(), sort_keys=True, default=str).encode())
    digest.update(torch.__version__.encode())
    from detr_deploy.model import box_ops, detr, pipeline

    for module in (pipeline, detr, box_ops):  # the graph's code
        digest.update(Path(module.__file__).read_bytes())
    from detr_deploy.export.torchscript import _pipeline_metadata
    from detr_deploy.native.runtime_folder import replace_needed

    # and what here shapes the package (not the whole file: unrelated edits keep the cache)
    for function in (ExportablePipeline, _as_pipeline, _example_inputs, export_program, export_aoti, _metadata, _compiled_for,
                     _pipeline_metadata, min_resized_side, guards_hold, _drop_libtorch_dependency, replace_needed):
        digest.update(inspect.getsource(function).encode())
    return digest.hexdigest()[:16]


def cached_aoti(model: nn.Module, cache_dir=BUILD_DIR / "aoti", name: str = "model", **settings) -> Path:
    """:func:`export_aoti` once per distinct input: the package is kept as
    ``cache_dir/NAME-HASH.pt2`` (hash of the weights, settings, torch version and the code)
    and reused while it exists. Compiling takes minutes; tests and notebooks go through this."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{name}-{_hash_inputs(model, settings)}.pt2"
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    print(f"compiling {relative(path)} with AOTInductor (minutes on 2 cores, once) ...", flush=True)
    return export_aoti(model, path, **settings)


# Chapter 02b's package of the demo model: its sizes, threshold 0 (each call passes its own).
# The tests, chapter 02b and the benchmark share it, so a fresh checkout compiles it once.
DEMO_AOTI_SETTINGS = dict(min_size=384, max_size=640, score_threshold=0.0)


def demo_aoti(cache_dir=BUILD_DIR / "aoti") -> Path:
    """The demo model (``data/models/demo_weights.pth``) as a cached AOTInductor package."""
    from detr_deploy.model.checkpoint import load_model

    model = load_model(MODELS_DIR / "demo_weights.pth").eval()
    return cached_aoti(model, cache_dir, name="demo", **DEMO_AOTI_SETTINGS)


def load_aoti(path):
    """The package run from Python with torch (``torch._inductor.aoti_load_package``):
    ``runner(image, torch.tensor(threshold)) -> (boxes, scores, labels)``. Refuses (ValueError)
    a package compiled for instruction sets this CPU lacks, instead of crashing on them."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        entry = next((name for name in archive.namelist() if name.endswith("extra/" + METADATA_FILE)), None)
        if entry is not None:
            check_cpu(json.loads(archive.read(entry)), path)
    return torch._inductor.aoti_load_package(str(path))


# ---------------------------------------------------------------------------- ONNX + ONNX Runtime


def export_onnx(
    model: nn.Module,
    out_path,
    *,
    min_size: Optional[int] = None,
    max_size: Optional[int] = None,
    score_threshold: Optional[float] = None,
    top_k: Optional[int] = None,
    exporter: str = "dynamo",
    opset: Optional[int] = None,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    **settings,
) -> Path:
    """Export to ONNX (``out_path``, one self-contained file) + sidecar ``.json``; returns the path.

    ``exporter="dynamo"`` (default): ``torch.onnx.export(dynamo=True)`` from ``torch.export``
    with ``dynamic_shapes``. ``"legacy"``: the TorchScript-based exporter with ``dynamic_axes``
    (deprecated, opset 17).
    """
    _require("onnx")
    import onnx

    out_path = Path(out_path)
    pipeline, detr = _as_pipeline(model, dict(min_size=min_size, max_size=max_size,
                                              score_threshold=score_threshold, top_k=top_k, **settings))
    wrapper = ExportablePipeline(pipeline, topk_order=True).eval()  # ONNX has no stable sort
    inputs = _example_inputs(pipeline, example_size)
    if exporter not in ("dynamo", "legacy"):
        raise ValueError(f"exporter must be 'dynamo' or 'legacy', got {exporter!r}")
    # the dynamo exporter starts from this program; for both, its guards give the size limits
    program = export_program(pipeline, dynamic=dynamic, example_size=example_size, topk_order=True)
    metadata = _metadata(pipeline, detr, ONNX_FORMAT, dynamic, example_size, program)
    metadata["exporter"] = exporter
    out_path.parent.mkdir(parents=True, exist_ok=True)
    names = dict(input_names=["image", "score_threshold"], output_names=["boxes", "scores", "labels"])
    start = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)  # TorchScript-era deprecations
        if exporter == "dynamo":
            _require("onnxscript")
            # it prints progress lines, and its optimiser one line per skipped constant fold
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                onnx_program = torch.onnx.export(program, inputs, dynamo=True, opset_version=opset, **names)
            onnx_program.save(str(out_path))
        elif exporter == "legacy":
            axes = {"image": {0: "height", 1: "width"}, "boxes": {0: "detections"},
                    "scores": {0: "detections"}, "labels": {0: "detections"}} if dynamic else None
            torch.onnx.export(wrapper, inputs, str(out_path), dynamo=False, opset_version=opset or 17,
                              dynamic_axes=axes, **names)
    seconds = time.perf_counter() - start
    proto = onnx.load(str(out_path))
    metadata["opset"] = int(next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")))
    entry = proto.metadata_props.add()  # embedded too, so the .onnx alone says what it is
    entry.key, entry.value = METADATA_FILE, json.dumps(metadata, sort_keys=True)
    onnx.save(proto, str(out_path))
    _write_sidecar(out_path, metadata, export_seconds=round(seconds, 1))
    return out_path


# ---------------------------------------------------------------------------- OpenVINO


def export_openvino(
    source: Union[nn.Module, torch.export.ExportedProgram, str, os.PathLike],
    out_path,
    *,
    compress_to_fp16: bool = False,
    metadata: Optional[dict] = None,
    **settings,
) -> Path:
    """Convert to OpenVINO IR: ``out_path`` (``.xml``, or a folder for ``model.xml``) + ``.bin``
    + sidecar ``.json``; returns the ``.xml`` path.

    ``source``: a DETR (with ``min_size=...`` settings) or DetectionPipeline, exported to
    ONNX here with :func:`export_onnx` and converted from that; or the path of an ``.onnx``
    from :func:`export_onnx` (its sidecar supplies the metadata); or an ExportedProgram with
    ``metadata`` (OpenVINO converts those directly, without ``torch.jit.trace``, but not this
    pipeline's: no conversion rule for ``sym_min``/``sym_max``/``_upsample_bilinear2d_aa``).
    ``compress_to_fp16=False`` keeps fp32 weights: OpenVINO's default stores fp16 and moves
    outputs by ~1e-3.
    """
    ov = _require("openvino")
    if settings and isinstance(source, (str, os.PathLike, torch.export.ExportedProgram)):
        raise ValueError(f"pipeline settings ({', '.join(settings)}) go with a DETR model, not with {type(source).__name__}")
    out_path = Path(out_path)
    xml = out_path / "model.xml" if out_path.suffix != ".xml" else out_path
    start = time.perf_counter()
    scratch = contextlib.ExitStack()  # holds a temporary .onnx until the IR is saved
    if isinstance(source, (str, os.PathLike)):
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"model file not found: {source}")
        base = _read_sidecar(source, ONNX_FORMAT) if metadata is None else metadata
        converted = ov.convert_model(str(source))
        origin = source.name
    elif isinstance(source, torch.export.ExportedProgram):
        if metadata is None:
            raise ValueError("an ExportedProgram carries no class names: pass metadata=..., or pass the DETR model")
        base, converted, origin = metadata, ov.convert_model(source), "ExportedProgram"
    else:
        # Through ONNX: OpenVINO's PyTorch frontend has no rule for this graph's torch.sym_min/
        # sym_max (the dynamic resize size) nor for aten._upsample_bilinear2d_aa (antialiased
        # resize); its ONNX frontend converts ONNX's Resize(antialias=1) and the size arithmetic.
        folder = Path(scratch.enter_context(tempfile.TemporaryDirectory()))
        onnx_path = export_onnx(source, folder / "model.onnx", **settings)
        base = _read_sidecar(onnx_path, ONNX_FORMAT)
        converted = ov.convert_model(str(onnx_path))
        origin = "ONNX (dynamo exporter)"
    metadata = dict(base, format=OPENVINO_FORMAT, format_version=FORMAT_VERSION, converted_from=origin)
    for key in ("file", "sha256", "size_bytes", "export_seconds"):
        metadata.pop(key, None)
    metadata["compress_to_fp16"] = compress_to_fp16
    _name_outputs(converted)
    xml.parent.mkdir(parents=True, exist_ok=True)
    with scratch:
        ov.save_model(converted, str(xml), compress_to_fp16=compress_to_fp16)
    seconds = time.perf_counter() - start
    weights = xml.with_suffix(".bin")
    _write_sidecar(xml, metadata, export_seconds=round(seconds, 1), weights_file=weights.name,
                   weights_size_bytes=weights.stat().st_size if weights.is_file() else 0)
    return xml


def _name_outputs(model) -> None:
    """Give the three outputs and two inputs stable names (ExportedProgram conversion leaves
    generated ones), so the runner can ask for them by name."""
    for port, name in zip(model.outputs, ("boxes", "scores", "labels")):
        port.get_tensor().set_names({name})
    for port, name in zip(model.inputs, ("image", "score_threshold")):
        port.get_tensor().set_names({name})


# ---------------------------------------------------------------------------- command line


def _load_model(args: argparse.Namespace) -> nn.Module:
    from detr_deploy.model.checkpoint import load_checkpoint, load_model
    from detr_deploy.model.detr import ARCHITECTURES

    if args.model:
        return load_model(args.model)
    model = ARCHITECTURES[args.arch](seed=args.seed)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    return model.eval()


def main(argv: Optional[Sequence[str]] = None) -> int:
    from detr_deploy.model.detr import ARCHITECTURES

    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.export.alternatives",
        description="Export a DETR with its image pipeline to AOTInductor (.pt2), ONNX or OpenVINO IR.",
    )
    parser.add_argument("target", choices=["aoti", "onnx", "openvino"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a detr_deploy checkpoint with its config (e.g. data/models/demo_weights.pth)")
    source.add_argument("--arch", choices=sorted(ARCHITECTURES), help="build this architecture")
    parser.add_argument("--checkpoint", help="weights for --arch (an official DETR .pth); random if omitted")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights")
    parser.add_argument("--out", required=True, help="output .pt2 / .onnx / .xml; the .json sidecar goes beside it")
    parser.add_argument("--min-size", type=int, default=None, help="default: the checkpoint's (demo: 384) or 800")
    parser.add_argument("--max-size", type=int, default=None, help="default: the checkpoint's (demo: 640) or 1333")
    parser.add_argument("--threshold", type=float, default=None, help="default score threshold")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--static", action="store_true", help="fixed input size (--example-size) instead of dynamic")
    parser.add_argument("--example-size", type=int, nargs=2, metavar=("H", "W"), default=DEFAULT_EXAMPLE_SIZE)
    parser.add_argument("--exporter", choices=["dynamo", "legacy"], default="dynamo", help="ONNX exporter")
    parser.add_argument("--fp16-weights", action="store_true", help="OpenVINO: store fp16 weights (default fp32)")
    args = parser.parse_args(argv)
    if args.checkpoint and not args.arch:
        parser.error("--checkpoint goes with --arch; --model reads a detr_deploy checkpoint")

    # the demo checkpoint's export settings are in its sidecar, when there is one
    defaults = {"min_size": 800, "max_size": 1333, "score_threshold": 0.5}
    if args.model:
        demo = Path(args.model).with_name("demo.json")
        if Path(args.model).name == "demo_weights.pth" and demo.is_file():
            info = json.loads(demo.read_text())
            defaults = {"min_size": info["preprocess"]["min_size"], "max_size": info["preprocess"]["max_size"],
                        "score_threshold": info["score_threshold"]}
    settings = dict(
        min_size=args.min_size or defaults["min_size"], max_size=args.max_size or defaults["max_size"],
        score_threshold=defaults["score_threshold"] if args.threshold is None else args.threshold,
        top_k=args.top_k, dynamic=not args.static, example_size=tuple(args.example_size),
    )
    try:
        model = _load_model(args)
        start = time.perf_counter()
        if args.target == "aoti":
            path = export_aoti(model, args.out, **settings)
        elif args.target == "onnx":
            path = export_onnx(model, args.out, exporter=args.exporter, **settings)
        else:
            path = export_openvino(model, args.out, compress_to_fp16=args.fp16_weights, **settings)
    except (ImportError, ValueError, FileNotFoundError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    info = json.loads(path.with_suffix(".json").read_text())
    size = info["size_bytes"] + info.get("weights_size_bytes", 0)
    print(f"wrote {relative(path)} ({size / 1e6:.1f} MB) and {path.with_suffix('.json').name} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
