"""The detection service over real HTTP on 127.0.0.1, and the model repository for the external server.

* The embedded service runs as its own process (``python -m detr_deploy.serve``) in which
  importing torch raises ImportError, so every request it answers proves the path torch-free;
  its answers are compared, bit for bit, with the artefact run by torch in this process
  (``DETR_OPTIMIZE=0`` runs the saved graph exactly; both sides use one intra-op thread,
  since another thread count changes the order of float sums).
* The external backend talks to :class:`FakeKServe`, a KServe v2 server (standard library,
  in a thread) that loads the generated model repository the way Triton's PyTorch backend
  does (``config.pbtxt``, ``<name>__<index>`` tensor names, Tensor-only ``forward``) and
  runs ``1/model.pt`` with torch. Its answers must equal the embedded service's.
* The HTTP layer's own behaviour (the worker pool's 503, the time limit's 504, metrics,
  graceful shutdown) is tested with a backend that waits for a file (``GATED_BACKEND``),
  injected into the app under uvicorn in a thread, or into a service process.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import http.client
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from detr_deploy.export import model_repository
from detr_deploy.export.artefact import sha256_of
from detr_deploy.export.torchscript import load_artefact, save_artefact
from detr_deploy.native import cpp_build
from detr_deploy.paths import REPO_ROOT
from detr_deploy.serve.app import create_app, create_server, listen_socket
from detr_deploy.serve.kserve import KSERVE_INPUTS, KSERVE_OUTPUTS, ExternalBackend
from detr_deploy.serve.service import DetectionService, decode_image
from detr_deploy.serve.settings import ServiceError, Settings, check_threshold

from conftest import SMALL_CLASSES, make_test_image, run_in_threads
from torch_free import BLOCK_TORCH

MAX_IMAGE_BYTES = 300_000
START_TIMEOUT_S = 120

# A backend that waits: each call creates a file ``entered-*`` in its folder, then answers one
# detection once the file ``open`` exists there. Defined as source so that the service processes
# (torch blocked) and this one run the same class.
GATED_BACKEND = """
import pathlib, time, uuid
import numpy as np

class GatedBackend:
    name, class_names, max_side, default_threshold = "gated", ["thing"], None, 0.5

    def __init__(self, folder):
        self.folder = pathlib.Path(folder)

    def info(self):
        return {"gate": str(self.folder)}

    def detect(self, image, score_threshold):
        (self.folder / f"entered-{uuid.uuid4().hex}").touch()
        deadline = time.monotonic() + 60
        while not (self.folder / "open").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the gate never opened")
            time.sleep(0.01)
        return {"boxes": np.zeros((1, 4), np.float32), "scores": np.full(1, 0.9, np.float32),
                "labels": np.zeros(1, np.int64)}
"""
_gated: dict = {}
exec(GATED_BACKEND, _gated)
GatedBackend = _gated["GatedBackend"]

# Runs the service with torch blocked (with ``backend``, or the one the settings name); after it
# stops, reports what was imported, and from where.
_LAUNCHER_START = (
    BLOCK_TORCH
    + """
import json, os, sys
from detr_deploy.serve import service
from detr_deploy.serve.app import main
"""
)
_LAUNCHER_END = """
code = main(sys.argv[1:], backend=backend)
print(json.dumps({"exit": code, "torch_loaded": sorted(m for m in sys.modules if m.split(".")[0] == "torch"),
                  "detr_cpp_loaded": "detr_cpp" in sys.modules, "service_file": service.__file__,
                  "detr_cpp_file": getattr(sys.modules.get("detr_cpp"), "__file__", None),
                  "detr_deploy_files": sorted(str(getattr(m, "__file__", None)) for name, m in list(sys.modules.items())
                                              if name.split(".")[0] == "detr_deploy")}), flush=True)
sys.exit(code)
"""
LAUNCHER = _LAUNCHER_START + "backend = None\n" + _LAUNCHER_END
GATED_LAUNCHER = _LAUNCHER_START + GATED_BACKEND + 'backend = GatedBackend(os.environ["GATE_FOLDER"])\n' + _LAUNCHER_END
SERVICE_SOURCE = REPO_ROOT / "detr_deploy" / "serve" / "service.py"


# ---------------------------------------------------------------------------- helpers


def http_request(
    port: int, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None, timeout: float = 120
) -> Tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection to 127.0.0.1:``port``: (status, headers, body bytes);
    the headers are looked up regardless of case, as HTTP's are."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body if body or method == "POST" else None, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def wait_until(condition, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class ServiceProcess:
    """``python -m detr_deploy.serve`` (through ``launcher``) on 127.0.0.1, port chosen by the OS."""

    def __init__(self, folder: Path, env: dict, pythonpath: Optional[str] = None, launcher_source: str = LAUNCHER):
        folder.mkdir(parents=True, exist_ok=True)
        launcher = folder / "launch_service.py"
        launcher.write_text(launcher_source)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("DETR_") and k != "PORT"}
        # one intra-op thread, as torch here runs under one_thread(): bitwise equality needs the
        # same order of float sums, and two processes of several threads on a small machine crawl
        environment.update(
            {"DETR_HOST": "127.0.0.1", "PORT": "0", "DETR_LOG_LEVEL": "WARNING", "DETR_NUM_THREADS": "1"}, **env
        )
        if pythonpath is not None:
            environment["PYTHONPATH"] = pythonpath
        self.stdout_path, self.stderr_path = folder / "stdout.txt", folder / "stderr.txt"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(launcher)], stdout=out, stderr=err, env=environment, cwd=folder
            )
        deadline = time.time() + START_TIMEOUT_S
        while True:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.stdout_path.read_text())
            if match:
                self.port = int(match.group(1))
                break
            if self.process.poll() is not None or time.time() > deadline:
                self.process.kill()
                raise RuntimeError(f"service did not start (exit {self.process.poll()}):\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.stdout_path.read_text() + self.stderr_path.read_text()

    def request(
        self, method: str, path: str, body: bytes = b"", headers: Optional[dict] = None, timeout: float = 120
    ) -> Tuple[int, http.client.HTTPMessage, dict]:
        status, answer_headers, raw = http_request(self.port, method, path, body, headers, timeout)
        return status, answer_headers, json.loads(raw) if raw else {}

    def detect(self, body: bytes, content_type: str = "image/png", path: str = "/detect"):
        return self.request("POST", path, body, {"Content-Type": content_type})

    def stop(self) -> dict:
        """SIGTERM, wait, and return the launcher's report."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                raise AssertionError("service did not stop on SIGTERM:\n" + self.output()) from None
        lines = [line for line in self.stdout_path.read_text().splitlines() if line.startswith("{")]
        assert lines, "no report from the launcher:\n" + self.output()
        return json.loads(lines[-1])


