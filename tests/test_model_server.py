"""The external backend against a real model server, and against servers that speak plain KServe v2.

* Triton Inference Server for real: the ``tritonserver`` of the ``nvidia-pytriton`` wheel in the
  side environment ``build/triton-env`` (``bash scripts/triton_env.sh``), serving a repository
  written with ``--backend python`` from the small test artefact (its ``model.py`` runs the
  artefact with ``detr_cpp``). The external service must answer exactly what the embedded one
  answers, with binary tensors and in JSON; a model that failed to load, an unknown model and a
  request the model refuses become the service's 503 and 502. Without the side environment, or
  when the server does not start, these tests are skipped with the reason.
* ``model.py`` itself, run here with a stand-in for the backend's ``triton_python_backend_utils``:
  with ``detr_cpp``, with TorchScript when ``detr_cpp`` does not load, and refusing to load when
  neither can run.
* :class:`PlainKServe`, :class:`FakeKServe` behaving like MLServer: no binary tensor extension,
  no ``/config``, ``[N, 1]`` outputs. The client must choose JSON by itself, accept the columns
  and take the class names from the artefact's metadata.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import types
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
import torch

from detr_deploy.export import model_repository
from detr_deploy.export.artefact import sha256_of
from detr_deploy.paths import REPO_ROOT
from detr_deploy.serve.kserve import KSERVE_INPUTS, KSERVE_OUTPUTS, ExternalBackend, read_metadata_file
from detr_deploy.serve.settings import ServiceError, Settings

from conftest import SMALL_CLASSES
from test_service import FakeKServe, ServiceProcess, assert_identical, one_thread, png_bytes

TRITON_ENV = REPO_ROOT / "build" / "triton-env"
MODEL_NAME = "pic2card_detr"
UNLOADABLE = "unloadable"  # model.py without detr_cpp, and the server has no torch: fails to load
START_TIMEOUT_S = 180
KSERVE_LOGGER = "detr_deploy.serve.kserve"


# ---------------------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="session")
def detr_cpp_path(detr_cpp) -> Path:
    return Path(detr_cpp.__file__)


@pytest.fixture(scope="session")
def reference(detr_cpp, small_artefact):
    """The embedded backend's detections: detr_cpp on the saved graph (unoptimised), one intra-op thread."""
    detector = detr_cpp.Detector(str(small_artefact), optimize=False)

    def detect(image: np.ndarray, score_threshold: Optional[float] = None) -> dict:
        with one_thread():  # torch and detr_cpp share libtorch's thread pool
            return detector.detect(image, score_threshold=score_threshold)

    return detect


@pytest.fixture(scope="session")
def python_repository(small_artefact, detr_cpp_path, tmp_path_factory):
    """A ``--backend python`` repository: the model, and one that cannot load in the server."""
    root = tmp_path_factory.mktemp("python_repository")
    model_repository.generate(small_artefact, root, name=UNLOADABLE, backend="python")
    return model_repository.generate(
        small_artefact, root, name=MODEL_NAME, backend="python", detr_cpp=detr_cpp_path, num_threads=1, optimize=False
    )


# ---------------------------------------------------------------------------- the generated Python backend


