"""Assemble a slim, self-contained runtime folder for the C++ detector: no torch package.

::

    python -m detr_deploy.native.runtime_folder --out build/runtime --model data/models/demo.pt

The folder holds::

    detr_cpp.cpython-311-x86_64-linux-gnu.so   the module, rpath $ORIGIN/lib
    lib/                                       exactly the shared libraries it needs, rpath $ORIGIN
    model.pt, model.json                       the artefact and its sidecar (model.pt2 for an
                                               AOTInductor package: it runs from here too)
    detr_cpp.pyi                               the module's type stubs, for editors
    example.py                                 ten lines of usage
    manifest.json                              what is in it, why, and what the target must have

The libraries are found from the binary, not from a list: ``ldd`` resolves the module's
dependency tree and every library outside the system directories comes along (with the
default torch wheel that is libtorch_cpu, libc10, torch's libgomp and, because
libtorch_cpu itself needs them, libcudart and libcupti; nothing else of CUDA). glibc,
libstdc++ and libgcc_s are the target system's, as for any manylinux wheel. The rpaths are
rewritten in place to ``$ORIGIN``-relative ones, so the folder works wherever it is copied.
The target needs Linux x86-64, the same CPython minor version, and numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from detr_deploy.cli import add_model_argument
from detr_deploy.paths import CPP_DIR, relative

__all__ = [
    "SYSTEM_LIBRARY_DIRS",
    "is_system_library",
    "RuntimeFolder",
    "ldd",
    "needed_libraries",
    "read_rpath",
    "set_rpath",
    "replace_needed",
    "assemble",
    "main",
]

# Libraries resolved under these belong to the operating system and stay there.
SYSTEM_LIBRARY_DIRS = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")
# The C runtime is never shipped, wherever it resolves from.
_C_RUNTIME = re.compile(r"^(ld-linux.*|libc|libm|libdl|libpthread|librt|libutil|libresolv)\.so")

MANIFEST = "manifest.json"
EXAMPLE = '''\
"""Detect objects with the slim runtime (needs Python {python} and numpy; Pillow for image files; not torch).
usage: python example.py IMAGE (.png, .jpg, ... or a .npy uint8 RGB array [H, W, 3])"""
import sys
from pathlib import Path
import numpy as np
here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))
import detr_cpp  # noqa: E402  (found in this folder; it finds lib/ through its rpath)
if sys.argv[1].endswith(".npy"):
    image = np.load(sys.argv[1])
else:
    from PIL import Image
    image = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
detector = detr_cpp.Detector(str(here / "{model_file}"))
found = detector.detect(image)
for (x0, y0, x1, y1), score, label in zip(found["boxes"], found["scores"], found["labels"]):
    print(f"{{detector.class_names[label]:>14s}} {{score:.3f}}  box {{x0:7.1f}} {{y0:7.1f}} {{x1:7.1f}} {{y1:7.1f}}")
'''


# ---------------------------------------------------------------------------- inspecting binaries


def ldd(binary: Path) -> List[Tuple[str, Optional[str]]]:
    """``ldd binary`` as [(needed name, resolved path or None if not found)], in load order."""
    env = {key: value for key, value in os.environ.items() if key != "LD_LIBRARY_PATH"}
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"ldd {binary} failed: {result.stderr.strip() or result.stdout.strip()}")
    found: List[Tuple[str, Optional[str]]] = []
    for line in result.stdout.splitlines():
        line = line.strip()
        match = re.match(r"^(\S+) => (not found|(\S+) \(0x[0-9a-f]+\))$", line)
        if match:
            found.append((match.group(1), match.group(3)))
        elif re.match(r"^/\S+ \(0x[0-9a-f]+\)$", line):  # the dynamic loader itself
            path = line.split()[0]
            found.append((os.path.basename(path), path))
    return found


def needed_libraries(binary: Path) -> List[str]:
    """The DT_NEEDED entries of ``binary`` (its direct dependencies), via ``readelf -d``."""
    result = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"readelf -d {binary} failed: {result.stderr.strip()}")
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", result.stdout)


def is_system_library(name: str, path: str) -> bool:
    """True for libraries the target system provides (glibc, libstdc++, ...): not shipped."""
    return (
        bool(_C_RUNTIME.match(name))
        or os.path.realpath(path).startswith(SYSTEM_LIBRARY_DIRS)
        or path.startswith(SYSTEM_LIBRARY_DIRS)
    )


# ---------------------------------------------------------------------------- rewriting rpaths

_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_SONAME, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 14, 15, 29
_PT_LOAD, _PT_DYNAMIC, _SHT_DYNSYM = 1, 2, 11


class _Elf:
    """Just enough of a 64-bit little-endian ELF file to find and patch its rpath string."""

    def __init__(self, handle):
        self.handle = handle
        header = self._read(0, 64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        phoff, shoff = struct.unpack_from("<QQ", header, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 54)
        self.segments = [struct.unpack_from("<IIQQQQQQ", self._read(phoff + i * phentsize, 56)) for i in range(phnum)]
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", self._read(shoff + i * shentsize, 64)) for i in range(shnum)]
        dynamic = [s for s in self.segments if s[0] == _PT_DYNAMIC]
        if not dynamic:
            raise ValueError("no dynamic section (a static binary?)")
        raw = self._read(dynamic[0][2], dynamic[0][5])
        self.dynamic = []
        for offset in range(0, len(raw) - 15, 16):
            tag, value = struct.unpack_from("<qQ", raw, offset)
            if tag == _DT_NULL:
                break
            self.dynamic.append((tag, value))
        strtab = [value for tag, value in self.dynamic if tag == _DT_STRTAB]
        if not strtab:
            raise ValueError("no dynamic string table")
        self.strtab = self._file_offset(strtab[0])

    def _read(self, offset: int, size: int) -> bytes:
        self.handle.seek(offset)
        return self.handle.read(size)

    def _file_offset(self, address: int) -> int:
        for kind, _, offset, vaddr, _, filesz, _, _ in self.segments:
            if kind == _PT_LOAD and vaddr <= address < vaddr + filesz:
                return address - vaddr + offset
        raise ValueError(f"address {address:#x} is in no loaded segment")

    def string(self, index: int) -> bytes:
        data = self._read(self.strtab + index, 4096)
        while b"\0" not in data:
            data += self._read(self.strtab + index + len(data), 4096)
        return data[: data.index(b"\0")]

    def string_references(self) -> List[int]:
        """Every index into the dynamic string table (dynamic entries and dynamic symbols)."""
        references = [value for tag, value in self.dynamic if tag in (_DT_NEEDED, _DT_SONAME, _DT_RPATH, _DT_RUNPATH)]
        for section in self.sections:
            if section[1] == _SHT_DYNSYM and section[9]:
                raw = self._read(section[4], section[5])
                references += [struct.unpack_from("<I", raw, i)[0] for i in range(0, len(raw), section[9])]
        return references


def read_rpath(path: Path) -> Optional[str]:
    """The DT_RUNPATH (or DT_RPATH) string of an ELF file, or None."""
    with open(path, "rb") as handle:
        elf = _Elf(handle)
        for tag, value in elf.dynamic:
            if tag in (_DT_RUNPATH, _DT_RPATH):
                return elf.string(value).decode()
    return None


def set_rpath(path: Path, rpath: str) -> Optional[str]:
    """Replace the rpath of ELF file ``path`` in place; returns the old one (None: it had none,
    nothing changed).

    Like ``chrpath``, this overwrites the string in the dynamic string table and pads it
    with NUL bytes, so nothing else in the file moves; the new rpath must therefore not be
    longer than the old one (``$ORIGIN`` and ``$ORIGIN/lib`` are shorter than any absolute
    library path). It refuses if another dynamic string shares bytes with the old rpath.
    """
    new = rpath.encode()
    with open(path, "r+b") as handle:
        elf = _Elf(handle)
        entries = [value for tag, value in elf.dynamic if tag in (_DT_RPATH, _DT_RUNPATH)]
        if not entries:
            return None
        old_strings = {index: elf.string(index) for index in entries}
        references = elf.string_references()
        for index, old in old_strings.items():
            if len(new) > len(old):
                raise ValueError(f"{path.name}: new rpath {rpath!r} is longer than the old one {old.decode()!r}")
            if any(index < other <= index + len(old) for other in references):
                raise ValueError(f"{path.name}: its rpath string is shared with another name; use patchelf instead")
        for index, old in old_strings.items():
            handle.seek(elf.strtab + index)
            handle.write(new + b"\0" * (len(old) - len(new)))
        return next(iter(old_strings.values())).decode()


def replace_needed(path: Path, old: str, new: str) -> bool:
    """Make the DT_NEEDED entry ``old`` of ELF file ``path`` name ``new`` instead, in place;
    ``new`` must already be in its dynamic string table (e.g. another NEEDED entry), so only
    the entry's string index changes and nothing moves. Returns False if ``old`` is absent."""
    with open(path, "r+b") as handle:
        elf = _Elf(handle)
        dynamic = [segment for segment in elf.segments if segment[0] == _PT_DYNAMIC][0]
        target = [
            value for tag, value in elf.dynamic if tag in (_DT_NEEDED, _DT_SONAME) and elf.string(value) == new.encode()
        ]
        changed = False
        for position, (tag, value) in enumerate(elf.dynamic):
            if tag == _DT_NEEDED and elf.string(value) == old.encode():
                if not target:
                    raise ValueError(f"{path.name}: {new!r} is not among its dynamic strings")
                handle.seek(dynamic[2] + 16 * position + 8)  # d_val of Elf64_Dyn {d_tag, d_val}
                handle.write(struct.pack("<Q", target[0]))
                changed = True
        return changed


