"""Build the C++ parts explicitly, once, and reuse them: the ``detr_cpp`` module and ``detr_cli``.

``build_module()`` compiles ``cpp/detr_cpp.cpp`` (+ ``detr_core.cpp``) with cppimport the
first time (about a minute on 2 cores) and returns the imported module; later calls find
cppimport's checksum unchanged and only import it. A rebuild happens when a source, a
header, the installed torch or this file changes. ``build_cli()`` configures and builds
the standalone program with CMake into ``build/cpp`` (make decides what is stale).

What cppimport does not do well, handled here:

* the compiler runs in a child process, so the 500 lines a failed build prints become one
  :class:`BuildError` naming the compiler's first error (the full log is kept in
  ``build/cpp/``), and cppimport's ``SystemExit`` never reaches the caller;
* a lock file left behind by a crashed or failed build is removed (cppimport's
  ``force_rebuild`` setting is ignored while file locking is on, so ``force=True`` deletes
  the old binary instead);
* a progress message is printed while the minute-long build runs.

The flags come from the installed torch (:func:`torch_build_info`), found without importing
it: the repository holds no absolute path.

Command line (``make build``)::

    python -m detr_deploy.native.cpp_build [--module | --cli] [--force] [--verbose]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Optional, Sequence

from detr_deploy.native.loader import import_module_file
from detr_deploy.paths import BUILD_DIR, CPP_DIR, REPO_ROOT, relative

__all__ = [
    "BuildError",
    "MODULE_NAME",
    "CPP_BUILD_DIR",
    "torch_build_info",
    "module_path",
    "module_is_current",
    "build_module",
    "build_cli",
    "cli_path",
    "last_build",
    "first_error",
    "main",
]

MODULE_NAME = "detr_cpp"
MODULE_SOURCE = CPP_DIR / "detr_cpp.cpp"
CPP_BUILD_DIR = BUILD_DIR / "cpp"  # CMake build tree, build logs and timings
PROGRESS_EVERY_S = 20.0


class BuildError(RuntimeError):
    """A C++ build failed. ``str()`` names the first error; ``log`` holds everything."""

    def __init__(self, message: str, log: str = "", log_path: Optional[Path] = None):
        super().__init__(message)
        self.log = log
        self.log_path = log_path


# ---------------------------------------------------------------------------- torch


@lru_cache(maxsize=1)
def torch_build_info() -> Dict[str, object]:
    """Where the installed torch keeps its headers, libraries and CMake files, and the C++
    standard and ``_GLIBCXX_USE_CXX11_ABI`` value code compiled against it must use.

    The paths come from locating the package (``importlib.util.find_spec``), the standard
    from its ``TorchConfig.cmake``; only the ABI flag needs torch itself, asked in a child
    interpreter (or read from an already imported torch) so the caller never imports it.
    """
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("the torch package is not installed in this Python environment: it provides libtorch")
    torch_dir = Path(list(spec.submodule_search_locations)[0])
    config = torch_dir / "share" / "cmake" / "Torch" / "TorchConfig.cmake"
    if not config.is_file():
        raise BuildError(f"{config} not found: this torch install ships no C++ headers/CMake files")
    match = re.search(r"CXX_STANDARD\s+(\d+)", config.read_text())
    cxx_standard = int(match.group(1)) if match else 17
    if "torch" in sys.modules:
        abi = int(sys.modules["torch"]._C._GLIBCXX_USE_CXX11_ABI)
    else:
        probe = subprocess.run(
            [sys.executable, "-c", "import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            raise BuildError("could not import torch to read its C++ ABI: " + _last_line(probe.stderr))
        abi = int(probe.stdout.strip().splitlines()[-1])
    return {
        "torch_dir": str(torch_dir),
        "include_dirs": [str(torch_dir / "include"), str(torch_dir / "include" / "torch" / "csrc" / "api" / "include")],
        "library_dir": str(torch_dir / "lib"),
        "cmake_prefix_path": str(torch_dir / "share" / "cmake"),
        "cxx_standard": cxx_standard,
        "cxx11_abi": abi,
        # files whose change must trigger a rebuild: the installed torch and this module
        "dependencies": [str(torch_dir / "version.py"), str(Path(__file__).resolve())],
    }


# ---------------------------------------------------------------------------- helpers


def first_error(log: str) -> str:
    """The compiler's (or linker's, or CMake's) first error in a build log, with the source
    line and caret gcc prints after it; absolute paths shortened to repository-relative."""
    lines = log.splitlines()
    patterns = [
        r"(fatal )?error:",  # gcc/g++: file:line:col: error: ...
        r"undefined reference to|cannot find -l|ld returned",  # linker
        r"CMake Error",  # cmake
        r"^error:|Error|ERROR",  # setuptools / anything else
    ]
    for pattern in patterns:
        for index, line in enumerate(lines):
            if re.search(pattern, line):
                if pattern.startswith("CMake"):
                    excerpt = [line] + [following for following in lines[index + 1 : index + 6] if following.strip()][
                        :3
                    ]
                elif pattern.startswith("(fatal"):
                    excerpt = [line] + [
                        following for following in lines[index + 1 : index + 3] if following.startswith(" ")
                    ]
                else:
                    excerpt = [line]
                return _shorten("\n".join(excerpt))
    return _shorten(_last_line(log)) or "(no output)"


def _map_rendered_lines(text: str, source: Path) -> str:
    """cppimport compiles ``.rendered.NAME.cpp``, the source without its ``<% %>`` block, so
    the compiler's line numbers are off by the block's length: point them at the source."""
    rendered = source.with_name(".rendered." + source.name)
    if not rendered.is_file():
        return text
    source_lines = source.read_text().splitlines()
    offset = len(source_lines) - len(rendered.read_text().splitlines())
    block_start = next((i + 1 for i, line in enumerate(source_lines) if line.strip().startswith("<%")), 0)

    def shift(line: int) -> int:
        return line + offset if line > block_start else line

    location = re.compile(r"(^|[\s/])\.rendered\." + re.escape(source.name) + r":(\d+):")
    excerpt = re.compile(r"^(\s*)(\d+)( \| )")  # gcc's "   42 | source line" after a message
    lines, in_rendered = [], False
    for line in text.splitlines(keepends=True):
        if location.search(line):
            in_rendered = True
            line = location.sub(lambda m: f"{m.group(1)}{source.name}:{shift(int(m.group(2)))}:", line)
        elif re.search(r"\S+:\d+:\d+: ", line):
            in_rendered = False  # a message about another file
        elif in_rendered and excerpt.match(line):
            match = excerpt.match(line)
            number = str(shift(int(match.group(2))))
            width = len(match.group(1)) + len(match.group(2))
            line = number.rjust(width) + line[match.end(2) :]
        lines.append(line)
    return "".join(lines)


def _shorten(text: str) -> str:
    return text.replace(str(REPO_ROOT) + os.sep, "")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run(command: List[str], label: str, verbose: bool, announce: Optional[str], env=None, cwd=None):
    """Run ``command``; print ``announce`` first, a progress line every 20 s, and (verbose)
    its output as it comes. Returns (returncode, output, seconds)."""
    if announce:
        print(announce, flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env, cwd=cwd
    )
    chunks: List[str] = []

    def reader():
        for line in process.stdout:
            chunks.append(line)
            if verbose:
                print(line, end="", flush=True)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    while True:
        try:
            process.wait(timeout=PROGRESS_EVERY_S)
            break
        except subprocess.TimeoutExpired:
            print(f"  ... still building {label} ({time.perf_counter() - start:.0f} s)", flush=True)
    thread.join()
    return process.returncode, "".join(chunks), time.perf_counter() - start


def _write_log(name: str, text: str) -> Path:
    CPP_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    path = CPP_BUILD_DIR / name
    path.write_text(text)
    return path


def _record(name: str, **info) -> None:
    CPP_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    (CPP_BUILD_DIR / f"{name}_build.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def last_build(name: str = MODULE_NAME) -> Optional[dict]:
    """What the last real (not cached) build of ``name`` ('detr_cpp' or 'detr_cli') recorded:
    ``seconds``, ``size_bytes``, ``path``; None if it never ran here."""
    path = CPP_BUILD_DIR / f"{name}_build.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------------------- module


def module_path(source: Path = MODULE_SOURCE) -> Path:
    """Where cppimport puts the compiled module: beside its source (``cpp/detr_cpp.cpython-*.so``)."""
    return source.with_name(source.stem + sysconfig.get_config_var("EXT_SUFFIX"))


def module_is_current(source: Path = MODULE_SOURCE) -> bool:
    """True when the compiled module exists and cppimport's checksum of its sources matches."""
    from cppimport.checksum import is_checksum_valid
    from cppimport.importer import setup_module_data

    return is_checksum_valid(setup_module_data(source.stem, str(source)))


