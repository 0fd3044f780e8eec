"""The service over HTTP: a FastAPI app served by uvicorn, ``python -m detr_deploy.serve``.

Routes: ``POST /detect`` (answered by :class:`~detr_deploy.serve.service.DetectionService`),
``GET``/``HEAD /health``, ``GET /metrics`` (Prometheus text), and the OpenAPI description at
``/openapi.json``, browsable at ``/docs``. Every error, FastAPI's own included (validation,
404, 405), is JSON ``{"error": message, "status": code}``.

Around the service this module adds what a server facing many clients needs:

* body checks before the body is read: 411 without ``Content-Length``, 413 when the declared
  length is over the limit; a chunked body is counted up to the limit only (413 past it,
  411 otherwise), never kept;
* a bounded worker pool (:class:`WorkerPool`): at most ``DETR_MAX_CONCURRENCY`` requests decode
  and infer at once, in threads (the C++ model and Pillow release the GIL), at most
  ``DETR_MAX_QUEUE`` more wait; beyond that 503 with ``Retry-After``;
* a time limit per request, ``DETR_REQUEST_TIMEOUT_S``: 504 when the answer is late (408 when
  the body itself is);
* connection limits (:mod:`detr_deploy.serve.protocol`): at most ``DETR_MAX_CONNECTIONS`` open
  (503 past it), idle ones closed after ``DETR_KEEP_ALIVE_S``, a request head due within
  ``DETR_HEADER_TIMEOUT_S`` (408), the listen backlog ``DETR_BACKLOG``; what the HTTP parser refuses,
  an HTTP version other than 1.x (505), a target over 8 KiB (414) or headers over 16 KiB (431) are
  answered in JSON too;
* Prometheus metrics in a registry of the app's own (:class:`Metrics`);
* graceful shutdown on SIGTERM and SIGINT (uvicorn's): no new connections, requests in flight
  finish, exit status 0.

Command line::

    python -m detr_deploy.serve [--backend embedded|external] [--model FILE] [--port N] ...

Flags override the ``DETR_*`` environment variables of :mod:`detr_deploy.serve.settings`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from detr_deploy import __version__
from detr_deploy.cli import add_model_argument
from detr_deploy.serve.protocol import OVER_CAPACITY, ConnectionLimits, ServiceH11Protocol
from detr_deploy.serve.service import Backend, DetectionService
from detr_deploy.serve.settings import BACKENDS, DEFAULT_MODEL_NAME, ServiceError, Settings, check_threshold

__all__ = ["JSONAnswer", "WorkerPool", "Metrics", "create_app", "create_server", "listen_socket", "main"]

log = logging.getLogger("detr_deploy.serve.service")  # the name every log line of the service carries

CLOSE = {"Connection": "close"}
# Before a refusal that closes the connection, what the client still sends is read and dropped
# (up to these), so that the kernel does not reset the connection and lose the answer.
DRAIN_BYTES = 16 << 20
DRAIN_SECONDS = 2.0
DRAIN_IDLE_SECONDS = 0.2  # a client that sends nothing for this long is not sending a body
# A request target (path and query) or a head longer than these is refused before routing (414, 431):
# /detect's target is short, and h11 refuses a head still incomplete past 16 KiB anyway.
MAX_TARGET_BYTES = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class JSONAnswer(Response):
    """Compact JSON and a final newline, ``Content-Type: application/json``."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return (json.dumps(content, separators=(",", ":")) + "\n").encode("utf-8")


def error_answer(status: int, message: str, headers: Optional[Mapping[str, str]] = None) -> JSONAnswer:
    return JSONAnswer({"error": message, "status": status}, status_code=status, headers=dict(headers or {}))


# ---------------------------------------------------------------------------- the worker pool


