"""The slim runtime folder (``python -m detr_deploy.native.runtime_folder``): self-contained and relocatable.

The folder is assembled once, then *moved* to another directory (so any path baked in at
assembly time would break), and used from a third working directory by an interpreter in
which ``import torch`` is impossible.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from detr_deploy.native import cpp_build, runtime_folder

from torch_free import BLOCK_TORCH

LIBRARY_DIR = Path(cpp_build.torch_build_info()["library_dir"])


@pytest.fixture(scope="module")
def assembled_folder(detr_cpp, small_artefact, tmp_path_factory):
    """(report, folder): assembled in one place, then moved elsewhere."""
    assembled = tmp_path_factory.mktemp("assembled") / "runtime"
    report = runtime_folder.assemble(assembled, small_artefact, quiet=True)
    moved = tmp_path_factory.mktemp("moved") / "detr_runtime"
    shutil.move(str(assembled), str(moved))
    assert not assembled.exists()
    return report, moved


USE_FOLDER = (
    BLOCK_TORCH
    + """
import json
import numpy as np
folder, image_path = sys.argv[1:3]
sys.path.insert(0, folder)
import detr_cpp
detector = detr_cpp.Detector(folder + "/model.pt", optimize=False)
found = detector.detect(np.load(image_path))
maps = open("/proc/self/maps").read()
loaded = sorted({line.split()[-1] for line in maps.splitlines() if ".so" in line.split()[-1]})
print(json.dumps({"module": detr_cpp.__file__, "loaded": loaded, "torch": "torch" in sys.modules,
                  **{key: value.tolist() for key, value in found.items()}}))