def _clear_stale_lock(lock: Path) -> None:
    """Remove cppimport's lock file if no process holds it (left by a failed/killed build)."""
    if not lock.exists():
        return
    import filelock

    try:
        with filelock.FileLock(str(lock), timeout=0):
            pass
    except filelock.Timeout:
        return  # another process is building right now; cppimport will wait for it
    try:
        lock.unlink()
    except FileNotFoundError:
        pass


# Runs in the child interpreter: build with cppimport, turn its SystemExit into an exit code.
_CHILD = """
import logging, sys
sys.path.insert(0, sys.argv[3])
import cppimport
if sys.argv[4] == "1":
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
try:
    cppimport.build_filepath(sys.argv[1], fullname=sys.argv[2])
except SystemExit as exit:  # what setuptools raises when the compiler fails
    print("error: build failed:", exit, file=sys.stderr)
    sys.exit(1)
"""


def _load(path: Path, name: str, rebuilt: bool) -> ModuleType:
    loaded = sys.modules.get(name)
    if loaded is not None:
        if rebuilt and Path(getattr(loaded, "__file__", "")).resolve() == path.resolve():
            warnings.warn(
                f"{name} was rebuilt, but this Python process had already imported the previous build "
                "(an extension module cannot be reloaded): restart it to use the new one",
                stacklevel=3,
            )
        return loaded
    return import_module_file(path, name)