def test_python_backend_repository_files(small_artefact, detr_cpp_path, tmp_path, capsys):
    out = tmp_path / "repo"
    base = ["--model", str(small_artefact), "--out", str(out)]
    arguments = base + ["--name", "cards", "--backend", "python"]
    assert model_repository.main(arguments + ["--detr-cpp", str(detr_cpp_path), "--threads", "2", "--no-optimize"]) == 0
    assert f"runs it with {detr_cpp_path}" in capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["cards/1/model.json", "cards/1/model.pt", "cards/1/model.py", "cards/config.pbtxt"]

    config = model_repository.read_config(out / "cards")
    assert (config["name"], config["backend"], config["max_batch_size"]) == ("cards", "python", 0)
    assert "platform" not in config
    # the tensors are the service's contract, as for the PyTorch backend
    pytorch = model_repository.model_config("cards", {}, "")
    assert (config["input"], config["output"]) == (pytorch["input"], pytorch["output"])
    assert [t["name"] for t in config["input"]] == [name for name, _ in KSERVE_INPUTS]
    assert [t["name"] for t in config["output"]] == [name for name, _ in KSERVE_OUTPUTS]
    sidecar = json.loads(small_artefact.with_suffix(".json").read_text())
    parameters = {key: model_repository.config_parameter(config, key) for key in ("detr_cpp", "source_sha256")}
    assert parameters == {"detr_cpp": str(detr_cpp_path.resolve()), "source_sha256": sha256_of(small_artefact)}
    assert model_repository.config_parameter(config, "detr_num_threads") == "2"
    assert model_repository.config_parameter(config, "detr_optimize") == "0"
    assert json.loads(model_repository.config_parameter(config, "detr_metadata"))["class_names"] == SMALL_CLASSES

    # the artefact and its sidecar unchanged; model.py the generator's source, clean by the project's lint rules
    assert (out / "cards/1/model.pt").read_bytes() == small_artefact.read_bytes()
    assert json.loads((out / "cards/1/model.json").read_text()) == sidecar
    assert (out / "cards/1/model.py").read_text() == model_repository.PYTHON_MODEL_SOURCE
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--config", str(REPO_ROOT / "pyproject.toml"), "-"],
        input=model_repository.PYTHON_MODEL_SOURCE,
        capture_output=True,
        text=True,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr

    # defaults: the build in cpp/, libtorch's threads, optimised; "none": TorchScript only
    assert model_repository.main(base + ["--name", "plain", "--backend", "python"]) == 0
    plain = model_repository.read_config(out / "plain")
    assert model_repository.config_parameter(plain, "detr_cpp") == str(model_repository.default_detr_cpp() or "")
    assert [model_repository.config_parameter(plain, k) for k in ("detr_num_threads", "detr_optimize")] == ["", "1"]
    assert model_repository.main(base + ["--name", "ts", "--backend", "python", "--detr-cpp", "none"]) == 0
    assert model_repository.config_parameter(model_repository.read_config(out / "ts"), "detr_cpp") == ""

    # the PyTorch backend stays the default and refuses the Python backend's options
    with pytest.raises(SystemExit):
        model_repository.main(base + ["--threads", "2"])
    assert "need --backend python" in capsys.readouterr().err
    assert model_repository.main(arguments + ["--detr-cpp", str(tmp_path / "missing.so")]) == 1
    assert "missing.so not found" in capsys.readouterr().err
    with pytest.raises(ValueError, match="backend must be one of pytorch, python"):
        model_repository.generate(small_artefact, out, backend="onnx")


class FakeTensor:
    def __init__(self, name: str, array: np.ndarray):
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class FakeResponse:
    def __init__(self, output_tensors, error=None):
        self.output_tensors, self.error = output_tensors, error


class FakeTritonError(Exception):
    def message(self) -> str:
        return str(self)


def fake_backend_utils(log: list) -> types.ModuleType:
    """What ``model.py`` uses of ``triton_python_backend_utils``, which only exists in Triton's stub."""
    utils = types.ModuleType("triton_python_backend_utils")
    utils.Tensor, utils.InferenceResponse, utils.TritonError = FakeTensor, FakeResponse, FakeTritonError
    utils.get_input_tensor_by_name = lambda request, name: next((t for t in request if t.name() == name), None)
    utils.Logger = types.SimpleNamespace(log_info=lambda text: log.append(("info", text)))
    utils.Logger.log_warn = lambda text: log.append(("warn", text))
    return utils


