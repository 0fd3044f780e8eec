"""The service over HTTP: ``POST /detect`` and ``GET /health`` on the standard library's threaded server.

:class:`~detr_deploy.serve.service.DetectionService` answers; this module routes requests,
refuses bodies that are too long or of unknown length before reading them, sends the JSON
answers and keeps serving whatever a request does. Command line::

    python -m detr_deploy.serve [--backend embedded|external] [--model FILE] [--port N] ...

Flags override the ``DETR_*`` environment variables of :mod:`detr_deploy.serve.settings`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, Optional, Sequence

from detr_deploy import __version__
from detr_deploy.cli import add_model_argument
from detr_deploy.serve.service import DetectionService
from detr_deploy.serve.settings import BACKENDS, DEFAULT_MODEL_NAME, ServiceError, Settings

__all__ = ["create_server", "main"]

log = logging.getLogger("detr_deploy.serve.service")  # the name every log line of the service carries


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer carries Content-Length
    server_version = f"detr-service/{__version__}"
    timeout = 60  # seconds a client may take to send its request (a stalled one frees its thread)

    @property
    def service(self) -> DetectionService:
        return self.server.service

    def _send(self, status: int, payload: dict, close: bool = False, extra: Optional[Dict[str, str]] = None):
        body = (json.dumps(payload, separators=(",", ":")) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        if close:
            self._linger()

    def _error(self, status: int, message: str, close: bool = False, extra: Optional[Dict[str, str]] = None):
        self._send(status, {"error": message, "status": status}, close=close, extra=extra)

    def _linger(self, budget: int = 16 << 20, seconds: float = 2.0):
        """Close after an answer sent before the request body was read: stop writing, then
        read and drop what the client still sends (up to ``budget`` bytes or ``seconds``).
        Closing with unread data would make the kernel reset the connection, and a reset
        can destroy the answer before the client reads it."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(seconds)
            deadline = time.monotonic() + seconds
            while budget > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(1 << 16, budget))
                if not chunk:
                    break
                budget -= len(chunk)
        except OSError:
            pass

    def _discard_body(self) -> bool:
        """Read and drop the body of a request that will not use it; False if it is too
        large or of unknown length (the answer must then close the connection)."""
        if self.headers.get("Transfer-Encoding"):
            return False
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return False
        if not 0 <= length <= self.service.max_body_bytes["json"]:
            return False
        return len(self.rfile.read(length)) == length

    def _route(self, method: str):
        started = time.perf_counter()
        status = 500
        try:
            url = urllib.parse.urlsplit(self.path)
            routes = {"/health": ("GET", "HEAD"), "/detect": ("POST",)}
            if url.path not in routes or method not in routes[url.path]:
                close = not self._discard_body()
                if url.path not in routes:
                    status = 404
                    self._error(404, f"no such path {url.path!r}: use POST /detect or GET /health", close=close)
                else:
                    status = 405
                    self._error(
                        405,
                        f"{method} not allowed on {url.path}",
                        close=close,
                        extra={"Allow": ", ".join(routes[url.path])},
                    )
            elif url.path == "/health":
                status, payload = self.service.health()
                self._send(status, payload)
            else:
                status = self._detect(url)
        except ServiceError as error:
            status = error.status
            self._error(error.status, error.message)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception as error:  # a bug must not take the server down: answer 500, log it
            log.exception("unexpected error on %s %s", method, self.path)
            status = 500
            try:
                self._error(500, f"internal error: {type(error).__name__}: {error}", close=True)
            except OSError:
                self.close_connection = True
        log.info("%s %s %d %.1f ms", method, self.path, status, 1e3 * (time.perf_counter() - started))

    def _detect(self, url) -> int:
        content_type = self.headers.get_content_type()
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "chunked bodies are not accepted: send Content-Length", close=True)
            return 411
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._error(411, "Content-Length is required", close=True)
            return 411
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(400, f"bad Content-Length {length_text!r}", close=True)
            return 400
        limit = self.service.max_body_bytes["json" if content_type == "application/json" else "raw"]
        if length > limit:  # answered before reading, so the connection closes after it
            self._error(
                413,
                f"body of {length} bytes exceeds the limit of {limit} bytes "
                f"(DETR_MAX_IMAGE_BYTES={self.service.settings.max_image_bytes})",
                close=True,
            )
            return 413
        body = self.rfile.read(length)
        if len(body) != length:  # the client went away mid-body: nobody to answer
            self.close_connection = True
            return 400
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        status, payload = self.service.detect(content_type, body, query)
        self._send(status, payload)
        return status

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_HEAD(self):  # noqa: N802
        self._route("HEAD")

    def do_POST(self):  # noqa: N802
        self._route("POST")

    def do_PUT(self):  # noqa: N802
        self._route("PUT")

    def do_DELETE(self):  # noqa: N802
        self._route("DELETE")

    def log_message(self, format, *args):  # noqa: A002  (http.server's signature)
        log.debug("%s - %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, service: DetectionService):
        self.service = service
        super().__init__(address, _Handler)


def create_server(settings: Settings, service: Optional[DetectionService] = None) -> ThreadingHTTPServer:
    """A bound (not yet serving) threaded HTTP server; ``server.server_address`` has the port."""
    service = service if service is not None else DetectionService(settings)
    return _Server((settings.host, settings.port), service)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.serve",
        description="pic2card detection service: POST /detect, GET /health. "
        "Flags override the DETR_* environment variables.",
    )
    parser.add_argument("--backend", choices=BACKENDS)
    add_model_argument(parser, what="exported artefact .pt (embedded backend)")
    parser.add_argument("--runtime", help="runtime folder with detr_cpp and lib/ (embedded)")
    parser.add_argument("--model-server-url", help="KServe v2 model server, e.g. http://127.0.0.1:8001 (external)")
    parser.add_argument("--model-name", help=f"model name in the model server (default {DEFAULT_MODEL_NAME})")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 in the Docker image)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--log-level", default=os.environ.get("DETR_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(
            backend=args.backend,
            model=args.model,
            runtime=args.runtime,
            model_server_url=args.model_server_url,
            model_name=args.model_name,
            host=args.host,
            port=args.port,
        )
        server = create_server(settings)
    except (ValueError, RuntimeError, OSError) as error:  # bad settings, missing module/model, port taken
        print(f"error: {error}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]

    def stop(signum, frame):  # shutdown() waits for serve_forever, so call it from another thread
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"detr_deploy.serve.service: {settings.backend} backend listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    print("detr_deploy.serve.service: stopped", flush=True)
    return 0