@contextlib.contextmanager
def one_thread():
    """torch with one intra-op thread for the duration, like the service processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def png_bytes(image: np.ndarray, mode: Optional[str] = None) -> bytes:
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    (picture.convert(mode) if mode else picture).save(buffer, format="PNG")
    return buffer.getvalue()


def as_arrays(answer: dict) -> dict:
    detections = answer["detections"]
    return {
        "boxes": np.array([d["box"] for d in detections], np.float32).reshape(-1, 4),
        "scores": np.array([d["score"] for d in detections], np.float32),
        "labels": np.array([d["label"] for d in detections], np.int64),
    }


def assert_identical(found: dict, expected: dict):
    for key in ("boxes", "scores", "labels"):
        assert found[key].dtype == expected[key].dtype, key
        assert found[key].shape == expected[key].shape, (key, found[key].shape, expected[key].shape)
        assert found[key].tobytes() == expected[key].tobytes(), f"{key} differ"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def built_module():
    """The compiled detr_cpp (built once if a source changed); the service loads it from cpp/."""
    cpp_build.build_module()
    return cpp_build.module_path()


@pytest.fixture(scope="session")
def torch_pipeline(small_artefact):
    module, metadata = load_artefact(small_artefact)
    return module


@pytest.fixture(scope="session")
def reference(torch_pipeline):
    """Detections of the artefact run by torch in this process (the saved graph, unoptimised)."""

    def detect(image: np.ndarray, score_threshold: Optional[float] = None) -> dict:
        with torch.inference_mode(), one_thread():
            boxes, scores, labels = torch_pipeline(torch.from_numpy(np.ascontiguousarray(image)), score_threshold)
        return {"boxes": boxes.numpy(), "scores": scores.numpy(), "labels": labels.numpy()}

    return detect


@pytest.fixture(scope="session")
def images():
    return [make_test_image(h, w, seed=10 + i) for i, (h, w) in enumerate([(72, 96), (90, 64), (48, 48)])]


@pytest.fixture(scope="session")
def embedded(built_module, small_artefact, tmp_path_factory):
    service = ServiceProcess(
        tmp_path_factory.mktemp("embedded"),
        {
            "DETR_BACKEND": "embedded",
            "DETR_MODEL": str(small_artefact),
            "DETR_OPTIMIZE": "0",
            "DETR_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        },
    )
    yield service
    report = service.stop()
    assert report["exit"] == 0 and report["torch_loaded"] == [] and report["detr_cpp_loaded"], report


@pytest.fixture(scope="session")
def repository(small_artefact, tmp_path_factory):
    root = tmp_path_factory.mktemp("model_repository")
    return model_repository.generate(small_artefact, root, name="pic2card_detr")


# ---------------------------------------------------------------------------- a KServe v2 server


class FakeKServe:
    """A KServe v2 HTTP/REST server for a Triton model repository, on 127.0.0.1 in a thread.

    It loads each ``<name>/config.pbtxt`` + ``<name>/<version>/model.pt`` and applies the
    PyTorch backend's load check (``triton_signature_problems``); at inference it checks
    every input's name, datatype and shape against the configuration, orders the tensors by
    the ``__<index>`` of their names, runs the module with torch and answers in JSON or with
    the binary tensor data extension, as the request asks. ``config_endpoint=False`` plays
    a plain KServe server without Triton's ``/config``; ``fail_with`` answers the next
    inference with an error.
    """

    def __init__(self, root: Path, config_endpoint: bool = True):
        self.models = {}
        for config_path in sorted(Path(root).glob(f"*/{model_repository.CONFIG_FILE}")):
            config = model_repository.read_config(config_path)
            versions = sorted(int(p.name) for p in config_path.parent.iterdir() if p.name.isdigit())
            module = torch.jit.load(str(config_path.parent / str(versions[-1]) / model_repository.MODEL_FILE)).eval()
            problems = model_repository.triton_signature_problems(module, len(config["input"]))
            assert not problems, problems
            self.models[config.get("name", config_path.parent.name)] = (config, module, str(versions[-1]))
        self.config_endpoint = config_endpoint
        self.fail_with: Optional[Tuple[int, str]] = None
        self.requests = []  # (headers, body) of each /infer call
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def answer(self, status, payload=None, binary: bytes = b""):
                body = json.dumps(payload if payload is not None else {}).encode()
                headers = {"Content-Type": "application/json"}
                if binary:
                    headers = {
                        "Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(body)),
                    }
                    body += binary
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def model(self, name):
                if name not in fake.models:
                    self.answer(400, {"error": f"Request for unknown model: '{name}' is not found"})
                    return None
                return fake.models[name]

            def do_GET(self):  # noqa: N802
                parts = self.path.strip("/").split("/")
                if parts == ["v2", "health", "ready"]:
                    return self.answer(200)
                if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
                    found = self.model(parts[2])
                    if found is None:
                        return
                    config, _, version = found
                    if parts[3:] == []:

                        def tensors(key):
                            return [
                                {"name": t["name"], "datatype": t["data_type"][5:], "shape": t["dims"]}
                                for t in config[key]
                            ]

                        return self.answer(
                            200,
                            {
                                "name": parts[2],
                                "versions": [version],
                                "platform": config["platform"],
                                "inputs": tensors("input"),
                                "outputs": tensors("output"),
                            },
                        )
                    if parts[3:] == ["ready"]:
                        return self.answer(200)
                    if parts[3:] == ["config"] and fake.config_endpoint:
                        as_json = dict(config, parameters={p["key"]: p["value"] for p in config["parameters"]})
                        return self.answer(200, as_json)
                self.answer(404, {"error": "not found"})

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                parts = self.path.strip("/").split("/")
                if len(parts) != 4 or parts[:2] != ["v2", "models"] or parts[3] != "infer":
                    return self.answer(404, {"error": "not found"})
                found = self.model(parts[2])
                if found is None:
                    return
                fake.requests.append((dict(self.headers.items()), body))
                if fake.fail_with is not None:
                    status, message = fake.fail_with
                    fake.fail_with = None
                    return self.answer(status, {"error": message})
                try:
                    status, payload, binary = fake.infer(found, self.headers, body)
                except ValueError as error:
                    status, payload, binary = 400, {"error": str(error)}, b""
                self.answer(status, payload, binary)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def infer(self, found, headers, body):
        config, module, version = found
        header_length = int(headers.get("Inference-Header-Content-Length") or len(body))
        request = json.loads(body[:header_length])
        binary, offset = body[header_length:], 0
        specs = {t["name"]: t for t in config["input"]}
        arguments = {}
        for entry in request["inputs"]:
            spec = specs.get(entry["name"])
            if spec is None:
                raise ValueError(f"unexpected inference input '{entry['name']}'")
            if entry["datatype"] != spec["data_type"][5:]:
                raise ValueError(
                    f"input {entry['name']}: datatype {entry['datatype']}, model expects {spec['data_type'][5:]}"
                )
            shape, dims = entry["shape"], spec["dims"]
            if len(shape) != len(dims) or any(d != -1 and d != s for s, d in zip(shape, dims, strict=True)):
                raise ValueError(f"input {entry['name']}: shape {shape}, model expects {dims}")
            dtype = {"UINT8": np.uint8, "FP32": np.float32}[entry["datatype"]]
            size = (entry.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                array = np.frombuffer(binary[offset : offset + size], dtype=dtype).reshape(shape)
                offset += size
            else:
                array = np.array(entry["data"], dtype=dtype).reshape(shape)
            arguments[int(entry["name"].split("__")[1])] = torch.from_numpy(array.copy())
        if sorted(arguments) != list(range(len(specs))):
            raise ValueError(f"expected inputs {sorted(specs)}, got {[e['name'] for e in request['inputs']]}")
        try:
            with torch.inference_mode(), one_thread():
                outputs = module(*[arguments[i] for i in range(len(arguments))])
        except Exception as error:  # noqa: BLE001 - the model's error goes to the client
            return 500, {"error": f"PyTorch execute failure: {error}"}, b""
        default_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
        wanted = request.get("outputs") or [{"name": t["name"]} for t in config["output"]]
        answer, data = [], b""
        for entry in wanted:
            tensor = outputs[int(entry["name"].split("__")[1])].contiguous().numpy()
            item = {
                "name": entry["name"],
                "datatype": {"float32": "FP32", "int64": "INT64"}[str(tensor.dtype)],
                "shape": list(tensor.shape),
            }
            if (entry.get("parameters") or {}).get("binary_data", default_binary):
                item["parameters"] = {"binary_data_size": tensor.nbytes}
                data += tensor.tobytes()
            else:
                item["data"] = tensor.reshape(-1).tolist()
            answer.append(item)
        return 200, {"model_name": request.get("model_name", ""), "model_version": version, "outputs": answer}, data

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def fake_server(repository):
    server = FakeKServe(repository.root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def external(fake_server, tmp_path_factory):
    service = ServiceProcess(
        tmp_path_factory.mktemp("external"),
        {
            "DETR_BACKEND": "external",
            "DETR_MODEL_SERVER_URL": fake_server.url,
            "DETR_MODEL_NAME": "pic2card_detr",
            "DETR_MAX_IMAGE_BYTES": str(MAX_IMAGE_BYTES),
        },
    )
    yield service
    report = service.stop()
    assert report["exit"] == 0 and report["torch_loaded"] == [] and not report["detr_cpp_loaded"], report


# ---------------------------------------------------------------------------- embedded: answers


def test_health_reports_backend_and_model(embedded, small_artefact):
    status, headers, answer = embedded.request("GET", "/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert "Server" not in headers  # no software or version advertised
    assert answer["status"] == "ok" and answer["backend"] == "embedded"
    assert answer["model"] == small_artefact.name and answer["optimized"] is False  # no absolute path
    assert str(small_artefact.parent) not in json.dumps(answer)
    # the hash of the file loaded, checked against the sidecar the export wrote
    assert answer["sha256"] == hashlib.sha256(small_artefact.read_bytes()).hexdigest() and answer["verified"] is True
    assert answer["metadata"]["class_names"] == SMALL_CLASSES
    assert answer["metadata"]["input"]["max_side"] == 8192
    assert answer["limits"] == {"max_image_bytes": MAX_IMAGE_BYTES, "max_image_pixels": 40_000_000}
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", answer["libtorch"])


def test_detect_png_matches_torch_bit_for_bit(embedded, reference, images):
    for image in images:
        status, _, answer = embedded.detect(png_bytes(image))
        assert status == 200, answer
        assert answer["image"] == {"width": image.shape[1], "height": image.shape[0]}
        assert answer["backend"] == "embedded" and answer["score_threshold"] == 0.0
        expected = reference(image)
        assert len(answer["detections"]) == len(expected["scores"]) > 0
        assert_identical(as_arrays(answer), expected)
        assert [d["class_name"] for d in answer["detections"]] == [SMALL_CLASSES[i] for i in expected["labels"]]
        assert set(answer["timings_ms"]) == {"decode", "inference"}


def test_base64_json_as_pic2card_sent_it(embedded, images):
    data = png_bytes(images[0])
    _, _, raw = embedded.detect(data)
    encoded = base64.b64encode(data).decode()
    variants = [
        {"image": encoded},
        {"image": "data:image/png;base64," + encoded},
        {"image": "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))},  # MIME line breaks
        {"image": base64.urlsafe_b64encode(data).decode().rstrip("=")},
    ]
    for payload in variants:
        status, _, answer = embedded.detect(json.dumps(payload).encode(), "application/json")
        assert status == 200, answer
        assert answer["detections"] == raw["detections"]


def test_other_formats_are_decoded_like_pillow_does(embedded, reference, images):
    image = images[1]
    cases = []
    jpeg = io.BytesIO()
    Image.fromarray(image).save(jpeg, format="JPEG", quality=90)
    cases.append((jpeg.getvalue(), "image/jpeg"))
    cases.append((png_bytes(image, "L"), "image/png"))  # greyscale
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 128, np.uint8)], axis=2)
    cases.append((png_bytes(rgba), "application/octet-stream"))  # transparency: composited on white
    for data, content_type in cases:
        status, _, answer = embedded.detect(data, content_type)
        assert status == 200, answer
        expected = reference(decode_image(data))
        assert_identical(as_arrays(answer), expected)
    # RGBA on white is not the RGB channels: the composite really happened
    assert not np.array_equal(decode_image(cases[2][0]), image)


def test_score_threshold_from_query_and_json(embedded, reference, images):
    image = images[0]
    threshold = float(np.median(reference(image)["scores"]))
    expected = reference(image, threshold)
    assert 0 < len(expected["scores"]) < len(reference(image)["scores"])
    status, _, by_query = embedded.detect(png_bytes(image), path=f"/detect?score_threshold={threshold!r}")
    assert status == 200 and by_query["score_threshold"] == threshold
    assert_identical(as_arrays(by_query), expected)
    payload = {"image": base64.b64encode(png_bytes(image)).decode(), "score_threshold": threshold}
    status, _, by_json = embedded.detect(json.dumps(payload).encode(), "application/json")
    assert status == 200 and by_json["detections"] == by_query["detections"]
    assert all(d["score"] > threshold for d in by_json["detections"])


def test_parallel_requests_get_the_serial_answers(embedded, images):
    serial = [embedded.detect(png_bytes(image))[2]["detections"] for image in images]
    results = {}

    def work(worker):
        for index in range(len(images)):
            position = (index + worker) % len(images)
            status, _, answer = embedded.detect(png_bytes(images[position]))
            results[worker, position] = (status, answer["detections"])

    errors = run_in_threads(work, workers=3)
    assert not errors and len(results) == 3 * len(images)
    for (_, position), (status, detections) in results.items():
        assert status == 200 and detections == serial[position]


# ---------------------------------------------------------------------------- embedded: bad input


def _wide_png(width: int) -> bytes:
    return png_bytes(np.zeros((1, width, 3), np.uint8))


BAD_REQUESTS = {
    "not an image": (b"this is text, not pixels" * 10, "image/png", 400, "not an image"),
    "truncated png": (None, "image/png", 400, "could not be decoded|not an image"),
    "empty body": (b"", "image/png", 400, "empty body"),
    "wrong content type": (b"abc", "text/plain", 415, "unsupported Content-Type 'text/plain'"),
    "form upload": (b"abc", "application/x-www-form-urlencoded", 415, "application/json"),
    "bad json": (b"{not json", "application/json", 400, "not valid JSON"),
    "json without image": (b'{"picture": "abc"}', "application/json", 400, "'image' field"),
    "json extra field": (b'{"image": "", "foo": 1}', "application/json", 400, "unknown JSON field"),
    "image not a string": (b'{"image": 5}', "application/json", 400, "base64 string"),
    "bad base64": (b'{"image": "%%%notbase64%%%"}', "application/json", 400, "not valid base64"),
    "threshold too high": (None, "image/png?score_threshold=1.5", 400, r"score_threshold must be in \[0, 1\)"),
    "threshold not a number": (None, "image/png?score_threshold=abc", 400, "must be a number"),
    "json threshold": (b'{"image": "aGk=", "score_threshold": "high"}', "application/json", 400, "must be a number"),
    "json threshold false": (
        b'{"image": "aGk=", "score_threshold": false}',
        "application/json",
        400,
        "must be a number",
    ),
    "json threshold true": (b'{"image": "aGk=", "score_threshold": true}', "application/json", 400, "must be a number"),
    "json nested too deep": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deep"),
    "unknown query": (None, "image/png?threshold=0.5", 400, "unknown query parameter"),
    "too many bytes": (b"\x89PNG" + bytes(MAX_IMAGE_BYTES), "image/png", 413, "exceeds the limit"),
    "too many bytes in base64": (
        json.dumps({"image": base64.b64encode(bytes(MAX_IMAGE_BYTES + 1)).decode()}).encode(),
        "application/json",
        413,
        "exceeds DETR_MAX_IMAGE_BYTES",
    ),
    "too many pixels per side": (_wide_png(8193), "image/png", 413, "exceeds the model's limit of 8192"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_input_gets_4xx_with_a_message(embedded, images, case):
    body, content_type, status, message = BAD_REQUESTS[case]
    if body is None:
        data = png_bytes(images[0])
        body = data[: len(data) // 2] if case == "truncated png" else data
    content_type, _, query = content_type.partition("?")
    code, headers, answer = embedded.detect(body, content_type, path="/detect" + (f"?{query}" if query else ""))
    assert code == status, answer
    assert answer["status"] == status and re.search(message, answer["error"]), answer["error"]
    assert embedded.request("GET", "/health")[0] == 200  # still serving


def _raw_answer(port: int, request: bytes, rest: bytes = b"") -> Tuple[int, bytes, bytes]:
    """(status, head, body) of what the server sends back until it closes the connection;
    ``rest`` follows ``request`` after a pause, so that the server has read ``request`` alone."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(request)
        if rest:
            time.sleep(0.3)
            with contextlib.suppress(OSError):  # the server may have answered and closed already
                connection.sendall(rest)
        data = b""
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def _raw_exchange(port: int, request: bytes) -> Tuple[int, dict]:
    status, _, body = _raw_answer(port, request)
    return status, json.loads(body)