@contextlib.contextmanager
def python_backend_model(repository, monkeypatch, log: list):
    """``model.py`` of ``repository`` imported as the stub imports it; torch's thread count restored after."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_backend_utils(log))
    spec = importlib.util.spec_from_file_location("generated_model", repository.python_model_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        yield module
    finally:
        torch.set_num_threads(threads)


def initialized(module, repository, config: dict):
    model = module.TritonPythonModel()
    as_json = dict(config, parameters={p["key"]: p["value"] for p in config["parameters"]})  # Triton's JSON form
    model.initialize(
        {
            "model_config": json.dumps(as_json),
            "model_repository": str(repository.config_path.parent),
            "model_version": "1",
        }
    )
    return model


def with_parameter(config: dict, key: str, value: str) -> dict:
    others = [p for p in config["parameters"] if p["key"] != key]
    return dict(config, parameters=others + [{"key": key, "value": {"string_value": value}}])


def as_request(image: np.ndarray, threshold: float) -> list:
    return [FakeTensor("IMAGE__0", image), FakeTensor("SCORE_THRESHOLD__1", np.array([threshold], np.float32))]


def test_python_backend_model_runs_detr_cpp_else_torchscript(
    python_repository, reference, test_images, monkeypatch, detr_cpp_path, tmp_path
):
    threshold = float(np.median(reference(test_images[2])["scores"]))
    requests = [
        as_request(test_images[2], -1.0),
        as_request(test_images[2], threshold),
        as_request(test_images[3], -1.0),
    ]
    expected = [reference(test_images[2]), reference(test_images[2], threshold), reference(test_images[3])]
    bad = as_request(np.zeros((0, 5, 3), np.uint8), -1.0)
    config = python_repository.config
    artefact = python_repository.model_path
    log = []
    with python_backend_model(python_repository, monkeypatch, log) as module:
        for settings, runtime in ((config, "detr_cpp"), (with_parameter(config, "detr_cpp", ""), "torchscript")):
            model = initialized(module, python_repository, settings)
            infos = [text for level, text in log if level == "info"]
            assert model.runner.name == runtime and infos[-1].startswith(f"{artefact} runs with {runtime} (Python")
            responses = model.execute(requests[:2] + [bad] + requests[2:])
            assert len(responses) == 4 and responses[2].output_tensors == [] and responses[2].error is not None
            for response, wanted in zip(responses[:2] + responses[3:], expected):
                assert response.error is None
                assert [t.name() for t in response.output_tensors] == [name for name, _ in KSERVE_OUTPUTS]
                found = dict(zip(("boxes", "scores", "labels"), (t.as_numpy() for t in response.output_tensors)))
                assert_identical(found, wanted)
        warnings = [text for level, text in log if level == "warn"]
        assert any("no detr_cpp path configured); running" in text for text in warnings), warnings
        runtime_folder = tmp_path / "runtime"  # the module as a runtime folder holds it
        runtime_folder.mkdir()
        (runtime_folder / detr_cpp_path.name).symlink_to(detr_cpp_path)
        assert (
            initialized(module, python_repository, with_parameter(config, "detr_cpp", str(runtime_folder))).runner.name
            == "detr_cpp"
        )

        monkeypatch.setitem(sys.modules, "torch", None)  # as in the server's environment: no torch
        missing = with_parameter(config, "detr_cpp", str(detr_cpp_path) + "x")
        with pytest.raises(RuntimeError, match=r"not found\); TorchScript needs torch"):
            initialized(module, python_repository, missing)


# ---------------------------------------------------------------------------- Triton, for real


def free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class TritonServer:
    """``tritonserver`` from the side environment, started by ``scripts/tritonserver.sh`` (which
    sets up what the server needs outside pytriton: backend folder, PATH, LD_LIBRARY_PATH), in its
    own process group, on ports the OS picked."""

    def __init__(self, repository: Path, log_path: Path, environment: Path = TRITON_ENV):
        if not (environment / ".installed").is_file():
            raise RuntimeError(f"no Triton side environment in {environment}: run `bash scripts/triton_env.sh`")
        libdir = subprocess.run(
            [str(environment / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True,
            text=True,
            check=True,
        )
        self.libdir = libdir.stdout.strip()  # where the stub's libpython must come from
        self.env = dict(os.environ, TRITON_ENV=str(environment))
        self.repository, self.log_path = repository, log_path
        self.process: Optional[subprocess.Popen] = None

    def start(self, attempts: int = 3) -> "TritonServer":
        for _ in range(attempts):  # another process may take a port between choosing and binding it
            self.http_port, grpc_port, metrics_port = free_ports(3)
            self.url = f"http://127.0.0.1:{self.http_port}"
            command = [
                "bash",
                str(REPO_ROOT / "scripts" / "tritonserver.sh"),
                f"--model-repository={self.repository}",
                "--exit-on-error=false",  # serve the models that load; the unloadable one is tested too
                "--http-address=127.0.0.1",
                f"--http-port={self.http_port}",
                "--grpc-address=127.0.0.1",
                f"--grpc-port={grpc_port}",
                "--metrics-address=127.0.0.1",
                f"--metrics-port={metrics_port}",
            ]
            with open(self.log_path, "w") as log:
                self.process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
                )
            started = time.time()
            # live once every model has been tried (the server opens HTTP after loading them)
            while http_status(self.url + "/v2/health/live") != 200:
                if self.process.poll() is not None or time.time() - started > START_TIMEOUT_S:
                    break
                time.sleep(0.2)
            else:
                return self
            self.stop()
            if "already in use" not in self.log():
                break
        raise RuntimeError(f"tritonserver did not start (exit {self.process.poll()}):\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def loaded_libraries(self) -> list:
        """(command name, shared libraries mapped) of each process in the server's process group:
        the server and its Python-backend stubs."""
        found = []
        for maps in Path("/proc").glob("[0-9]*/maps"):
            with contextlib.suppress(OSError, ValueError):
                if os.getpgid(int(maps.parent.name)) == self.process.pid:
                    paths = {line.split()[-1] for line in maps.read_text().splitlines() if ".so" in line}
                    found.append(((maps.parent / "comm").read_text().strip(), paths))
        return found

    def stop(self):
        """SIGTERM to the process group (the server and its stubs), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session")