class WorkerPool:
    """At most ``workers`` calls run at once, each in a thread; at most ``queue`` more wait.

    A request holds a place from :meth:`admit` until its call has finished, or was dropped
    before it started: a call that outlives its request's time limit still occupies a worker,
    so it still counts.
    """

    def __init__(self, workers: int, queue: int):
        self.workers, self.queue = workers, queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="detr-worker")
        self._lock = threading.Lock()
        self.admitted = 0  # requests holding a place: reading their body, waiting or running
        self.running = 0
        self._mean_call_s = 0.0  # moving mean of a call's duration, for Retry-After

    @property
    def waiting(self) -> int:
        with self._lock:
            return self.admitted - self.running

    def admit(self) -> bool:
        """Take a place; False when every worker and every queue place is taken."""
        with self._lock:
            if self.admitted >= self.workers + self.queue:
                return False
            self.admitted += 1
            return True

    def leave(self) -> None:
        """Give back the place of an admitted request that will not call :meth:`run`."""
        with self._lock:
            self.admitted -= 1

    def retry_after_s(self) -> int:
        """Seconds until a place is likely free: the calls ahead, shared by the workers, at the mean duration."""
        with self._lock:
            ahead, mean = self.admitted, self._mean_call_s
        return int(min(60, max(1, math.ceil(mean * ahead / self.workers))))

    async def run(self, function: Callable, *args, timeout: float):
        """``function(*args)`` in a worker thread for an admitted request, which gives its place
        back when the call ends. TimeoutError after ``timeout`` seconds: a call not yet started
        is then dropped, a running one finishes in its thread."""
        try:
            future = self._executor.submit(self._call, function, *args)
        except RuntimeError:  # the executor is shut down: the server is stopping
            self.leave()
            raise ServiceError(503, "the service is shutting down") from None
        future.add_done_callback(lambda _: self.leave())
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)  # a timeout cancels the future

    def _call(self, function: Callable, *args):
        started = time.perf_counter()
        with self._lock:
            self.running += 1
        try:
            return function(*args)
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                self.running -= 1
                self._mean_call_s = elapsed if not self._mean_call_s else 0.8 * self._mean_call_s + 0.2 * elapsed

    def state(self) -> Dict[str, int]:
        with self._lock:
            running, admitted = self.running, self.admitted
        return {"workers": self.workers, "queue": self.queue, "running": running, "waiting": admitted - running}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------------- metrics


class Metrics:
    """The app's Prometheus metrics, in a registry of its own (two apps in one process do not mix)."""

    def __init__(self, pool: WorkerPool):
        self.registry = CollectorRegistry()
        mine = {"registry": self.registry}
        by_request = ["route", "method", "status"]
        self.requests = Counter(
            "detr_http_requests", "HTTP requests answered, by route, method, status", by_request, **mine
        )
        self.errors = Counter(
            "detr_http_errors", "HTTP answers with a 4xx or 5xx status, by status", ["status"], **mine
        )
        self.latency = Histogram(
            "detr_http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer, by route",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            **mine,
        )
        self.in_flight = Gauge("detr_http_requests_in_flight", "HTTP requests being answered", **mine)
        Gauge("detr_workers_busy", "Requests decoding or inferring in a worker", **mine).set_function(
            lambda: pool.state()["running"]
        )
        Gauge("detr_requests_waiting", "Admitted requests not yet in a worker", **mine).set_function(
            lambda: pool.state()["waiting"]
        )
        ProcessCollector(registry=self.registry)  # memory, CPU time, open files of the process

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()


def _refusal(scope) -> Optional[JSONAnswer]:
    """The answer to a request refused before routing, whatever its path: on a connection over
    DETR_MAX_CONNECTIONS (503), an HTTP version other than 1.x (505), a target or head too long
    (414, 431). None for the others."""
    if OVER_CAPACITY in scope:
        open_connections, limit = scope[OVER_CAPACITY]
        message = f"busy: {open_connections} connections open (DETR_MAX_CONNECTIONS={limit}); retry later"
        return error_answer(503, message, dict(CLOSE, **{"Retry-After": "1"}))
    version = scope.get("http_version", "1.1")
    if not version.startswith("1."):
        return error_answer(505, f"HTTP/{version} is not supported: send HTTP/1.1", CLOSE)
    target = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
    if target > MAX_TARGET_BYTES:
        return error_answer(414, f"the request target is {target} bytes, more than {MAX_TARGET_BYTES}", CLOSE)
    head = sum(len(key) + len(value) + 4 for key, value in scope["headers"])
    if head > MAX_HEAD_BYTES:
        return error_answer(431, f"the request headers are {head} bytes, more than {MAX_HEAD_BYTES}", CLOSE)
    return None