def build_module(verbose: bool = False, force: bool = False, source: Path = MODULE_SOURCE) -> ModuleType:
    """Build (only if needed) and import the cppimport module; returns it.

    ``verbose`` streams the compiler's output; ``force`` rebuilds even when up to date.
    Raises :class:`BuildError` (with the first compiler error) if the build fails.
    """
    source = Path(source).resolve()
    name = source.stem
    target = module_path(source)
    lock = Path(str(target) + ".lock")
    _clear_stale_lock(lock)
    if force and target.exists():
        target.unlink()  # cppimport ignores settings['force_rebuild'] while file locking is on
    rebuilt = False
    if not module_is_current(source):
        env = dict(os.environ, LC_ALL="C")  # plain ASCII quotes in compiler messages
        env.pop("CPPIMPORT_RELEASE_MODE", None)  # release mode would skip the build
        command = [sys.executable, "-c", _CHILD, str(source), name, str(REPO_ROOT), "1" if verbose else "0"]
        announce = f"Building {name} with cppimport (libtorch headers: up to a minute on 2 cores, once) ..."
        code, log, seconds = _run(command, name, verbose, announce, env=env, cwd=str(source.parent))
        log = _map_rendered_lines(log, source)
        log_path = _write_log(f"{name}_build.log", log)
        if code != 0 or not module_is_current(source):
            _clear_stale_lock(lock)
            raise BuildError(
                f"building {relative(source)} failed:\n{first_error(log)}\n"
                f"(full log: {relative(log_path)}; build_module(verbose=True) shows it as it runs)",
                log=log,
                log_path=log_path,
            ) from None
        size = target.stat().st_size
        _record(name, seconds=round(seconds, 1), size_bytes=size, path=relative(target))
        print(f"built {relative(target)} ({size / 1e6:.2f} MB) in {seconds:.0f} s", flush=True)
        rebuilt = True
    try:
        return _load(target, name, rebuilt)
    except ImportError as error:
        if rebuilt or force:
            raise BuildError(f"{relative(target)} was built but does not import: {error}") from None
        # e.g. built for another Python: rebuild once
        return build_module(verbose=verbose, force=True, source=source)


