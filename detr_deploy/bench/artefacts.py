"""The exported artefacts the benchmark runs, made on first use and cached by a content key.

The key hashes the model's weights, the pipeline settings, the torch version and the source
of every repository module the export runs: the exporter's module and, found through the
``detr_deploy`` imports in their source (lazy ones included), the modules it reaches, plus
the modules of the model's classes. Any change to one of them re-exports; otherwise an
AOTInductor compile (minutes) is paid once. A module whose source cannot be read stops the
run with an error, since a key without it would never change.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import io
import json
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Sequence, Tuple

from detr_deploy.bench.runtimes import Context, Skip
from detr_deploy.bench.settings import CACHE_DIR, ModelSpec

__all__ = ["Artefacts", "EXPORTERS", "SUFFIX", "source_modules", "read_source"]

PACKAGE = "detr_deploy"
# kind: (module, function) of the exporter
EXPORTERS = {
    "torchscript": ("detr_deploy.export.torchscript", "export_model"),
    "aoti": ("detr_deploy.export.aoti", "export_aoti"),
    "onnx": ("detr_deploy.export.onnx", "export_onnx"),
    "openvino": ("detr_deploy.export.openvino", "export_openvino"),
}
SUFFIX = {"torchscript": ".pt", "aoti": ".pt2", "onnx": ".onnx", "openvino": ".xml"}


def read_source(module: ModuleType) -> bytes:
    """The source file of ``module``; raises RuntimeError when there is none to read."""
    try:
        path = inspect.getsourcefile(module)
    except TypeError:  # a built-in or extension module
        path = None
    if path is None:
        raise RuntimeError(f"no source file for {module.__name__}: the artefact cache key needs it")
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise RuntimeError(f"cannot read the source of {module.__name__} ({path}): {error}") from error


def _imported_names(module: ModuleType, source: bytes) -> List[str]:
    """Names ``source`` imports anywhere (in functions too) inside the repository's package:
    ``from a.b import c`` yields ``a.b`` and ``a.b.c`` (a module or not: see :func:`_import`)."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), module.__package__)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in names if name == PACKAGE or name.startswith(PACKAGE + ".")]


def _import(name: str):
    """The module ``name``, or None when ``name`` is an attribute (``from m import function``)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name == name:
            return None
        raise


def source_modules(roots: Sequence[str]) -> Dict[str, bytes]:
    """Source bytes of the modules ``roots`` and every repository module they import, by name."""
    sources: Dict[str, bytes] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        module = _import(name)
        if module is None:
            continue
        sources[name] = read_source(module)
        pending += [found for found in _imported_names(module, sources[name]) if found not in sources]
    return dict(sorted(sources.items()))


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
    """Exported artefacts, made on first use and cached under ``build/benchmark/artefacts``
    (see the module docstring for what the key covers)."""

    SUFFIX = SUFFIX

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

    @staticmethod
    def sources(kind: str, model) -> Dict[str, bytes]:
        """What an export of ``kind`` runs: the exporter's module, the model's classes' modules
        and the repository modules they import."""
        model_modules = {type(part).__module__ for part in model.modules()}
        roots = [EXPORTERS[kind][0]] + sorted(name for name in model_modules if name.startswith(PACKAGE + "."))
        return source_modules(roots)

    def key(self, kind: str, spec: ModelSpec, model, size: Tuple[int, int]) -> str:
        import torch

        sources = [name.encode() + code for name, code in self.sources(kind, model).items()]
        return _digest(
            kind, list(size), spec.score_threshold, torch.__version__, self._weights_digest(spec, model), *sources
        )[:16]

    def path(self, kind: str, spec: ModelSpec, model, size: Tuple[int, int]) -> Path:
        folder = self.cache_dir / f"{spec.name}_{size[0]}x{size[1]}_{kind}_{self.key(kind, spec, model, size)}"
        return folder / ("model" + SUFFIX[kind])

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
            raise Skip(
                f"{kind} export not cached and skipped in this mode (it takes minutes): run the full "
                "benchmark once to compile it"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        module_name, function_name = EXPORTERS[kind]
        export = getattr(importlib.import_module(module_name), function_name)
        settings = dict(min_size=size[0], max_size=size[1], score_threshold=spec.score_threshold)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporters' deprecation chatter; chapters 01-02 show it
            if kind == "torchscript":
                export(model, target, method="script", **settings)
                path = target
            else:
                source, kwargs = model, settings
                if kind == "openvino":  # converting the ONNX file takes seconds; from the model, a new export
                    try:
                        source, kwargs = self.get("onnx", context), {}
                        start = time.perf_counter()  # the ONNX export has its own entry
                    except Skip:
                        pass
                try:
                    with _quiet():  # converters print a note per op
                        path = Path(export(source, target, **kwargs))
                except ImportError as error:
                    raise Skip(f"{function_name} needs a package that is not installed: {error}") from None
        self.export_seconds[f"{spec.name} {size[0]}x{size[1]} {kind}"] = round(time.perf_counter() - start, 1)
        done.write_text(json.dumps({"file": str(path.relative_to(target.parent))}))
        self.made[memo] = path
        return path