# ---------------------------------------------------------------------------- assembling


@dataclass
class RuntimeFolder:
    """What :func:`assemble` built."""

    path: Path
    module: Path
    libraries: Dict[str, dict] = field(default_factory=dict)  # name -> {size_bytes, source, needed_by}
    system_libraries: List[str] = field(default_factory=list)  # expected on the target
    files: Dict[str, int] = field(default_factory=dict)  # relative path -> size in bytes

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def table(self) -> str:
        lines = [f"{'file':<48s} {'MB':>9s}"]
        for name, size in sorted(self.files.items(), key=lambda item: -item[1]):
            lines.append(f"{name:<48s} {size / 1e6:9.2f}")
        lines.append(f"{'total':<48s} {self.total_bytes / 1e6:9.2f}")
        return "\n".join(lines)


def _describe_source(path: str) -> str:
    """``torch/lib/libc10.so`` for a library from site-packages, else the path itself."""
    marker = os.sep + "site-packages" + os.sep
    path = os.path.normpath(path)
    return path.split(marker, 1)[1] if marker in path else path


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)  # follows symlinks: the folder holds real files
    shutil.copymode(source, target)


def _strip(path: Path) -> bool:
    """Drop the static symbol table (``strip --strip-unneeded``; the dynamic symbols that
    linking needs stay): libtorch_cpu.so goes from ~446 to ~355 MB. False if no ``strip``."""
    if shutil.which("strip") is None:
        return False
    result = subprocess.run(["strip", "--strip-unneeded", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"strip {path.name} failed: {result.stderr.strip()}")
    return True


def assemble(out, model, module: Optional[Path] = None, strip: bool = True, quiet: bool = False) -> RuntimeFolder:
    """Build the runtime folder ``out`` for artefact ``model``; see the module docstring.

    ``module`` defaults to the cppimport build (built first if needed). ``strip`` removes
    the static symbol tables of the copies (smaller; C++ backtraces lose function names).
    An existing ``out`` is replaced only if it is a previous runtime folder (it holds
    ``manifest.json``).
    """
    from detr_deploy.native import cpp_build

    out = Path(out)
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"model artefact not found: {model}")
    if module is None:
        if not cpp_build.module_is_current():
            cpp_build.build_module()
        module = cpp_build.module_path()
    module = Path(module)
    if out.exists():
        if not (out / MANIFEST).is_file() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a runtime folder made by this tool; choose another --out")
        shutil.rmtree(out)
    (out / "lib").mkdir(parents=True)

    # 1. the libraries: the module's whole dependency tree as the loader resolves it
    report = RuntimeFolder(path=out, module=out / module.name)
    resolved = ldd(module)
    missing = [name for name, path in resolved if path is None]
    if missing:
        raise RuntimeError(f"{module.name} needs libraries the loader cannot find: {', '.join(missing)}")
    shipped = {name: path for name, path in resolved if not is_system_library(name, path)}
    report.system_libraries = sorted(name for name, path in resolved if is_system_library(name, path))
    needed_by: Dict[str, List[str]] = {name: [] for name in shipped}
    for parent, path in [(module.name, str(module))] + list(shipped.items()):
        for child in needed_libraries(Path(path)):
            if child in needed_by:
                needed_by[child].append(parent)

    _copy(module, report.module)
    stripped = strip and _strip(report.module)
    set_rpath(report.module, "$ORIGIN/lib")
    for name, path in shipped.items():
        target = out / "lib" / name
        _copy(Path(path), target)
        if stripped:
            _strip(target)
        set_rpath(target, "$ORIGIN")  # e.g. libtorch_cpu's $ORIGIN/../../nvidia/cu13/lib:...
        report.libraries[name] = {
            "size_bytes": target.stat().st_size,
            "source": _describe_source(path),
            "needed_by": needed_by[name],
        }

    # 2. the model, the example, the manifest
    # an AOTInductor .pt2 needs nothing more: its compiled model links libtorch_cpu, already in
    # lib/ (detr_deploy.export.aoti.export_aoti drops its dependency on libtorch.so)
    if model.suffix not in (".pt", ".pt2"):
        raise ValueError(f"{model.name}: expected a TorchScript .pt or an AOTInductor .pt2")
    model_file = "model" + model.suffix
    _copy(model, out / model_file)
    if model.with_suffix(".json").is_file():
        _copy(model.with_suffix(".json"), out / "model.json")
    stub = CPP_DIR / "detr_cpp.pyi"  # editors read the module's API from it
    if stub.is_file():
        _copy(stub, out / stub.name)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (out / "example.py").write_text(EXAMPLE.format(python=python, model_file=model_file))

    # 3. check: from inside the folder, every non-system library resolves into lib/
    for name, path in ldd(report.module):
        if path is None:
            raise RuntimeError(f"runtime folder check failed: {name} is not found from {report.module}")
        if not is_system_library(name, path) and Path(path).resolve().parent != (out / "lib").resolve():
            raise RuntimeError(f"runtime folder check failed: {name} resolves outside the folder, to {path}")

    manifest = {
        "module": report.module.name,
        "python": python,
        "python_tag": sysconfig.get_config_var("EXT_SUFFIX"),
        "requires": ["Linux x86-64", f"CPython {python}", "numpy", "glibc/libstdc++ as new as the build machine's"],
        "libraries": report.libraries,
        "system_libraries": report.system_libraries,
        "stripped": stripped,
        "model": {"file": model_file, "source": relative(model)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for path in sorted(out.rglob("*")):
        if path.is_file():
            report.files[str(path.relative_to(out))] = path.stat().st_size
    if not quiet:
        print(report.table())
        print(
            f"runtime folder {relative(out)}: {len(report.files)} files, {report.total_bytes / 1e6:.1f} MB "
            f"(libraries from the binary: {', '.join(report.libraries)})"
        )
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.native.runtime_folder",
        description="Assemble a self-contained folder (module + the libtorch libraries it needs + model) "
        "that runs DETR from Python without the torch package.",
    )
    parser.add_argument("--out", default="build/runtime", help="folder to (re)create (default: build/runtime)")
    add_model_argument(
        parser, required=True, what="exported artefact: .pt or .pt2 (python -m detr_deploy.export [--format aoti])"
    )
    parser.add_argument("--no-strip", action="store_true", help="keep the libraries' static symbol tables")
    args = parser.parse_args(argv)
    try:
        assemble(args.out, args.model, strip=not args.no_strip)
    except (FileNotFoundError, FileExistsError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
