"""The service against what a damaged model or a slow, greedy or malformed client does.

Each case replays one way the service could be made to serve garbage or to hold resources, against
the real parts: ``python -m detr_deploy.serve`` with the C++ module for models, uvicorn with the
service's protocol on 127.0.0.1 for connections (the gated backend of ``test_service`` stands in for
the model where only the HTTP layer matters). The request-level cases (pixel bombs, 411/413, 503
with Retry-After, 504, JSON nesting, parser refusals as JSON) live in ``test_service.py``; the
model-level ones (sidecar sha256, NaN weights, class count, strict arguments) in ``test_cpp.py``.
Here: those damaged models refused by the service at start-up (it never answers 200 with them),
and the connection limits (keep-alive, head deadline, a body that never ends, the connection cap,
the listen backlog).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from detr_deploy.export.torchscript import load_artefact, save_artefact
from detr_deploy.serve.app import create_app, create_server
from detr_deploy.serve.service import DetectionService
from detr_deploy.serve.settings import Settings

from test_cpp import _flip_byte_in_record, _largest_record
from test_service import PNG, GatedBackend, gated_app, http_request, png_bytes, post_png

# generous upper bounds for deadlines of about a second on a busy 2-core machine; the lower bounds
# are the deadlines themselves
LATE_S = 30


# ---------------------------------------------------------------------------- damaged models


def _start(env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DETR_")}
    environment.update(DETR_NUM_THREADS="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "detr_deploy.serve", "--port", "0", "--host", "127.0.0.1"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
    )


def _resave(small_artefact: Path, path: Path, change=None, **metadata_changes) -> Path:
    module, metadata = load_artefact(small_artefact)
    if change is not None:
        with torch.no_grad():
            change(module)
    for key in ("file", "sha256", "size_bytes"):
        metadata.pop(key, None)
    save_artefact(module, path, dict(metadata, **metadata_changes))  # with a sidecar of its own
    return path


@pytest.fixture(scope="module")
def damaged(small_artefact, tmp_path_factory):
    """name -> (artefact, the message the service must exit with)."""
    folder = tmp_path_factory.mktemp("damaged")
    sidecar = small_artefact.with_suffix(".json")
    flipped = folder / "flipped.pt"
    _flip_byte_in_record(small_artefact, flipped, _largest_record(small_artefact))
    shutil.copyfile(sidecar, folder / "flipped.json")
    truncated = folder / "truncated.pt"
    truncated.write_bytes(small_artefact.read_bytes()[: small_artefact.stat().st_size // 2])
    shutil.copyfile(sidecar, folder / "truncated.json")

    def nan_weight(module):
        dict(module.named_parameters())["model.class_embed.weight"].view(-1)[0] = float("nan")

    classes = json.loads(sidecar.read_text())["class_names"] + ["extra"]
    return {
        "flipped bytes": (flipped, "flipped.pt does not match its sidecar flipped.json: sha256"),
        "truncated": (truncated, "truncated.pt is"),
        "nan weights": (
            _resave(small_artefact, folder / "nan.pt", nan_weight),
            "parameter 'model.class_embed.weight' holds 1 non-finite value",
        ),
        "wrong class count": (
            _resave(small_artefact, folder / "classes.pt", class_names=classes, num_classes=7),
            "lists 7 class_names but the model was built for num_classes=6",
        ),
        "wrong input contract": (
            _resave(small_artefact, folder / "layout.pt", input={"max_side": 8192, "layout": "CHW"}),
            "'input.layout' to be \"HWC\"",
        ),
    }


@pytest.mark.parametrize(
    "case", ["flipped bytes", "truncated", "nan weights", "wrong class count", "wrong input contract"]
)
def test_a_damaged_model_stops_the_start_up(detr_cpp, damaged, case):
    path, message = damaged[case]
    result = _start({"DETR_MODEL": str(path), "DETR_OPTIMIZE": "0"})
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    assert "listening on" not in result.stdout  # it never served


def test_the_python_loader_refuses_the_same_damaged_bytes(damaged):
    # the independent reference: Python's hashlib against the sidecar, in load_artefact
    path, _ = damaged["flipped bytes"]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert hashlib.sha256(path.read_bytes()).hexdigest() != sidecar["sha256"]
    with pytest.raises(ValueError, match="does not match its sidecar flipped.json"):
        load_artefact(path)


def test_a_model_without_sidecar_is_refused_when_required(detr_cpp, small_artefact, tmp_path):
    bare = tmp_path / "bare.pt"
    shutil.copyfile(small_artefact, bare)
    result = _start({"DETR_MODEL": str(bare), "DETR_OPTIMIZE": "0", "DETR_REQUIRE_SIDECAR": "1"})
    assert result.returncode == 1 and "has no sidecar bare.json recording its sha256" in result.stderr, result.stderr


# ---------------------------------------------------------------------------- connections


def _read_until_closed(connection: socket.socket) -> bytes:
    """What arrives until the server closes; a reset (the client's late bytes met a closed socket)
    ends it too, after the data already received."""
    data = b""
    try:
        while chunk := connection.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _json_answer(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return int(head.split()[1]), json.loads(body)


def test_idle_connections_are_closed_after_the_keep_alive_time(tmp_path):
    with gated_app(tmp_path, keep_alive_s=0.5, header_timeout_s=20) as (port, _):
        # a new connection that never sends anything: plain uvicorn would keep it for ever
        started = time.monotonic()  # before connecting: the server's timer starts when it accepts
        with socket.create_connection(("127.0.0.1", port), timeout=LATE_S) as idle:
            assert _read_until_closed(idle) == b""
            # not closed at once; the event loop's timer may fire a few milliseconds early
            assert 0.45 <= time.monotonic() - started < LATE_S
        # after an answer, the same
        with socket.create_connection(("127.0.0.1", port), timeout=LATE_S) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = _read_until_closed(kept)
            assert data.startswith(b"HTTP/1.1 200 ") and data.count(b"HTTP/1.1") == 1


def test_a_request_head_sent_a_byte_at_a_time_gets_408(tmp_path):
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with gated_app(tmp_path, keep_alive_s=0.5, header_timeout_s=1.0) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=LATE_S) as slow:
            started = time.monotonic()
            answer = b""
            for byte in head:  # each byte would re-arm uvicorn's keep-alive timer
                try:
                    slow.sendall(bytes([byte]))
                except OSError:  # closed: the answer is waiting
                    break
                slow.settimeout(0.1)
                try:
                    answer = slow.recv(65536)
                except socket.timeout:
                    continue
                break
            slow.settimeout(LATE_S)
            answer += _read_until_closed(slow)
            elapsed = time.monotonic() - started
        status, body = _json_answer(answer)
        assert status == 408 and body == {
            "error": "the request head did not arrive within DETR_HEADER_TIMEOUT_S=1 s",
            "status": 408,
        }
        assert 1.0 <= elapsed < LATE_S
        assert http_request(port, "GET", "/health")[0] == 200  # the server itself is fine


def test_a_body_shorter_than_its_content_length_is_408_within_the_request_time(tmp_path):
    (tmp_path / "open").touch()  # the gated backend answers at once
    with gated_app(tmp_path, request_timeout_s=1.0) as (port, app):
        with socket.create_connection(("127.0.0.1", port), timeout=LATE_S) as client:
            started = time.monotonic()
            client.sendall(
                b"POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n"
            )
            client.sendall(b"\x89PNG")  # and never the rest
            status, body = _json_answer(_read_until_closed(client))
            elapsed = time.monotonic() - started
        assert status == 408 and "the body did not arrive within DETR_REQUEST_TIMEOUT_S=1 s" in body["error"]
        assert 1.0 <= elapsed < LATE_S
        assert app.state.pool.admitted == 0  # its place was given back
        assert post_png(port)[0] == 200


def test_a_body_still_trickling_after_the_answer_is_cut_at_the_request_time(tmp_path):
    # /health answers without reading the body; the client keeps sending a byte now and then
    with gated_app(tmp_path, request_timeout_s=1.0, keep_alive_s=0.5) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=LATE_S) as client:
            started = time.monotonic()
            client.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            received, closed = b"", False
            while time.monotonic() - started < LATE_S:
                try:
                    client.sendall(b"x")
                except OSError:
                    closed = True
                    break
                client.settimeout(0.1)
                try:
                    chunk = client.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    closed = True
                    break
                if not chunk:
                    closed = True
                    break
                received += chunk
            elapsed = time.monotonic() - started
        assert received.startswith(b"HTTP/1.1 200 ") and closed
        assert 1.0 <= elapsed < LATE_S


def test_connections_past_the_cap_get_503_json_and_the_service_recovers(tmp_path):
    (tmp_path / "open").touch()  # the gated backend answers at once
    with gated_app(tmp_path, max_connections=2) as (port, _):
        held = [socket.create_connection(("127.0.0.1", port), timeout=LATE_S) for _ in range(2)]
        try:
            time.sleep(0.2)  # let the server accept them
            status, headers, raw = http_request(port, "POST", "/detect", png_bytes(np.zeros((8, 8, 3), np.uint8)), PNG)
            answer = json.loads(raw)
            assert status == 503 and answer == {
                "error": "busy: 3 connections open (DETR_MAX_CONNECTIONS=2); retry later",
                "status": 503,
            }
            assert headers["Retry-After"] == "1" and headers["Connection"] == "close"
        finally:
            for connection in held:
                connection.close()
        deadline = time.monotonic() + LATE_S
        while (status := post_png(port)[0]) == 503 and time.monotonic() < deadline:
            time.sleep(0.05)  # until the server has seen the two close
        assert status == 200


def test_the_listen_backlog_is_the_setting(tmp_path):
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) not installed")
    settings = Settings(host="127.0.0.1", port=0, backlog=37)
    server = create_server(create_app(settings, DetectionService(settings, GatedBackend(tmp_path))), settings)
    assert server.config.backlog == 37
    with gated_app(tmp_path, backlog=37) as (port, _):
        listing = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=30
        ).stdout.split()
    # a listening socket's Send-Q is its backlog: what uvicorn's asyncio server listens with
    assert listing[0] == "LISTEN" and listing[2] == "37", listing


def test_keep_alive_requests_on_one_connection_still_work(tmp_path):
    # the deadlines must not cut a client that behaves: three requests on one connection
    import http.client

    (tmp_path / "open").touch()  # the gated backend answers at once
    with gated_app(tmp_path, keep_alive_s=2.0, header_timeout_s=2.0) as (port, _):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=LATE_S)
        try:
            for _ in range(3):
                connection.request("POST", "/detect", png_bytes(np.zeros((8, 8, 3), np.uint8)), PNG)
                response = connection.getresponse()
                assert response.status == 200 and json.loads(response.read())["detections"][0]["class_name"] == "thing"
        finally:
            connection.close()


def test_zip_with_flipped_metadata_byte_is_named_by_its_sidecar(detr_cpp, small_artefact, tmp_path):
    # damage inside the embedded metadata: the sha256 names it before the metadata parser sees it
    damaged = tmp_path / "meta.pt"
    _flip_byte_in_record(small_artefact, damaged, "extra/metadata.json")
    shutil.copyfile(small_artefact.with_suffix(".json"), tmp_path / "meta.json")
    with zipfile.ZipFile(damaged) as archive:
        assert archive.testzip() is not None  # zip's CRC sees it too, but torch does not check it
    result = _start({"DETR_MODEL": str(damaged), "DETR_OPTIMIZE": "0"})
    assert result.returncode == 1 and "meta.pt does not match its sidecar meta.json" in result.stderr, result.stderr
