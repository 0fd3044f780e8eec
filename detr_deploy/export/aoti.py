"""``torch.export`` + AOTInductor: the successor of TorchScript, a ``.pt2`` package.

:func:`export_aoti` compiles the pipeline's program (:mod:`detr_deploy.export.program`) for the
CPU with ``torch._inductor.aoti_compile_and_package``; :func:`finish_package` adds what
detr_deploy needs (the metadata, no dependency on ``libtorch.so``). The C++
``detr_cpp.Detector`` loads the package like a TorchScript ``.pt``
(``detector.backend == "aotinductor"``), chosen by the metadata embedded in the package;
:func:`load_aoti` runs it from Python. Compiling takes minutes: :func:`cached_aoti` keeps one
package per distinct input.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from detr_deploy.demo_model import demo_settings
from detr_deploy.export import artefact, program
from detr_deploy.export.artefact import METADATA_FILE, write_sidecar
from detr_deploy.export.program import DEFAULT_EXAMPLE_SIZE, as_pipeline, export_program, program_metadata
from detr_deploy.machine import ISA_FLAGS, cpu_isa_flags
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.native.runners import AOTI_FORMAT
from detr_deploy.native.runtime_folder import replace_needed
from detr_deploy.paths import BUILD_DIR, MODELS_DIR, relative

__all__ = [
    "DEFAULT_INDUCTOR_CONFIGS",
    "ISA_FLAGS",
    "export_aoti",
    "finish_package",
    "cached_aoti",
    "demo_aoti",
    "load_aoti",
    "cpu_isa_flags",
    "check_cpu",
]

# freezing folds weights into the compiled graph as constants, so Inductor can prepack them for
# oneDNN (convolutions and linear layers) and lower int8 groups; it needs autograd off (export_aoti).
DEFAULT_INDUCTOR_CONFIGS = {"freezing": True}


def _compiled_for(configs: dict) -> dict:
    march = configs.get("cpp.march")  # None (the default): -march=native
    return {
        "machine": platform.machine(),
        "march": march or "native",
        "required_cpu_flags": cpu_isa_flags() if march is None else [],
    }


def check_cpu(metadata: dict, path) -> None:
    """Raise ValueError if this CPU lacks an instruction set the package was compiled for."""
    required = (metadata.get("compiled_for") or {}).get("required_cpu_flags") or []
    have = cpu_isa_flags()
    missing = sorted(set(required) - set(have)) if have else []
    if missing:
        raise ValueError(
            f"{path} was compiled (-march=native) on a CPU with {', '.join(missing)}, which this CPU "
            f"lacks: compile the package on this machine, or run the TorchScript artefact"
        )


def _without_libtorch_dependency(library: bytes) -> bytes:
    """The compiled model with its DT_NEEDED ``libtorch.so`` pointed at ``libtorch_cpu.so``.

    Inductor links the model with ``-ltorch``, but on the CPU it uses only symbols of
    libtorch_cpu (which it also lists). With the CUDA wheel ``libtorch.so`` pulls in
    ``libtorch_cuda.so`` and CUDA's libraries, and the .so has no rpath, so loading it from
    a process that has not loaded ``libtorch.so`` fails with ``dlopen: libtorch.so: cannot
    open shared object file``. After this, a process that has libtorch_cpu (the detr_cpp
    module, the slim runtime folder) loads it.
    """
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.so"
        path.write_bytes(library)
        replace_needed(path, "libtorch.so", "libtorch_cpu.so")
        return path.read_bytes()


def finish_package(
    package, pipeline: DetectionPipeline, program: torch.export.ExportedProgram, inductor_configs: Optional[dict] = None
) -> dict:
    """Make a package from ``torch._inductor.aoti_compile_and_package`` loadable by the C++
    ``Detector``, in place: the metadata goes in as ``extra/metadata.json`` and the compiled
    model's ``libtorch.so`` dependency becomes ``libtorch_cpu.so``. Returns the metadata.

    ``aoti_compile_and_package`` takes no extra files and packages the library as compiled,
    so the zip is rewritten (a ``.pt2`` is a zip of stored entries under one folder).
    """
    package = Path(package)
    configs = DEFAULT_INDUCTOR_CONFIGS if inductor_configs is None else inductor_configs
    metadata = program_metadata(pipeline, AOTI_FORMAT, program)
    metadata["compiled_for"] = _compiled_for(configs)
    rewritten = package.with_name(package.name + ".partial")
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(rewritten, "w", zipfile.ZIP_STORED) as target:
        libraries = [name for name in source.namelist() if name.endswith(".so")]
        if len(libraries) != 1:
            raise RuntimeError(f"{package.name} holds {len(libraries)} shared libraries, expected 1")
        folder = libraries[0].split("/")[0]
        for name in source.namelist():
            if name.endswith("/extra/" + METADATA_FILE):
                continue
            data = source.read(name)
            target.writestr(name, _without_libtorch_dependency(data) if name == libraries[0] else data)
        target.writestr(f"{folder}/extra/{METADATA_FILE}", json.dumps(metadata, sort_keys=True))
    os.replace(rewritten, package)
    return metadata


def export_aoti(
    model: nn.Module,
    out_path,
    *,
    inductor_configs: Optional[dict] = None,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    **settings,
) -> Path:
    """Export with ``torch.export``, compile with AOTInductor for the CPU, write ``out_path``
    (``.pt2``, metadata embedded as ``extra/metadata.json``) and its sidecar ``.json``.

    ``settings``: the pipeline's (``min_size``, ``max_size``, ``score_threshold``, ``top_k``, ...;
    unset or None: :data:`~detr_deploy.export.program.PIPELINE_DEFAULTS`) for a DETR ``model``.
    Returns the ``.pt2`` path. The sidecar records ``export_seconds`` and ``compile_seconds``
    (compiling takes minutes: :func:`cached_aoti` keeps the package).
    """
    out_path = Path(out_path)
    if out_path.suffix != ".pt2":
        raise ValueError(f"an AOTInductor package must end in .pt2, got {out_path.name}")
    pipeline, _ = as_pipeline(model, settings)
    start = time.perf_counter()
    program = export_program(pipeline, dynamic=dynamic, example_size=example_size)
    export_seconds = time.perf_counter() - start
    configs = dict(DEFAULT_INDUCTOR_CONFIGS if inductor_configs is None else inductor_configs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial.pt2")  # never leave a half-written package
    start = time.perf_counter()
    # autograd off: Inductor applies ``freezing`` only then (with it on, the compile succeeds
    # silently with weights as inputs, aten convolutions and no oneDNN weight prepacking)
    with torch.no_grad():
        torch._inductor.aoti_compile_and_package(program, package_path=str(partial), inductor_configs=dict(configs))
    compile_seconds = time.perf_counter() - start
    metadata = finish_package(partial, pipeline, program, configs)
    os.replace(partial, out_path)
    write_sidecar(
        out_path,
        metadata,
        export_seconds=round(export_seconds, 1),
        compile_seconds=round(compile_seconds, 1),
        inductor_configs=_jsonable(configs),
    )
    return out_path


def _jsonable(configs: dict) -> dict:
    return {key: value if isinstance(value, (bool, int, float, str)) else repr(value) for key, value in configs.items()}


def _graph_modules() -> list:
    """The modules whose code shapes the package, whole: the export program, the artefact's
    description, and every ``detr_deploy.model`` module they import (directly or through
    another), found by following the names each module imports."""
    found, pending = {}, [program, artefact]
    while pending:
        module = pending.pop()
        if module.__name__ in found:
            continue
        found[module.__name__] = module
        for value in vars(module).values():
            owner = value if inspect.ismodule(value) else inspect.getmodule(value)
            if owner is not None and owner.__name__.startswith("detr_deploy.model."):
                pending.append(owner)
    return [found[name] for name in sorted(found)]


# this module's part of the package (not the whole file: unrelated edits keep the cache)
_COMPILE_STEP = (export_aoti, finish_package, _jsonable, _compiled_for, _without_libtorch_dependency, replace_needed)


def _hash_inputs(model: nn.Module, settings: dict) -> str:
    """A key for a compiled package: weights, settings, torch and the code that shapes the graph."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    digest.update(torch.__version__.encode())
    for code in (*_graph_modules(), *_COMPILE_STEP):
        digest.update(inspect.getsource(code).encode())
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


def demo_aoti(cache_dir=BUILD_DIR / "aoti") -> Path:
    """The demo model (``data/models/demo_weights.pth``) as a cached AOTInductor package, with the
    settings and default threshold of its TorchScript artefact (:func:`demo_settings`). The tests
    and the benchmark share it, so a fresh checkout compiles it once."""
    from detr_deploy.model.checkpoint import load_model

    model = load_model(MODELS_DIR / "demo_weights.pth").eval()
    return cached_aoti(model, cache_dir, name="demo", **demo_settings())


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
