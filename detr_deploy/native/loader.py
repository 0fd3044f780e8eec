"""The one way this repository imports the C++ module ``detr_cpp``, without torch and without building.

Python code that runs the model through C++ (the service, the benchmark's cold-start children,
tests without torch) imports the module with :func:`load_detr_cpp`; only
:mod:`detr_deploy.native.cpp_build` compiles it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Optional, Union

from detr_deploy.paths import CPP_DIR

MODULE_NAME = "detr_cpp"


def module_filename() -> str:
    """``detr_cpp`` plus this interpreter's extension suffix, e.g. ``detr_cpp.cpython-311-x86_64-linux-gnu.so``."""
    return MODULE_NAME + sysconfig.get_config_var("EXT_SUFFIX")


def import_module_file(path: Union[str, Path], name: str = MODULE_NAME) -> ModuleType:
    """Import the extension module at ``path`` under ``name`` and register it in ``sys.modules``."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not an importable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def load_detr_cpp(module: Optional[Union[str, Path]] = None, runtime: Optional[Union[str, Path]] = None) -> ModuleType:
    """Import ``detr_cpp``: the file ``module`` if given, else the one in the runtime folder ``runtime``
    (``detr_cpp<EXT_SUFFIX>`` beside ``lib/``), else ``import detr_cpp`` from ``sys.path``, else the
    repository's build ``cpp/detr_cpp<EXT_SUFFIX>`` (``make build`` makes it).

    An already imported ``detr_cpp`` is returned as it is: an extension module cannot be loaded twice.
    """
    if MODULE_NAME in sys.modules:
        return sys.modules[MODULE_NAME]
    if module is not None:
        path = Path(module)
        if not path.is_file():
            raise RuntimeError(f"{path} not found: build it with `make build`")
        return import_module_file(path)
    if runtime is not None:
        folder = Path(runtime)
        path = folder / module_filename()
        if not path.is_file():
            found = sorted(p.name for p in folder.glob(MODULE_NAME + "*")) if folder.is_dir() else []
            raise RuntimeError(
                f"{path} not found"
                + (
                    f" (the folder holds {', '.join(found)}: built for another Python?)"
                    if found
                    else ": build the runtime folder with python -m detr_deploy.native.runtime_folder"
                )
            )
        return import_module_file(path)
    if importlib.util.find_spec(MODULE_NAME) is not None:
        return importlib.import_module(MODULE_NAME)
    path = CPP_DIR / module_filename()
    if not path.is_file():
        raise RuntimeError(
            f"the detr_cpp module is not built ({path} is missing): run `make build` "
            "or set DETR_RUNTIME to a runtime folder"
        )
    return import_module_file(path)