class _Observe:
    """ASGI middleware: counts, times and logs every request, answers those :func:`_refusal`
    refuses, and closes the connection after an answer that left a chunked body, or a declared
    one larger than ``drain_limit``, unread (uvicorn would otherwise read all of it to keep the
    connection)."""

    def __init__(self, app, metrics: Metrics, routes: frozenset, drain_limit: int):
        self.app, self.metrics, self.routes, self.drain_limit = app, metrics, routes, drain_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        declared = int(headers["content-length"]) if headers.get("content-length", "").isdigit() else 0
        body_pending = chunked or declared > 0
        status = 500

        async def observed_receive():
            nonlocal body_pending
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def observed_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer_headers = list(message.get("headers", []))
                if body_pending and (chunked or declared > self.drain_limit):
                    if not any(key.lower() == b"connection" for key, _ in answer_headers):
                        message = dict(message, headers=answer_headers + [(b"connection", b"close")])
            await send(message)

        refusal = _refusal(scope)
        self.metrics.in_flight.inc()
        try:
            if refusal is None:
                await self.app(scope, observed_receive, observed_send)
            else:  # the connection closes after it: what the client still sends is dropped first
                if body_pending:
                    await _drain_receive(observed_receive, headers.get("expect", ""))
                await refusal(scope, observed_receive, observed_send)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = scope["path"] if scope["path"] in self.routes else "unmatched"  # unknown paths: one label
            self.metrics.observe(route, scope["method"], status, elapsed)
            query = scope.get("query_string", b"").decode("latin-1")
            target = scope["path"] + ("?" + query if query else "")
            log.info("%s %s %d %.1f ms", scope["method"], printable(target), status, 1e3 * elapsed)


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters as Python escapes (``\\n``, ``\\x1b``,
    ``\\u2028``), and backslashes doubled: what a client put in its path cannot forge a log line."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(char if char.isprintable() and char != "\\" else repr(char)[1:-1] for char in text)


# ---------------------------------------------------------------------------- /detect


class _ClientGone(Exception):
    """The client closed the connection before its body ended."""


def _content_type(header: Optional[str]) -> str:
    """The media type, lower case, without parameters; ``text/plain`` when absent or malformed
    (what the standard library's ``Message.get_content_type`` answers)."""
    media_type = (header or "").split(";", 1)[0].strip().lower()
    return media_type if media_type.count("/") == 1 else "text/plain"


async def _read_body(receive, limit: int, keep: bool) -> Tuple[int, bytes, bool]:
    """(bytes received, the body when ``keep``, whether it ended) once it ends or passes ``limit``."""
    received, parts = 0, []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _ClientGone
        chunk = message.get("body", b"")
        received += len(chunk)
        if keep and received <= limit:
            parts.append(chunk)
        ended = not message.get("more_body", False)
        if ended or received > limit:
            return received, b"".join(parts), ended


async def _drain(request: Request) -> None:
    """Read and drop what the client still sends of its body (see DRAIN_BYTES). A client
    waiting for ``100 Continue`` sends nothing before the answer, so it is not waited for."""
    await _drain_receive(request.receive, request.headers.get("expect", ""))


async def _drain_receive(receive, expect: str) -> None:
    if expect.lower() == "100-continue":
        return
    loop = asyncio.get_running_loop()
    deadline, budget = loop.time() + DRAIN_SECONDS, DRAIN_BYTES
    with contextlib.suppress(asyncio.TimeoutError):
        while budget > 0 and loop.time() < deadline:
            message = await asyncio.wait_for(receive(), min(DRAIN_IDLE_SECONDS, deadline - loop.time()))
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))


def _detect_in_worker(service: DetectionService, content_type: str, body: bytes, query) -> Tuple[int, dict]:
    """The service's answer as (status, JSON body), whatever happens in it."""
    try:
        return service.detect(content_type, body, query)
    except ServiceError as error:
        return error.status, {"error": error.message, "status": error.status}
    except Exception as error:  # a bug must not take the server down: answer 500, log it
        log.exception("unexpected error in POST /detect")
        return 500, {"error": f"internal error: {type(error).__name__}: {error}", "status": 500}