def triton(python_repository, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    try:
        server = TritonServer(python_repository.root, log_path).start()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"real model server unavailable: {error}")
    try:
        ready = http_status(f"{server.url}/v2/models/{MODEL_NAME}/ready")
        if ready != 200:
            pytest.skip(f"tritonserver started but {MODEL_NAME} is not ready ({ready}):\n{server.log()[-3000:]}")
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None


@pytest.fixture(scope="session")
def embedded_service(small_artefact, detr_cpp_path, tmp_path_factory):
    service = ServiceProcess(
        tmp_path_factory.mktemp("embedded"),
        {"DETR_BACKEND": "embedded", "DETR_MODEL": str(small_artefact), "DETR_OPTIMIZE": "0"},
    )
    yield service
    assert service.stop()["exit"] == 0


def external_service(folder: Path, server_url: str, **env) -> ServiceProcess:
    return ServiceProcess(folder, {"DETR_BACKEND": "external", "DETR_MODEL_SERVER_URL": server_url, **env})


def test_real_triton_serves_the_python_backend_repository(triton):
    log = triton.log()
    assert f"{MODEL_NAME}/1/model.pt runs with detr_cpp (Python 3." in log  # not the TorchScript fallback
    assert ", numpy 1." in log and "inputs are garbled" not in log
    # the stub runs on the side environment's own libpython, not the system's
    stubs = [paths for name, paths in triton.loaded_libraries() if name.startswith("triton_python")]
    assert stubs, [name for name, _ in triton.loaded_libraries()]
    for paths in stubs:
        libpython = [path for path in paths if "/libpython3" in path]
        assert libpython and all(path.startswith(triton.libdir) for path in libpython), libpython
    assert "TorchScript needs torch" in log  # the unloadable model's reason, in the server's log
    status = http_status(f"{triton.url}/v2/models/{UNLOADABLE}/ready")
    assert status == 400  # Triton's answer for a model that did not load
    with urllib.request.urlopen(f"{triton.url}/v2", timeout=10) as response:
        assert "binary_tensor_data" in json.loads(response.read())["extensions"]


def test_real_triton_answers_like_the_embedded_backend(triton, embedded_service, test_images, tmp_path):
    with contextlib.ExitStack() as stack:
        binary = external_service(tmp_path / "binary", triton.url)
        stack.callback(binary.stop)
        plain_json = external_service(tmp_path / "json", triton.url, DETR_MODEL_SERVER_BINARY="0")
        stack.callback(plain_json.stop)
        for service, uses_binary in ((binary, True), (plain_json, False)):
            status, _, health = service.request("GET", "/health")
            assert status == 200 and health["binary_tensors"] is uses_binary, health
            assert health["metadata"]["class_names"] == SMALL_CLASSES
        for image in test_images[2:]:
            data = png_bytes(image)
            status, _, local = embedded_service.detect(data)
            assert status == 200 and len(local["detections"]) > 0, local
            for service in (binary, plain_json):
                status, _, answer = service.detect(data)
                assert status == 200, answer
                assert answer["detections"] == local["detections"]
                assert (answer["image"], answer["score_threshold"]) == (local["image"], local["score_threshold"])
        scores = [d["score"] for d in local["detections"]]
        path = f"/detect?score_threshold={0.5 * (scores[0] + scores[-1])!r}"
        chosen = embedded_service.detect(data, path=path)[2]["detections"]
        assert 0 < len(chosen) < len(scores)
        for service in (binary, plain_json):
            assert service.detect(data, path=path)[2]["detections"] == chosen