# ---------------------------------------------------------------------------- CLI


def cli_path() -> Path:
    return CPP_BUILD_DIR / "detr_cli"


def build_cli(verbose: bool = False, force: bool = False) -> Path:
    """Configure (CMake, ``find_package(Torch)`` pointed at the installed wheel) and build
    ``detr_cli`` into ``build/cpp``; returns the program's path. Needs the system packages
    of ``scripts/install_system_deps.sh`` (OpenCV, CMake)."""
    import shutil

    if shutil.which("cmake") is None:
        raise BuildError("cmake not found: run scripts/install_system_deps.sh")
    info = torch_build_info()
    if force and CPP_BUILD_DIR.exists():
        for stale in (CPP_BUILD_DIR / "CMakeCache.txt", cli_path()):
            if stale.exists():
                stale.unlink()
    CPP_BUILD_DIR.mkdir(parents=True, exist_ok=True)
    program = cli_path()
    existed = program.exists()
    configure = [
        "cmake",
        "-S",
        str(CPP_DIR),
        "-B",
        str(CPP_BUILD_DIR),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={info['cmake_prefix_path']}",
        f"-DDETR_CXX11_ABI={info['cxx11_abi']}",
    ]
    build = ["cmake", "--build", str(CPP_BUILD_DIR), "--target", "detr_cli", "--parallel", str(os.cpu_count() or 2)]
    announce = None
    if not existed:
        announce = "Building detr_cli with CMake (libtorch headers: up to a minute on 2 cores, once) ..."
    log = ""
    seconds = 0.0
    for step, command in (("configure", configure), ("build", build)):
        code, output, took = _run(command, "detr_cli", verbose, announce)
        announce = None
        log += f"$ {' '.join(command)}\n{output}\n"
        seconds += took
        if code != 0:
            log_path = _write_log("detr_cli_build.log", log)
            hint = ""
            if "OpenCV" in output or "opencv" in output:
                hint = "\n(install the system packages with scripts/install_system_deps.sh)"
            raise BuildError(
                f"CMake {step} of detr_cli failed:\n{first_error(output)}{hint}\n(full log: {relative(log_path)})",
                log=log,
                log_path=log_path,
            ) from None
    _write_log("detr_cli_build.log", log)
    if not program.is_file():
        raise BuildError(f"CMake finished but {relative(program)} is missing", log=log)
    if not existed or seconds > 5:
        _record("detr_cli", seconds=round(seconds, 1), size_bytes=program.stat().st_size, path=relative(program))
        print(f"built {relative(program)} ({program.stat().st_size / 1e6:.2f} MB) in {seconds:.0f} s", flush=True)
    return program


# ---------------------------------------------------------------------------- main


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.native.cpp_build",
        description="Build (or reuse) the detr_cpp Python module (cppimport) and the detr_cli program (CMake).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--module", action="store_true", help="only the cppimport module")
    which.add_argument("--cli", action="store_true", help="only the CMake program")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--verbose", action="store_true", help="show compiler output")
    args = parser.parse_args(argv)
    try:
        if not args.cli:
            start = time.perf_counter()
            module = build_module(verbose=args.verbose, force=args.force)
            size = Path(module.__file__).stat().st_size
            print(
                f"{MODULE_NAME}: {relative(module.__file__)} "
                f"({size / 1e6:.2f} MB, ready in {time.perf_counter() - start:.1f} s)"
            )
        if not args.module:
            start = time.perf_counter()
            program = build_cli(verbose=args.verbose, force=args.force)
            print(
                f"detr_cli: {relative(program)} ({program.stat().st_size / 1e6:.2f} MB, "
                f"ready in {time.perf_counter() - start:.1f} s)"
            )
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