async def _refuse_chunked(request: Request, limit: int, over_limit: str, seconds: float) -> Response:
    """A chunked body is counted (not kept) up to ``limit``: 413 past it, 411 otherwise."""
    try:
        received, _, ended = await asyncio.wait_for(_read_body(request.receive, limit, keep=False), seconds)
    except asyncio.TimeoutError:
        return error_answer(408, _late_body(seconds), CLOSE)
    except _ClientGone:
        return error_answer(400, "the client closed the connection before the body ended", CLOSE)
    if received <= limit:
        return error_answer(411, "chunked bodies are not accepted: send Content-Length", CLOSE)
    if not ended:
        await _drain(request)
    return error_answer(413, f"chunked body of more than {limit} bytes {over_limit}", CLOSE)


def _late_body(seconds: float) -> str:
    return f"the body did not arrive within DETR_REQUEST_TIMEOUT_S={seconds:g} s"


async def _detect(request: Request, service: DetectionService, pool: WorkerPool, settings: Settings) -> Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.request_timeout_s
    content_type = _content_type(request.headers.get("content-type"))
    limit = service.max_body_bytes["json" if content_type == "application/json" else "raw"]
    over_limit = f"exceeds the limit of {limit} bytes (DETR_MAX_IMAGE_BYTES={settings.max_image_bytes})"
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return await _refuse_chunked(request, limit, over_limit, settings.request_timeout_s)
    length_text = request.headers.get("content-length")
    if length_text is None:
        return error_answer(411, "Content-Length is required", CLOSE)
    length = int(length_text)  # the HTTP parser has checked it is a number
    if length > limit:  # answered without reading the body into memory
        await _drain(request)
        return error_answer(413, f"body of {length} bytes {over_limit}", CLOSE)
    if not pool.admit():
        state = pool.state()
        return error_answer(
            503,
            f"busy: {state['running']} requests running and {state['waiting']} waiting "
            f"(DETR_MAX_CONCURRENCY={pool.workers}, DETR_MAX_QUEUE={pool.queue}); retry later",
            {"Retry-After": str(pool.retry_after_s())},
        )
    submitted = False  # until then, the place is this function's to give back
    try:
        _, body, _ = await asyncio.wait_for(_read_body(request.receive, limit, keep=True), deadline - loop.time())
        query = urllib.parse.parse_qs(request.url.query, keep_blank_values=True)
        submitted = True
        status, payload = await pool.run(
            _detect_in_worker, service, content_type, body, query, timeout=deadline - loop.time()
        )
    except asyncio.TimeoutError:
        if not submitted:
            return error_answer(408, _late_body(settings.request_timeout_s), CLOSE)
        return error_answer(
            504, f"no answer within DETR_REQUEST_TIMEOUT_S={settings.request_timeout_s:g} s: the model is slow or busy"
        )
    except _ClientGone:  # nobody to answer; the status is for the log and the metrics
        return error_answer(400, "the client closed the connection before the body ended", CLOSE)
    finally:
        if not submitted:
            pool.leave()
    return JSONAnswer(payload, status_code=status)


# ---------------------------------------------------------------------------- the OpenAPI description