def test_real_triton_errors_become_503_and_502(triton, test_images, tmp_path):
    service = external_service(tmp_path / "unloadable", triton.url, DETR_MODEL_NAME=UNLOADABLE)
    try:
        status, _, health = service.request("GET", "/health")
        assert status == 503 and "is not ready" in health["error"] and "Model version not ready" in health["error"]
        status, _, answer = service.detect(png_bytes(test_images[2]))
        assert status == 503 and f"'{UNLOADABLE}' is not available" in answer["error"], answer
        assert "has no available versions" in answer["error"]
    finally:
        assert service.stop()["exit"] == 0

    unknown = ExternalBackend(Settings(backend="external", model_server_url=triton.url, model_name="nope"))
    for call in (unknown.info, unknown.metadata):
        with pytest.raises(ServiceError) as error:
            call()
        assert error.value.status == 503 and "'nope'" in error.value.message
    backend = ExternalBackend(Settings(backend="external", model_server_url=triton.url))
    with pytest.raises(ServiceError) as error:  # the model refuses an empty image: Triton answers an error
        backend.detect(np.zeros((0, 4, 3), np.uint8), None)
    assert error.value.status == 502 and "model server answered 500: image is empty: 0x4" in error.value.message


# ---------------------------------------------------------------------------- plain KServe v2 (MLServer)


class PlainKServe(FakeKServe):
    """:class:`FakeKServe` as MLServer behaves: no binary tensor extension (a binary body is refused
    as JSON it cannot decode), no ``/config``, 1-D outputs answered as ``[N, 1]`` columns, and the
    server metadata ``GET /v2`` listing no extensions (or, ``announces=False``, no metadata at all)."""

    def __init__(self, root: Path, announces: bool = True):
        super().__init__(root, config_endpoint=False)
        self.announces = announces
        fake = self
        base = self.server.RequestHandlerClass

        class Handler(base):
            def do_GET(self):  # noqa: N802
                if self.path.rstrip("/") == "/v2" and fake.announces:
                    return self.answer(200, {"name": "mlserver", "version": "1.7.1", "extensions": []})
                return super().do_GET()

        self.server.RequestHandlerClass = Handler

    def infer(self, found, headers, body):
        if headers.get("Inference-Header-Content-Length") is not None:
            return 422, {"detail": [{"type": "json_invalid", "msg": "JSON decode error"}]}, b""
        status, answer, data = super().infer(found, headers, body)
        for output in answer.get("outputs", []) if status == 200 else []:
            if len(output["shape"]) == 1:
                output["shape"] = output["shape"] + [1]
        return status, answer, data


@pytest.fixture(scope="session")
def pytorch_repository(small_artefact, tmp_path_factory):
    return model_repository.generate(small_artefact, tmp_path_factory.mktemp("pytorch_repository"), name=MODEL_NAME)


@pytest.fixture()
def plain_server(pytorch_repository):
    server = PlainKServe(pytorch_repository.root)
    yield server
    server.close()


def test_plain_kserve_server_gets_json_columns_and_sidecar_class_names(
    plain_server, small_artefact, reference, test_images, caplog
):
    sidecar = small_artefact.with_suffix(".json")
    backend = ExternalBackend(Settings(backend="external", model_server_url=plain_server.url), metadata_path=sidecar)
    with caplog.at_level(logging.WARNING, logger=KSERVE_LOGGER):
        info = backend.info()
        for image in test_images[2:]:
            assert_identical(backend.detect(image, None), reference(image))
    assert info["binary_tensors"] is False and info["metadata_source"] == str(sidecar)
    assert info["class_names"] == backend.class_names == SMALL_CLASSES and backend.max_side == 8192
    assert backend.default_threshold == 0.0
    assert all("Inference-Header-Content-Length" not in headers for headers, _ in plain_server.requests)
    assert len(plain_server.requests) == len(test_images[2:])
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "lists no binary_tensor_data extension" in warnings[0], warnings


def test_binary_refused_by_a_server_that_does_not_say_falls_back_to_json_once(
    plain_server, small_artefact, reference, test_images, caplog
):
    plain_server.announces = False
    backend = ExternalBackend(
        Settings(backend="external", model_server_url=plain_server.url), metadata_path=small_artefact
    )
    with caplog.at_level(logging.WARNING, logger=KSERVE_LOGGER):
        for image in test_images[2:]:
            assert_identical(backend.detect(image, None), reference(image))
    sent_binary = ["Inference-Header-Content-Length" in headers for headers, _ in plain_server.requests]
    assert sent_binary == [True] + [False] * len(test_images[2:]) and backend.binary is False
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "answered 422" in warnings[0] and "JSON decode error" in warnings[0], warnings