def test_length_problems_are_refused_before_reading(embedded):
    status, answer = _raw_exchange(
        embedded.port, b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n"
    )
    assert status == 411 and "Content-Length" in answer["error"]
    # a huge declared length is answered without the body being read (after a short wait for it to drain)
    status, answer = _raw_exchange(
        embedded.port,
        b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n",
    )
    assert status == 413 and "1000000000 bytes exceeds" in answer["error"]
    status, answer = _raw_exchange(
        embedded.port,
        b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    assert status == 411 and "chunked" in answer["error"]


def test_wrong_paths_and_methods(embedded):
    assert embedded.request("GET", "/nothing")[0] == 404
    status, headers, answer = embedded.request("GET", "/detect")
    assert status == 405 and headers["Allow"] == "POST" and "GET not allowed" in answer["error"]
    status, headers, _ = embedded.request("POST", "/health", b"{}", {"Content-Type": "application/json"})
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert embedded.request("HEAD", "/health")[0] == 200


def test_chunked_body_past_the_limit_is_413(embedded):
    chunk = bytes(1 << 16)
    chunks = MAX_IMAGE_BYTES // len(chunk) + 2
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(chunks)) + b"0\r\n\r\n"
    head = b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, answer = _raw_exchange(embedded.port, head + body)  # returns once the server has closed
    assert status == 413 and f"more than {MAX_IMAGE_BYTES} bytes exceeds the limit" in answer["error"], answer
    assert embedded.request("GET", "/health")[0] == 200