"""
)


def _clean_env():
    env = {key: value for key, value in os.environ.items() if key not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    return env


def _use_folder(script_text: str, folder: Path, image: np.ndarray, tmp_path: Path, cwd: Optional[Path] = None) -> dict:
    """Run ``script_text`` (USE_FOLDER or a variant) on ``image`` against ``folder`` in a clean, torch-free
    interpreter; returns what it printed, after checking it ran and never imported torch."""
    np.save(tmp_path / "image.npy", image)
    script = tmp_path / "use_folder.py"
    script.write_text(script_text)
    result = subprocess.run(
        [sys.executable, "-I", str(script), str(folder), str(tmp_path / "image.npy")],
        capture_output=True,
        text=True,
        cwd=cwd or tmp_path,
        env=_clean_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout.strip().splitlines()[-1])
    assert output["torch"] is False
    return output


def test_folder_holds_exactly_what_the_module_needs(assembled_folder):
    report, folder = assembled_folder
    names = sorted(path.name for path in (folder / "lib").iterdir())
    assert names == sorted(report.libraries)
    assert {"libtorch_cpu.so", "libc10.so"} <= set(names)
    # nothing of torch's Python bindings, of libtorch_cuda or of the big CUDA libraries
    for unwanted in ("libtorch_python", "libtorch_cuda", "libtorch.so", "libc10_cuda", "cublas", "cudnn", "nccl"):
        assert not [name for name in names if unwanted in name], unwanted
    # every shipped library is a real dependency: the module needs it directly or through another
    for name, info in report.libraries.items():
        assert info["needed_by"], f"{name} shipped but nothing needs it"
    # CUDA: only what libtorch_cpu.so itself links (runtime and profiler), per its NEEDED entries
    cuda = {name for name in names if "cuda" in name or "cupti" in name}
    assert cuda == {
        name
        for name in runtime_folder.needed_libraries(LIBRARY_DIR / "libtorch_cpu.so")
        if "cuda" in name or "cupti" in name
    }
    assert not [name for name in names if name.startswith(("libc.so", "libstdc++", "libm.so", "ld-linux"))]
    assert {"model.pt", "example.py", "manifest.json", "detr_cpp.pyi", report.module.name} <= {
        p.name for p in folder.iterdir()
    }
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["module"] == report.module.name and set(manifest["libraries"]) == set(names)
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert total == report.total_bytes


def test_rpaths_are_origin_relative(assembled_folder):
    _, folder = assembled_folder
    module = next(folder.glob("detr_cpp*.so"))
    assert runtime_folder.read_rpath(module) == "$ORIGIN/lib"
    for library in (folder / "lib").iterdir():
        assert runtime_folder.read_rpath(library) in (None, "$ORIGIN"), library.name
    for name, path in runtime_folder.ldd(module):
        assert path is not None, f"{name} not found"
        if not runtime_folder.is_system_library(name, path):
            assert Path(path).parent == folder / "lib", f"{name} resolves to {path}"


def test_folder_runs_without_torch_from_another_directory(
    assembled_folder, detr_cpp, small_artefact, test_images, tmp_path
):
    _, folder = assembled_folder
    image = test_images[0]
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    output = _use_folder(USE_FOLDER, folder, image, tmp_path, cwd=elsewhere)
    assert Path(output["module"]).parent == folder
    torch_libraries = [path for path in output["loaded"] if "libtorch" in path or "libc10" in path]
    assert torch_libraries and all(Path(path).parent == folder / "lib" for path in torch_libraries), torch_libraries
    expected = detr_cpp.Detector(small_artefact, optimize=False).detect(image)
    np.testing.assert_allclose(np.array(output["boxes"], np.float32), expected["boxes"], atol=1e-3)
    np.testing.assert_allclose(np.array(output["scores"], np.float32), expected["scores"], atol=1e-5)
    assert output["labels"] == expected["labels"].tolist()


def test_example_script_runs(assembled_folder, test_images, tmp_path):
    _, folder = assembled_folder
    example = (folder / "example.py").read_text()
    code_lines = [line for line in example.splitlines() if line.strip() and not line.startswith(('"""', "usage"))]
    assert len(code_lines) <= 16
    np.save(tmp_path / "image.npy", test_images[0])
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            BLOCK_TORCH + "import runpy; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
            str(folder / "example.py"),
            str(tmp_path / "image.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 25  # the small model's 25 queries, all kept at threshold 0
    assert all(" box " in line for line in lines)


def test_command_line_prints_total_size(detr_cpp, small_artefact, tmp_path, capsys):
    out = tmp_path / "rt"
    assert runtime_folder.main(["--out", str(out), "--model", str(small_artefact), "--no-strip"]) == 0
    printed = capsys.readouterr().out
    assert "total" in printed and "MB" in printed and "libtorch_cpu.so" in printed
    assert json.loads((out / "manifest.json").read_text())["stripped"] is False
    # re-running replaces its own folder, but never a folder it did not make
    assert runtime_folder.main(["--out", str(out), "--model", str(small_artefact)]) == 0
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    assert runtime_folder.main(["--out", str(other), "--model", str(small_artefact)]) == 1
    assert (other / "data.txt").read_text() == "keep me"
    assert runtime_folder.main(["--out", str(tmp_path / "x"), "--model", str(tmp_path / "missing.pt")]) == 1


def test_set_rpath_refuses_to_grow(tmp_path, detr_cpp):
    copy = tmp_path / "module.so"
    shutil.copyfile(detr_cpp.__file__, copy)
    old = runtime_folder.read_rpath(copy)
    with pytest.raises(ValueError, match="longer"):
        runtime_folder.set_rpath(copy, "x" * (len(old) + 1))
    assert runtime_folder.set_rpath(copy, "$ORIGIN") == old
    assert runtime_folder.read_rpath(copy) == "$ORIGIN"
    with pytest.raises(ValueError, match="ELF"):
        runtime_folder.read_rpath(Path(__file__))


def test_folder_runs_an_aotinductor_package_without_torch(assembled_folder, detr_cpp, test_images, tmp_path):
    """The same folder runs a .pt2: its compiled model needs libtorch_cpu (in lib/), not
    libtorch.so (export_aoti rewrites that dependency), and no torch Python package."""
    from detr_deploy.export.aoti import demo_aoti

    _, folder = assembled_folder
    package = demo_aoti()
    copy = tmp_path / "bundle"
    shutil.copytree(folder, copy)
    shutil.copyfile(package, copy / "model.pt2")
    shutil.copyfile(package.with_suffix(".json"), copy / "model.json")
    image = test_images[0]
    output = _use_folder(USE_FOLDER.replace('"/model.pt", optimize=False', '"/model.pt2"'), copy, image, tmp_path)
    assert not [path for path in output["loaded"] if path.endswith("/libtorch.so")]
    expected = detr_cpp.Detector(package).detect(image)
    np.testing.assert_allclose(np.array(output["boxes"], np.float32), expected["boxes"], atol=1e-4)
    assert output["labels"] == expected["labels"].tolist()