def test_model_failures_are_not_mistaken_for_a_missing_extension(pytorch_repository, small_artefact, test_images):
    server = FakeKServe(pytorch_repository.root)  # binary works; no GET /v2 to say so
    try:
        backend = ExternalBackend(Settings(backend="external", model_server_url=server.url))
        server.fail_with = (500, "PyTorch execute failure: out of memory")
        with pytest.raises(ServiceError, match="answered 500: PyTorch execute failure") as error:
            backend.detect(test_images[2], None)
        assert error.value.status == 502 and len(server.requests) == 1 and backend.binary is True
        backend.detect(test_images[2], None)
        assert "Inference-Header-Content-Length" in server.requests[-1][0]
    finally:
        server.close()


def test_class_names_from_metadata_file_or_repository_else_a_clear_error(
    plain_server, small_artefact, python_repository, pytorch_repository, test_images, tmp_path
):
    sources = [
        small_artefact,  # the artefact: its sidecar beside it
        small_artefact.with_suffix(".json"),
        pytorch_repository.root,  # a model repository: <name>/config.pbtxt
        python_repository.config_path.parent,  # a model folder
    ]
    for source in sources:
        assert read_metadata_file(source, MODEL_NAME)["class_names"] == SMALL_CLASSES, source
    odd = ['quote "q"', "back\\slash", "new\nline", "é"]
    (tmp_path / "odd").mkdir()
    config = model_repository.model_config("odd", {"class_names": odd}, "0" * 64)
    (tmp_path / "odd" / "config.pbtxt").write_text(model_repository.format_pbtxt(config))
    assert read_metadata_file(tmp_path, "odd")["class_names"] == odd

    (tmp_path / "no_names.json").write_text('{"input": {"max_side": 10}}')
    (tmp_path / "empty").mkdir()
    for bad, message in [
        (tmp_path / "missing.pt", "missing.json not found"),
        (tmp_path / "no_names.json", "has no class_names list"),
        (tmp_path / "empty", "holds neither pic2card_detr/config.pbtxt nor config.pbtxt"),
    ]:
        with pytest.raises(ValueError, match=message):
            ExternalBackend(Settings(backend="external", model_server_url=plain_server.url), metadata_path=bad)

    nameless = ExternalBackend(Settings(backend="external", model_server_url=plain_server.url))
    for call in (lambda: nameless.class_names, nameless.info, lambda: nameless.detect(test_images[2], None)):
        with pytest.raises(
            ServiceError, match="no class names for model 'pic2card_detr'.*DETR_MODEL_METADATA"
        ) as error:
            call()
        assert error.value.status == 503
    assert plain_server.requests == []  # refused before any inference


def test_column_outputs_are_accepted_and_other_shapes_refused():
    class Canned(ExternalBackend):
        """Answers every call from a table instead of a server."""

        def __init__(self, outputs):
            super().__init__(Settings(backend="external", model_server_url="http://canned", binary=False))
            self._metadata, self.outputs = {"class_names": SMALL_CLASSES}, outputs

        def _request(self, method, path, body=None, headers=None):
            if path == "/v2":
                return 200, {}, b'{"extensions": []}'
            return 200, {}, json.dumps({"outputs": self.outputs}).encode()

    def output(name, datatype, shape, data):
        return {"name": name, "datatype": datatype, "shape": shape, "data": data}

    boxes = output("BOXES__0", "FP32", [2, 4], list(range(8)))
    found = Canned(
        [boxes, output("SCORES__1", "FP32", [2, 1], [0.9, 0.8]), output("LABELS__2", "INT64", [2, 1], [1, 2])]
    )
    result = found.detect(np.zeros((4, 4, 3), np.uint8), None)
    assert result["scores"].shape == (2,) and result["labels"].tolist() == [1, 2]
    odd = Canned([boxes, output("SCORES__1", "FP32", [1, 2], [0.9, 0.8]), output("LABELS__2", "INT64", [2], [1, 2])])
    with pytest.raises(ServiceError, match="inconsistent outputs") as error:
        odd.detect(np.zeros((4, 4, 3), np.uint8), None)
    assert error.value.status == 502