def _png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header says ``width`` x ``height``: refused from the header, never decoded."""
    data = bytearray(png_bytes(np.zeros((1, 1), np.uint8), "1"))
    header = data[12:29]  # IHDR chunk type and fields: the CRC covers both
    header[4:12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[12:29] = header
    data[29:33] = zlib.crc32(bytes(header)).to_bytes(4, "big")
    return bytes(data)


def _blank_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of ``width`` x ``height`` black pixels: a few KB of file."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_pixel_bombs_are_refused_from_the_header_in_bounded_memory(embedded):
    bomb = _blank_png(8192, 8192)  # within the model's 8192 per side: only the pixel budget refuses it
    assert len(bomb) < 64 * 1024
    status, _, answer = embedded.detect(bomb)
    assert status == 413 and answer["status"] == 413, answer
    assert "image 8192x8192 has more than DETR_MAX_IMAGE_PIXELS=40000000 pixels" in answer["error"]
    with ThreadPoolExecutor(4) as clients:
        statuses = list(clients.map(lambda _: embedded.detect(bomb)[0], range(4)))
    assert statuses == [413] * 4
    peak = peak_rss_bytes(embedded.process.pid)
    assert peak < 1 << 30, f"peak RSS of the service {peak / 2**20:.0f} MiB"
    status, _, answer = embedded.detect(_png_claiming(8193, 1))
    assert status == 413 and "exceeds the model's limit of 8192 pixels per side" in answer["error"], answer
    # past twice Image.MAX_IMAGE_PIXELS, Pillow refuses in Image.open, before the service's own checks
    status, _, answer = embedded.detect(_png_claiming(20000, 20000))
    assert status == 413 and "too many pixels: Image size (400000000 pixels)" in answer["error"], answer
    assert embedded.request("GET", "/health")[0] == 200


def test_pixel_budget_without_a_model_limit_and_pillows_bomb_check_answer_413(tmp_path):
    # the gated backend has no max_side, as a model server may not say its own: the budget refuses
    with gated_app(tmp_path) as (port, _):
        status, _, raw = http_request(port, "POST", "/detect", _png_claiming(9000, 9000), PNG)
        assert status == 413 and "more than DETR_MAX_IMAGE_PIXELS=40000000 pixels" in json.loads(raw)["error"]
    # a budget above Pillow's own decompression-bomb limit (twice Image.MAX_IMAGE_PIXELS): Pillow refuses
    with gated_app(tmp_path, max_image_pixels=10**9) as (port, _):
        status, _, raw = http_request(port, "POST", "/detect", _png_claiming(14000, 14000), PNG)
        answer = json.loads(raw)
        assert status == 413 and answer["status"] == 413 and "too many pixels" in answer["error"], answer


def test_large_jpegs_are_decoded_reduced_and_boxes_come_back_in_file_pixels(embedded):
    # SMALL_PIPELINE resizes to at most 384 per side: a JPEG from 2 x 2 x 384 = 1536 on its longer side
    # is decoded at a reduced scale that keeps at least 768; below that, at full size, pixel for pixel
    below, above = make_test_image(1000, 1500, seed=3), make_test_image(1200, 1600, seed=4)
    below_jpeg, above_jpeg = (jpeg_bytes(image) for image in (below, above))
    assert np.array_equal(decode_image(below_jpeg, draft_side=768), decode_image(below_jpeg))
    status, _, answer = embedded.detect(below_jpeg, "image/jpeg")
    assert status == 200 and answer["image"] == {"width": 1500, "height": 1000}
    reduced = decode_image(above_jpeg, draft_side=768)
    assert reduced.shape == (600, 800, 3)
    status, _, answer = embedded.detect(above_jpeg, "image/jpeg")
    assert status == 200 and answer["image"] == {"width": 1600, "height": 1200}, answer
    status, _, reduced_answer = embedded.detect(png_bytes(reduced))  # the same pixels, losslessly
    assert status == 200, reduced_answer
    expected = as_arrays(reduced_answer)
    expected["boxes"] = expected["boxes"] * np.array([2, 2, 2, 2], np.float32)  # 1600 / 800, 1200 / 600
    assert len(expected["scores"]) > 0
    assert_identical(as_arrays(answer), expected)


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _json_refusal(port: int, request: bytes, rest: bytes = b"") -> Tuple[int, dict]:
    """(status, JSON body) of an answer that must be JSON and close the connection."""
    status, head, body = _raw_answer(port, request, rest)
    lines = head.lower().split(b"\r\n")
    assert b"content-type: application/json" in lines and b"connection: close" in lines, head
    answer = json.loads(body)
    assert answer["status"] == status, answer
    return status, answer


# What h11 cannot parse, and heads or targets too long, whether they arrive whole or in parts:
# JSON, with the status that names the problem (plain uvicorn: 400 text/plain for all of the first).
HTTP_REFUSALS = {
    "two Content-Length (request smuggling)": (
        b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5\r\n"
        b"Content-Length: 7\r\n\r\nabcdefg",
        b"",
        400,
        "malformed HTTP request: conflicting Content-Length headers",
    ),
    "bad request line": (b"GARBAGE\r\n\r\n", b"", 400, "malformed HTTP request: illegal request line"),
    "no Host": (b"GET /health HTTP/1.1\r\n\r\n", b"", 400, "Missing mandatory Host: header"),
    "gzip transfer coding": (
        b"POST /detect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"",
        501,
        "not implemented: Only Transfer-Encoding: chunked is supported",
    ),
    "HTTP/2.0 request line": (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", b"", 505, "HTTP/2.0 is not supported"),
    "head incomplete after 16 KiB": (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000,
        b"\r\n\r\n",
        431,
        "the request head is longer than 16384 bytes",
    ),
    "request line incomplete after 16 KiB": (
        b"GET /" + b"a" * 20_000,
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
        "the request line is longer than 16384 bytes",
    ),
    "long target, whole": (
        b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"",
        414,
        "the request target is 20001 bytes, more than 8192",
    ),
    "long headers, whole": (
        b"GET /health HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
        + b"\r\n",
        b"",
        431,
        "the request headers are 20159 bytes, more than 16384",
    ),
}


@pytest.mark.parametrize("case", list(HTTP_REFUSALS))
def test_http_refusals_are_json_with_their_status(embedded, case):
    request, rest, expected_status, message = HTTP_REFUSALS[case]
    status, answer = _json_refusal(embedded.port, request, rest)
    assert status == expected_status and message in answer["error"], answer
    assert embedded.request("GET", "/health")[0] == 200


def test_a_target_just_under_the_limit_reaches_the_app(embedded):
    status, _, body = _raw_answer(
        embedded.port, b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 404 and json.loads(body)["status"] == 404


def test_control_characters_in_paths_are_escaped_in_the_log(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="detr_deploy.serve.service")
    with gated_app(tmp_path) as (port, _):
        status, _, raw = http_request(port, "GET", "/x%0AGET%20/health%20200%1B%5B31m")
    assert status == 404 and json.loads(raw)["status"] == 404
    lines = [record.getMessage() for record in caplog.records if record.name == "detr_deploy.serve.service"]
    assert "GET /x\\nGET /health 200\\x1b[31m 404" in "\n".join(lines), lines
    assert not any("\n" in line or "\x1b" in line for line in lines)


# ---------------------------------------------------------------------------- HTTP: description, metrics, limits


def test_openapi_describes_the_routes_and_docs_show_it(embedded):
    status, headers, page = http_request(embedded.port, "GET", "/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"/openapi.json" in page
    status, _, raw = http_request(embedded.port, "GET", "/openapi.json")
    spec = json.loads(raw)
    assert status == 200 and set(spec["paths"]) == {"/detect", "/health", "/metrics"}
    detect = spec["paths"]["/detect"]["post"]
    content = detect["requestBody"]["content"]
    assert set(content) == {"image/*", "application/octet-stream", "application/json"}
    assert content["image/*"]["schema"] == {"type": "string", "format": "binary"}
    assert set(content["application/json"]["schema"]["properties"]) == {"image", "score_threshold"}
    assert [(p["name"], p["in"], p["required"]) for p in detect["parameters"]] == [("score_threshold", "query", False)]
    number = detect["parameters"][0]["schema"]["anyOf"][0]
    assert number == {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
    # validation errors are answered 400, so the 422 FastAPI would document is not there
    assert {"200", "400", "411", "413", "415", "500", "503", "504"} <= set(detect["responses"])
    assert "422" not in detect["responses"]
    assert set(spec["paths"]["/health"]) == {"get"} and set(spec["paths"]["/metrics"]) == {"get"}


def scrape(port: int) -> dict:
    """``/metrics`` as {(sample name, sorted label items): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    status, headers, raw = http_request(port, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(raw.decode())
        for sample in family.samples
    }


def test_metrics_count_requests_errors_and_time(embedded, images):
    requests = "detr_http_requests_total"

    def key(name, **labels):
        return name, tuple(sorted(labels.items()))

    before = scrape(embedded.port)
    assert embedded.detect(png_bytes(images[0]))[0] == 200
    assert embedded.detect(b"not an image")[0] == 400
    assert embedded.request("GET", "/nothing/at/all")[0] == 404
    after = scrape(embedded.port)
    moved = {
        k: after[k] - before.get(k, 0.0) for k in after if k[0].startswith("detr_http") and after[k] != before.get(k)
    }
    assert moved[key(requests, route="/detect", method="POST", status="200")] == 1
    assert moved[key(requests, route="/detect", method="POST", status="400")] == 1
    assert moved[key(requests, route="unmatched", method="GET", status="404")] == 1  # unknown paths share one label
    assert moved[key("detr_http_errors_total", status="400")] == 1
    assert moved[key("detr_http_errors_total", status="404")] == 1
    assert moved[key("detr_http_request_duration_seconds_count", route="/detect")] == 2
    assert moved[key("detr_http_request_duration_seconds_sum", route="/detect")] > 0
    assert after[key("detr_http_requests_in_flight")] == 1  # the scrape itself
    assert after[key("detr_workers_busy")] == 0 and after[key("detr_requests_waiting")] == 0
    assert after[key("process_resident_memory_bytes")] > 0


@contextlib.contextmanager
def gated_app(gate: Path, **limits):
    """``create_app`` with a GatedBackend injected, under uvicorn in a thread on 127.0.0.1 (port
    from the OS): yields (port, app). Opens the gate on the way out, so that no call waits on."""
    settings = Settings(host="127.0.0.1", port=0, **limits)
    app = create_app(settings, DetectionService(settings, GatedBackend(gate)))
    server = create_server(app, settings)
    listener = listen_socket(settings.host, settings.port, settings.backlog)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        yield listener.getsockname()[1], app
    finally:
        (gate / "open").touch()
        server.should_exit = True
        thread.join(timeout=60)


def test_listening_socket_lets_asyncio_turn_nagle_off():
    # asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; without it a
    # keep-alive answer written in parts waits for the client's delayed ACK
    with listen_socket("127.0.0.1", 0) as listener, socket.create_connection(listener.getsockname()[:2]):
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.proto == socket.IPPROTO_TCP


def post_png(port: int):
    status, headers, raw = http_request(port, "POST", "/detect", png_bytes(np.zeros((8, 8, 3), np.uint8)), PNG)
    return status, headers, json.loads(raw)


PNG = {"Content-Type": "image/png"}


def test_full_workers_and_queue_answer_503_with_retry_after(tmp_path):
    with gated_app(tmp_path, max_concurrency=1, max_queue=1) as (port, app), ThreadPoolExecutor(2) as clients:
        pool = app.state.pool
        running = clients.submit(post_png, port)
        wait_until(lambda: len(list(tmp_path.glob("entered-*"))) == 1, "the first call to start")
        waiting = clients.submit(post_png, port)
        wait_until(lambda: pool.state()["waiting"] == 1, "the second request to wait")
        status, headers, answer = post_png(port)
        assert status == 503 and answer["status"] == 503 and "busy: 1 requests running and 1 waiting" in answer["error"]
        assert int(headers["Retry-After"]) >= 1
        metrics = scrape(port)
        assert metrics["detr_workers_busy", ()] == 1 and metrics["detr_requests_waiting", ()] == 1
        assert len(list(tmp_path.glob("entered-*"))) == 1  # one worker: the waiting call has not started
        (tmp_path / "open").touch()
        assert running.result(timeout=60)[0] == waiting.result(timeout=60)[0] == 200
        wait_until(lambda: pool.admitted == 0, "the places to be given back")
        assert post_png(port)[0] == 200


def test_time_limit_answers_504_and_the_late_call_keeps_its_worker(tmp_path):
    with gated_app(tmp_path, max_concurrency=1, max_queue=0, request_timeout_s=0.5) as (port, app):
        pool = app.state.pool
        started = time.monotonic()
        status, _, answer = post_png(port)
        assert status == 504 and answer == {
            "error": "no answer within DETR_REQUEST_TIMEOUT_S=0.5 s: the model is slow or busy",
            "status": 504,
        }
        assert 0.5 <= time.monotonic() - started < 30
        # the call cannot be stopped: it keeps its worker, and the pool counts it until it ends
        assert pool.state()["running"] == 1 and post_png(port)[0] == 503
        (tmp_path / "open").touch()
        wait_until(lambda: pool.admitted == 0, "the late call to end")
        status, _, answer = post_png(port)
        assert status == 200 and answer["detections"][0]["class_name"] == "thing"


def test_sigterm_lets_the_request_in_flight_finish(tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    service = ServiceProcess(tmp_path / "service", {"GATE_FOLDER": str(gate)}, launcher_source=GATED_LAUNCHER)
    with ThreadPoolExecutor(1) as client:
        in_flight = client.submit(post_png, service.port)
        wait_until(lambda: any(gate.glob("entered-*")), "the request to reach the model")
        service.process.send_signal(signal.SIGTERM)

        def refusing() -> bool:
            try:
                socket.create_connection(("127.0.0.1", service.port), timeout=5).close()
                return False
            except ConnectionRefusedError:
                return True

        wait_until(refusing, "the service to stop accepting connections")
        assert service.process.poll() is None  # still running: the request is in flight
        (gate / "open").touch()
        status, _, answer = in_flight.result(timeout=60)
    assert status == 200 and answer["detections"][0]["class_name"] == "thing"
    assert service.process.wait(timeout=60) == 0
    report = service.stop()
    assert report["exit"] == 0 and report["torch_loaded"] == [] and not report["detr_cpp_loaded"]
    assert service.stdout_path.read_text().splitlines()[-2] == "detr_deploy.serve.service: stopped"  # then the report


# ---------------------------------------------------------------------------- embedded: failures


class _FlakyModel(nn.Module):
    """Answers one fixed detection, except for 13-pixel-high images, where it fails."""

    def forward(self, image: Tensor, score_threshold: Optional[float] = None) -> Tuple[Tensor, Tensor, Tensor]:
        if image.shape[0] == 13:
            raise RuntimeError("flaky model: cannot handle 13-pixel-high images")
        boxes = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
        return boxes, torch.tensor([0.75]), torch.tensor([2], dtype=torch.int64)


def test_model_failure_is_a_500_and_the_service_keeps_serving(built_module, small_artefact, tmp_path):
    metadata = json.loads(Path(small_artefact).with_suffix(".json").read_text())
    for key in ("file", "sha256", "size_bytes"):
        metadata.pop(key)
    path = tmp_path / "flaky.pt"
    save_artefact(torch.jit.script(_FlakyModel()), path, metadata)
    path.with_suffix(".json").unlink()  # no sidecar: the model loads, its integrity unchecked
    service = ServiceProcess(tmp_path / "service", {"DETR_MODEL": str(path)})
    try:
        status, _, health = service.request("GET", "/health")
        assert status == 200 and health["verified"] is False
        assert health["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        ok = png_bytes(np.zeros((20, 20, 3), np.uint8))
        status, _, answer = service.detect(ok)
        assert status == 200 and answer["detections"] == [
            {"label": 2, "class_name": SMALL_CLASSES[2], "score": 0.75, "box": [1.0, 2.0, 3.0, 4.0]}
        ]
        status, _, answer = service.detect(png_bytes(np.zeros((13, 20, 3), np.uint8)))
        assert status == 500 and "the model failed" in answer["error"] and "13-pixel-high" in answer["error"]
        assert service.detect(ok)[0] == 200
    finally:
        report = service.stop()
    package_files = report.pop("detr_deploy_files")
    assert report == {
        "exit": 0,
        "torch_loaded": [],
        "detr_cpp_loaded": True,
        "service_file": str(SERVICE_SOURCE),
        "detr_cpp_file": str(built_module),
    }
    assert str(SERVICE_SOURCE) in package_files
    assert all(Path(name).is_relative_to(REPO_ROOT / "detr_deploy") for name in package_files), package_files


def test_start_up_errors_exit_with_a_message(tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DETR_")}
    cases = [
        ({"DETR_MODEL": str(tmp_path / "missing.pt")}, "model file not found"),
        ({"DETR_BACKEND": "external"}, "needs DETR_MODEL_SERVER_URL"),
        ({"DETR_BACKEND": "sideways"}, "DETR_BACKEND must be one of embedded, external"),
        (
            {"DETR_BACKEND": "external", "DETR_MODEL_SERVER_URL": "http://x", "DETR_SCORE_THRESHOLD": "2"},
            r"DETR_SCORE_THRESHOLD must be in \[0, 1\)",
        ),
    ]
    for env, message in cases:
        result = subprocess.run(
            [sys.executable, "-m", "detr_deploy.serve", "--port", "0"],
            capture_output=True,
            text=True,
            env=dict(environment, **env),
            timeout=120,
        )
        assert result.returncode == 1 and re.search(message, result.stderr), (env, result.stderr)


def test_settings_from_environment():
    settings = Settings.from_env(
        {
            "DETR_BACKEND": "External",
            "DETR_MODEL_SERVER_URL": "http://triton:8000",
            "DETR_MODEL_SERVER_BINARY": "0",
            "DETR_SCORE_THRESHOLD": "0.25",
            "PORT": "9000",
            "DETR_MAX_IMAGE_BYTES": "1000",
        },
        port=0,
    )
    assert (settings.backend, settings.binary, settings.score_threshold, settings.port, settings.max_image_bytes) == (
        "external",
        False,
        0.25,
        0,
        1000,
    )
    for env, message in [
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"DETR_OPTIMIZE": "maybe"}, "DETR_OPTIMIZE must be 1 or 0"),
        ({"DETR_MAX_IMAGE_BYTES": "0"}, "must be positive"),
        ({"DETR_BACKEND": "external", "DETR_MODEL_SERVER_URL": "ftp://x"}, "http"),
        ({"DETR_MODEL_NAME": "../etc"}, "DETR_MODEL_NAME"),
        ({"DETR_MODEL_SERVER_TIMEOUT": "0"}, "DETR_MODEL_SERVER_TIMEOUT must be positive"),
        ({"DETR_MAX_CONCURRENCY": "0"}, "DETR_MAX_CONCURRENCY must be positive"),
        ({"DETR_MAX_QUEUE": "-1"}, "DETR_MAX_QUEUE must be 0 or more"),
        ({"DETR_REQUEST_TIMEOUT_S": "0"}, "DETR_REQUEST_TIMEOUT_S must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)
    assert Settings.from_env({}).timeout_s == 30.0
    defaults = Settings.from_env({})
    assert (defaults.max_concurrency, defaults.max_queue) == (
        len(os.sched_getaffinity(0)),
        2 * defaults.max_concurrency,
    )
    chosen = Settings.from_env({"DETR_MAX_CONCURRENCY": "3", "DETR_MAX_QUEUE": "0", "DETR_REQUEST_TIMEOUT_S": "2.5"})
    assert (chosen.max_concurrency, chosen.max_queue, chosen.request_timeout_s) == (3, 0, 2.5)
    assert Settings.from_env({"DETR_MAX_IMAGE_PIXELS": "1000"}).max_image_pixels == 1000
    assert (defaults.max_connections, defaults.backlog, defaults.keep_alive_s, defaults.header_timeout_s) == (
        256,
        2048,
        5.0,
        10.0,
    )
    assert defaults.require_sidecar is False
    connections = Settings.from_env(
        {
            "DETR_MAX_CONNECTIONS": "10",
            "DETR_BACKLOG": "64",
            "DETR_KEEP_ALIVE_S": "1.5",
            "DETR_HEADER_TIMEOUT_S": "2",
            "DETR_REQUIRE_SIDECAR": "1",
        }
    )
    assert (connections.max_connections, connections.backlog, connections.keep_alive_s) == (10, 64, 1.5)
    assert (connections.header_timeout_s, connections.require_sidecar) == (2.0, True)
    for env, message in [
        ({"DETR_MAX_CONNECTIONS": "0"}, "DETR_MAX_CONNECTIONS must be positive"),
        ({"DETR_BACKLOG": "0"}, r"DETR_BACKLOG must be in 1\.\.65535"),
        ({"DETR_BACKLOG": "100000"}, r"DETR_BACKLOG must be in 1\.\.65535"),
        ({"DETR_KEEP_ALIVE_S": "0"}, r"DETR_KEEP_ALIVE_S must be in \(0, 3600\]"),
        ({"DETR_HEADER_TIMEOUT_S": "nan"}, r"DETR_HEADER_TIMEOUT_S must be in \(0, 3600\]"),
        ({"DETR_REQUIRE_SIDECAR": "maybe"}, "DETR_REQUIRE_SIDECAR must be 1 or 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            Settings.from_env(env)
    with pytest.raises(ValueError, match="DETR_MAX_IMAGE_PIXELS must be positive"):
        Settings.from_env({"DETR_MAX_IMAGE_PIXELS": "0"})
    assert check_threshold("0") == 0.0
    for bad in (1.0, -0.1, float("nan"), True, [0.5]):
        with pytest.raises(ValueError):
            check_threshold(bad)


# ---------------------------------------------------------------------------- the model repository


def test_model_repository_layout_config_and_weights(small_artefact, tmp_path, capsys):
    out = tmp_path / "repo"
    assert model_repository.main(["--model", str(small_artefact), "--out", str(out), "--name", "cards"]) == 0
    assert "config.pbtxt" in capsys.readouterr().out
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["cards/1/model.pt", "cards/config.pbtxt"]

    config = model_repository.read_config(out / "cards")
    assert (config["name"], config["platform"], config["max_batch_size"]) == ("cards", "pytorch_libtorch", 0)
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("IMAGE__0", "TYPE_UINT8", [-1, -1, 3]),
        ("SCORE_THRESHOLD__1", "TYPE_FP32", [1]),
    ]
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["output"]] == [
        ("BOXES__0", "TYPE_FP32", [-1, 4]),
        ("SCORES__1", "TYPE_FP32", [-1]),
        ("LABELS__2", "TYPE_INT64", [-1]),
    ]
    assert [t["name"] for t in config["input"]] == [name for name, _ in KSERVE_INPUTS]
    assert [t["name"] for t in config["output"]] == [name for name, _ in KSERVE_OUTPUTS]
    assert config["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
    assert model_repository.config_parameter(config, "source_sha256") == sha256_of(small_artefact)
    pipeline, metadata = load_artefact(small_artefact)
    assert json.loads(model_repository.config_parameter(config, "detr_metadata")) == metadata

    # the model file: loadable by Triton's rules, the artefact's own weights, its metadata inside
    extra = {"metadata.json": ""}
    wrapped = torch.jit.load(str(out / "cards" / "1" / "model.pt"), _extra_files=extra)
    assert model_repository.triton_signature_problems(wrapped) == []
    assert json.loads(extra["metadata.json"]) == metadata
    ours, theirs = wrapped.pipeline.state_dict(), pipeline.state_dict()
    assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # the artefact as it is would not load in Triton: this is why it is wrapped
    problems = model_repository.triton_signature_problems(pipeline)
    assert len(problems) == 1 and "'score_threshold' has type Optional[float]" in problems[0]


def test_model_repository_threshold_input_and_regeneration(small_artefact, fake_server, reference, images, tmp_path):
    wrapped = fake_server.models["pic2card_detr"][1]  # repository.model_path, loaded by the fake server
    image = images[0]
    threshold = float(np.median(reference(image)["scores"]))
    with torch.inference_mode(), one_thread():
        by_default = wrapped(torch.from_numpy(image), torch.tensor([-1.0]))
        chosen = wrapped(torch.from_numpy(image), torch.tensor([threshold]))
    for got, expected in ((by_default, reference(image)), (chosen, reference(image, threshold))):
        assert_identical({"boxes": got[0].numpy(), "scores": got[1].numpy(), "labels": got[2].numpy()}, expected)

    out = tmp_path / "repo"
    (out / "other_model").mkdir(parents=True)
    (out / "other_model" / "config.pbtxt").write_text('name: "other_model"\n')
    first = model_repository.generate(small_artefact, out, name="m", gpu=True, instances=2)
    assert model_repository.read_config(first.config_path)["instance_group"] == [{"count": 2, "kind": "KIND_GPU"}]
    (out / "m" / "1" / "stale.txt").write_text("left from before")
    model_repository.generate(small_artefact, out, name="m", version=3)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "m/3/model.pt",
        "m/config.pbtxt",
        "other_model/config.pbtxt",
    ]
    (out / "not_a_model").mkdir()
    with pytest.raises(FileExistsError, match="not a model folder"):
        model_repository.generate(small_artefact, out, name="not_a_model")
    with pytest.raises(ValueError, match="model name"):
        model_repository.generate(small_artefact, out, name="a/b")
    assert model_repository.main(["--model", str(tmp_path / "missing.pt"), "--out", str(out)]) == 1


def test_protobuf_text_parser_reads_triton_style_configs():
    text = """
    # a comment
    name: "m"  platform: "pytorch_libtorch"
    max_batch_size: 8
    input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, -1, -1 ] reshape: { shape: [ 1, 3 ] } } ]
    output { name: "OUTPUT__0", data_type: TYPE_FP32, dims: [ 16 ] }
    output { name: "OUTPUT__1"; data_type: TYPE_INT64; dims: 4 dims: 5 }
    dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 }
    parameters: { key: "s" value: { string_value: "a \\"quoted\\" \\\\ value\\n" } }
    parameters { key: "t" value { string_value: 'single' " joined" } }
    optimization { cuda { graphs: true } } ratio: 0.5 big: 1e3
    """
    config = model_repository.parse_pbtxt(text)
    assert config["input"][0]["dims"] == [3, -1, -1] and config["input"][0]["reshape"] == {"shape": [1, 3]}
    assert [o["name"] for o in config["output"]] == ["OUTPUT__0", "OUTPUT__1"]
    assert config["output"][1]["dims"] == [4, 5]
    assert config["dynamic_batching"]["preferred_batch_size"] == [4, 8]
    assert model_repository.config_parameter(config, "s") == 'a "quoted" \\ value\n'
    assert model_repository.config_parameter(config, "t") == "single joined"
    assert config["optimization"]["cuda"]["graphs"] is True and config["ratio"] == 0.5 and config["big"] == 1000.0
    for broken in ('name: "unterminated', "input [ { name: 1 }", "a: b }", "{ x: 1 }"):
        with pytest.raises(ValueError, match="protobuf text"):
            model_repository.parse_pbtxt(broken)
    written = model_repository.model_config("m", {"class_names": ['a"b', "c\\d"]}, "0" * 64)
    assert model_repository.parse_pbtxt(model_repository.format_pbtxt(written)) == json.loads(json.dumps(written))


# ---------------------------------------------------------------------------- external: a KServe v2 server


def test_external_service_answers_like_the_embedded_one(embedded, external, fake_server, images):
    status, _, health = external.request("GET", "/health")
    assert status == 200 and health["backend"] == "external" and health["model_name"] == "pic2card_detr"
    assert health["metadata"]["class_names"] == SMALL_CLASSES and health["binary_tensors"] is True
    for image in images:
        data = png_bytes(image)
        before = len(fake_server.requests)
        status, _, answer = external.detect(data)
        assert status == 200, answer
        _, _, local = embedded.detect(data)
        assert answer["detections"] == local["detections"] and len(answer["detections"]) > 0
        assert (answer["image"], answer["score_threshold"], answer["backend"]) == (local["image"], 0.0, "external")
        # on the wire: the decoded pixels, byte for byte, as UINT8 [H, W, 3]; -1 = the model's threshold
        headers, body = fake_server.requests[before]
        header_length = int(headers["Inference-Header-Content-Length"])
        request = json.loads(body[:header_length])
        assert request["inputs"][0] == {
            "name": "IMAGE__0",
            "shape": list(image.shape),
            "datatype": "UINT8",
            "parameters": {"binary_data_size": image.size},
        }
        assert body[header_length : header_length + image.size] == image.tobytes()
        assert np.frombuffer(body[header_length + image.size :], "<f4").tolist() == [-1.0]
    threshold = 0.5 * (local["detections"][0]["score"] + local["detections"][-1]["score"])
    by_external = external.detect(data, path=f"/detect?score_threshold={threshold!r}")[2]
    by_embedded = embedded.detect(data, path=f"/detect?score_threshold={threshold!r}")[2]
    assert by_external["detections"] == by_embedded["detections"]
    assert 0 < len(by_external["detections"]) < len(local["detections"])


def test_external_backend_in_plain_json(fake_server, reference, images):
    backend = ExternalBackend(Settings(backend="external", model_server_url=fake_server.url, binary=False))
    before = len(fake_server.requests)
    for image in images[:2]:
        assert_identical(backend.detect(image, None), reference(image))
    headers, body = fake_server.requests[before]
    assert "Inference-Header-Content-Length" not in headers
    request = json.loads(body)
    assert request["inputs"][0]["data"] == images[0].reshape(-1).tolist()
    assert request["outputs"] == [{"name": name, "parameters": {"binary_data": False}} for name, _ in KSERVE_OUTPUTS]
    assert backend.class_names == SMALL_CLASSES and backend.max_side == 8192


def test_model_server_errors_become_5xx(external, fake_server, images, tmp_path):
    data = png_bytes(images[2])
    fake_server.fail_with = (500, "PyTorch execute failure: out of memory")
    status, _, answer = external.detect(data)
    assert status == 502 and "model server answered 500: PyTorch execute failure: out of memory" in answer["error"]
    assert external.detect(data)[0] == 200  # the next one goes through

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = ServiceProcess(
        tmp_path / "down", {"DETR_BACKEND": "external", "DETR_MODEL_SERVER_URL": f"http://127.0.0.1:{closed_port}"}
    )
    try:
        status, _, health = down.request("GET", "/health")
        assert status == 503 and health["status"] == "unavailable" and "unreachable" in health["error"]
        status, _, answer = down.detect(data)
        assert status == 503 and f"127.0.0.1:{closed_port} unreachable" in answer["error"]
        assert down.detect(b"not an image")[0] == 503  # no model limits known: nothing to check against
    finally:
        assert down.stop()["exit"] == 0


def test_plain_kserve_server_without_config_endpoint(fake_server, reference, images, small_artefact):
    fake_server.config_endpoint = False
    try:
        settings = Settings(backend="external", model_server_url=fake_server.url)
        backend = ExternalBackend(settings)
        assert backend.metadata() == {} and backend.max_side is None
        with pytest.raises(ServiceError, match="no class names for model 'pic2card_detr'") as error:
            backend.detect(images[0], None)
        assert error.value.status == 503
        # the artefact's sidecar names the classes when the model server cannot
        named = ExternalBackend(dataclasses.replace(settings, model_metadata=str(small_artefact.with_suffix(".json"))))
        assert named.class_names == SMALL_CLASSES and named.max_side == 8192
        assert_identical(named.detect(images[0], None), reference(images[0]))
        unknown = ExternalBackend(Settings(backend="external", model_server_url=fake_server.url, model_name="nope"))
        with pytest.raises(ServiceError, match="'nope' is not available") as error:
            unknown.metadata()
        assert error.value.status == 503
    finally:
        fake_server.config_endpoint = True


def test_malformed_model_server_answers_are_rejected():
    good = json.dumps(
        {"outputs": [{"name": "BOXES__0", "datatype": "FP32", "shape": [1, 4], "parameters": {"binary_data_size": 16}}]}
    ).encode()
    arrays = ExternalBackend.decode(
        good + np.arange(4, dtype="<f4").tobytes(), {"Inference-Header-Content-Length": str(len(good))}
    )
    assert arrays["BOXES__0"].tolist() == [[0.0, 1.0, 2.0, 3.0]]
    cases = [
        (good + b"\x00" * 8, {"Inference-Header-Content-Length": str(len(good))}, "body ends before"),
        (good, {"Inference-Header-Content-Length": str(len(good) + 5)}, "does not fit"),
        (
            json.dumps({"outputs": [{"name": "X", "datatype": "FP32", "shape": [2], "data": [1]}]}).encode(),
            {},
            "1 values for shape",
        ),
        (
            json.dumps({"outputs": [{"name": "X", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}).encode(),
            {},
            "datatype BYTES",
        ),
    ]
    for body, headers, message in cases:
        with pytest.raises(ValueError, match=message):
            ExternalBackend.decode(body, headers)