class DetectJSON(BaseModel):
    """The JSON form of a ``POST /detect`` request (pic2card's API took base64 images)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(description="the image file's bytes in base64 (standard or URL-safe; data:...;base64, prefix)")
    score_threshold: Optional[float] = Field(None, ge=0, lt=1, description="overrides the query's and the default")


class Detection(BaseModel):
    label: int
    class_name: Optional[str]
    score: float
    box: List[float] = Field(description="x0, y0, x1, y1 in input pixels")


class ImageSize(BaseModel):
    width: int
    height: int


class DetectAnswer(BaseModel):
    detections: List[Detection] = Field(description="sorted by score, highest first")
    image: ImageSize
    score_threshold: Optional[float] = Field(description="the threshold applied")
    backend: str
    timings_ms: Dict[str, float] = Field(description="decode and inference, in milliseconds")


class ErrorAnswer(BaseModel):
    error: str
    status: int


_BINARY = {"schema": {"type": "string", "format": "binary"}}
DETECT_REQUEST_BODY = {
    "required": True,
    "description": "The image file's bytes (PNG, JPEG, GIF, BMP, WebP, ...), or JSON with them in base64.",
    "content": {
        "image/*": _BINARY,
        "application/octet-stream": _BINARY,
        "application/json": {"schema": DetectJSON.model_json_schema()},
    },
}
DETECT_ERRORS = {
    400: "not an image, bad JSON or base64, bad score_threshold, unknown field or query parameter",
    408: "the body did not arrive within DETR_REQUEST_TIMEOUT_S (or the request head within DETR_HEADER_TIMEOUT_S)",
    411: "no Content-Length (chunked bodies are not accepted)",
    414: "a request target over 8 KiB",
    413: "more bytes than DETR_MAX_IMAGE_BYTES, more pixels than DETR_MAX_IMAGE_PIXELS, "
    "or more pixels per side than the model's max_side",
    415: "a content type other than image/*, application/octet-stream or application/json",
    431: "request headers over 16 KiB",
    500: "the model failed",
    502: "the model server answered with an error (external backend)",
    503: "every worker and queue place is taken, or more than DETR_MAX_CONNECTIONS connections are open "
    "(Retry-After says when to retry), or the model server is unreachable",
    504: "no answer within DETR_REQUEST_TIMEOUT_S",
    505: "an HTTP version other than 1.x",
}


def _without_validation_422(app: FastAPI) -> Callable[[], dict]:
    """``app.openapi`` minus the 422 answers FastAPI documents: validation errors are answered 400."""
    generate = app.openapi

    def openapi() -> dict:
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        return schema

    return openapi


# ---------------------------------------------------------------------------- the app


def _validation_message(errors: Sequence[dict]) -> str:
    """FastAPI's validation errors in the service's words (the threshold's as the service says them)."""
    messages = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if location == ["query", "score_threshold"]:
            try:
                check_threshold(error.get("input"))
            except ValueError as problem:
                messages.append(str(problem))
                continue
        messages.append(f"{'.'.join(location)}: {error.get('msg', 'invalid')}")
    return "; ".join(messages) or "invalid request"


def create_app(settings: Settings, service: Optional[DetectionService] = None) -> FastAPI:
    """The service's FastAPI app; ``service`` defaults to the one ``settings`` describe (the model
    loads here, so a bad model fails now). ``app.state`` holds ``service``, ``pool`` and ``metrics``."""
    service = service if service is not None else DetectionService(settings)
    pool = WorkerPool(settings.max_concurrency, settings.max_queue)
    metrics = Metrics(pool)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        pool.close()  # after uvicorn has let the requests in flight finish

    app = FastAPI(
        title="pic2card detection service",
        version=__version__,
        description="Card elements detected by DETR in an image, without torch in Python.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.service, app.state.pool, app.state.metrics = service, pool, metrics

    @app.post(
        "/detect",
        summary="Detect the elements of a card image",
        response_class=JSONAnswer,
        responses={200: {"model": DetectAnswer}}
        | {status: {"model": ErrorAnswer, "description": text} for status, text in DETECT_ERRORS.items()},
        openapi_extra={"requestBody": DETECT_REQUEST_BODY},
    )
    async def detect(
        request: Request,
        score_threshold: Annotated[
            Optional[float],
            Query(ge=0, lt=1, description="detections scoring at or below it are dropped (default: the model's)"),
        ] = None,
    ) -> Response:
        # score_threshold is declared for FastAPI to check and document; the service reads the query itself
        return await _detect(request, service, pool, settings)

    async def health() -> Response:
        status, payload = await run_in_threadpool(service.health)  # the external backend asks its server
        payload["pool"] = dict(pool.state(), request_timeout_s=settings.request_timeout_s)
        return JSONAnswer(payload, status_code=status)

    health_doc = {"summary": "Whether the model can answer, and what it is", "response_class": JSONAnswer}
    app.get("/health", **health_doc, responses={503: {"description": "the model cannot answer"}})(health)
    app.head("/health", **health_doc, include_in_schema=False)(health)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus text format"}},
    )
    async def metrics_text() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        path = request.url.path
        if error.status_code == 404:
            return error_answer(404, f"no such path {path!r}: use POST /detect or GET /health")
        if error.status_code == 405:
            routes = [route for route in app.routes if getattr(route, "path", None) == path]
            allowed = sorted({method for route in routes for method in getattr(route, "methods", None) or ()})
            return error_answer(405, f"{request.method} not allowed on {path}", {"Allow": ", ".join(allowed)})
        return error_answer(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> Response:
        return error_answer(400, _validation_message(error.errors()))

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> Response:
        return error_answer(error.status, error.message)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:  # uvicorn logs the traceback
        return error_answer(500, f"internal error: {type(error).__name__}: {error}", CLOSE)

    app.openapi = _without_validation_422(app)
    routes = frozenset(route.path for route in app.routes)
    app.add_middleware(_Observe, metrics=metrics, routes=routes, drain_limit=service.max_body_bytes["json"])
    return app


# ---------------------------------------------------------------------------- serving


def create_server(app: FastAPI, settings: Settings) -> uvicorn.Server:
    """uvicorn for ``app``: its h11 protocol with the service's connection limits
    (:class:`~detr_deploy.serve.protocol.ServiceH11Protocol`), the app's lifespan, the service's logging."""
    limits = ConnectionLimits(settings.max_connections, settings.header_timeout_s, settings.request_timeout_s)
    config = uvicorn.Config(
        app,
        http=functools.partial(ServiceH11Protocol, limits=limits),  # type: ignore[arg-type]
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        backlog=settings.backlog,  # asyncio listens again with this, whatever listen_socket set
        ws="none",
        lifespan="on",
        log_config=None,  # the root logger's configuration, as for the rest of the service
        access_log=False,  # the service logs one line per request itself
        server_header=False,  # no Server header: the answers do not advertise software or versions
        # requests in flight end within their time limit; this bounds a stalled upload
        timeout_graceful_shutdown=int(math.ceil(settings.request_timeout_s)) + 5,
    )
    return uvicorn.Server(config)


def listen_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket (port 0: the OS picks one), bound before uvicorn starts so that its
    address is known and a taken port fails the start-up. ``backlog``: DETR_BACKLOG."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio turns Nagle's algorithm off only on sockets that say so,
    # and without that every keep-alive answer waits ~40 ms for the client's delayed ACK
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    return listener


def main(argv: Optional[Sequence[str]] = None, backend: Optional[Backend] = None) -> int:
    """``python -m detr_deploy.serve``; ``backend`` replaces the one the settings name (tests)."""
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.serve",
        description="pic2card detection service: POST /detect, GET /health, GET /metrics, /docs. "
        "Flags override the DETR_* environment variables.",
    )
    parser.add_argument("--backend", choices=BACKENDS)
    add_model_argument(parser, what="exported artefact .pt (embedded backend)")
    parser.add_argument("--runtime", help="runtime folder with detr_cpp and lib/ (embedded)")
    parser.add_argument("--model-server-url", help="KServe v2 model server, e.g. http://127.0.0.1:8001 (external)")
    parser.add_argument("--model-name", help=f"model name in the model server (default {DEFAULT_MODEL_NAME})")
    parser.add_argument(
        "--metadata",
        dest="model_metadata",
        help="artefact .pt/.json or model repository giving class names when the model server has no /config "
        "(external)",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 in the Docker image)")
    parser.add_argument("--port", type=int, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--log-level", default=os.environ.get("DETR_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        flags = ("backend", "model", "runtime", "model_server_url", "model_name", "model_metadata", "host", "port")
        settings = Settings.from_env(**{name: getattr(args, name) for name in flags})
        app = create_app(settings, DetectionService(settings, backend))
        listener = listen_socket(settings.host, settings.port, settings.backlog)
    except (ValueError, RuntimeError, OSError) as error:  # bad settings, missing module/model, port taken
        print(f"error: {error}", file=sys.stderr)
        return 1
    server = create_server(app, settings)

    def stop(signum, frame):
        # uvicorn handles SIGTERM and SIGINT while it serves, then sends the signal again to
        # the handler it found: this one, so that the process ends with status 0.
        server.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = listener.getsockname()[:2]
    print(f"detr_deploy.serve.service: {settings.backend} backend listening on http://{host}:{port}", flush=True)
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
    print("detr_deploy.serve.service: stopped", flush=True)
    return 0
