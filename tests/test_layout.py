"""The package's import rules (CONTRIBUTING.md), checked on the source and in a torch-free interpreter.

* ``serve/``, ``native/`` and ``batch/`` never import torch, directly or through another detr_deploy module: the
  service image and the runtime folder carry no torch package.
* ``model/`` imports nothing of training, data, export, serving or benchmarking: a model is usable alone.
* nothing outside ``bench/`` imports ``bench/``: measuring sits on top of everything it measures.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

from detr_deploy.paths import REPO_ROOT

from torch_free import BLOCK_TORCH

PACKAGE = REPO_ROOT / "detr_deploy"
TORCH_PACKAGES = {"torch", "torchvision"}
TORCH_FREE = ("serve", "native", "batch")
# subpackage -> subpackages it must not import
FORBIDDEN = {
    "model": {"data", "train", "export", "native", "serve", "bench"},
    "data": {"train", "export", "native", "serve", "bench"},
    "export": {"train", "bench"},
    "serve": {"model", "data", "train", "export", "bench"},
    "native": {"model", "data", "train", "export", "serve", "bench"},
    "train": {"export", "native", "serve", "bench"},
    "batch": {"model", "data", "train", "export", "serve", "bench"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_names(node: ast.AST) -> Set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        if node.level:
            raise AssertionError(f"line {node.lineno}: relative import; the package uses absolute imports")
        return {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return set()


def imported_modules(path: Path, when_imported_only: bool = False) -> Set[str]:
    """Every module an import statement in ``path`` names; with ``when_imported_only``, only those that
    run when the module is imported (not the ones inside functions)."""
    names: Set[str] = set()
    todo = [ast.parse(path.read_text(), str(path))]
    while todo:
        node = todo.pop()
        names |= _import_names(node)
        for child in ast.iter_child_nodes(node):
            if not (when_imported_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))):
                todo.append(child)
    return names


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


@pytest.fixture(scope="module")
def import_graph() -> Dict[str, Set[str]]:
    """module -> every module it names in an import statement, wherever the statement is."""
    return {name: imported_modules(path) for name, path in MODULES.items()}


@pytest.fixture(scope="module")
def import_time_graph() -> Dict[str, Set[str]]:
    """module -> the modules importing it imports."""
    return {name: imported_modules(path, when_imported_only=True) for name, path in MODULES.items()}


def local_imports(imports: Set[str], graph: Dict[str, Set[str]]) -> Set[str]:
    return {name for name in imports if name in graph}


def subpackage(module: str) -> str:
    """``serve`` for ``detr_deploy.serve.service``; "" for a top-level module such as ``detr_deploy.paths``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""


def test_the_graph_sees_every_module(import_graph):
    assert {"detr_deploy.serve.service", "detr_deploy.native.loader", "detr_deploy.model.detr"} <= set(import_graph)
    assert "torch" in import_graph["detr_deploy.model.detr"]  # the parser finds what is there


@pytest.mark.parametrize("package", TORCH_FREE)
def test_torch_free_packages_reach_no_torch(import_graph, import_time_graph, package):
    """Code in the package never imports torch, not even inside a function, and importing it imports
    nothing that does."""
    start = {name for name in import_graph if subpackage(name) == package}
    seen, todo = set(), [(name, import_graph) for name in start]
    while todo:
        name, graph = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        torch_imports = {imported for imported in graph[name] if imported.split(".")[0] in TORCH_PACKAGES}
        assert not torch_imports, f"{name} (reached from detr_deploy.{package}) imports {sorted(torch_imports)}"
        for imported in local_imports(graph[name], graph):
            todo.append((imported, import_graph if subpackage(imported) == package else import_time_graph))
    assert start <= seen


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_subpackages_import_only_what_they_may(import_graph, package):
    for name, imports in import_graph.items():
        if subpackage(name) != package:
            continue
        for imported in local_imports(imports, import_graph):
            assert subpackage(imported) not in FORBIDDEN[package], f"{name} imports {imported}"


def test_nothing_outside_bench_imports_bench(import_graph):
    for name, imports in import_graph.items():
        if subpackage(name) != "bench":
            assert not [i for i in imports if i.startswith("detr_deploy.bench")], name


def test_torch_free_modules_import_with_torch_blocked(import_graph):
    modules = sorted(name for name in import_graph if subpackage(name) in TORCH_FREE and "__main__" not in name)
    script = BLOCK_TORCH + "import importlib\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-I", "-c", script, *modules], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
