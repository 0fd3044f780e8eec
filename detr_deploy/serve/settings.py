"""The service's configuration, read from the environment, and the error every part of it answers with.

Environment variables (command-line flags of ``python -m detr_deploy.serve`` override them)::

    DETR_BACKEND            embedded | external                      (default embedded)
    DETR_MODEL              artefact .pt for embedded     (default $DETR_RUNTIME/model.pt)
    DETR_RUNTIME            runtime folder holding detr_cpp and lib/ (default: import
                            detr_cpp, else the repository's build in cpp/)
    DETR_OPTIMIZE           1 | 0: freeze + optimize after loading   (default 1)
    DETR_REQUIRE_SIDECAR    1 | 0: refuse a model without a sidecar .json recording its sha256
                            (default 0: without one, integrity is unchecked and /health says so)
    DETR_NUM_THREADS        torch intra-op threads for embedded      (default: libtorch's)
    DETR_MODEL_SERVER_URL   e.g. http://model-server:8000            (external)
    DETR_MODEL_NAME         model name in the model server    (default pic2card_detr)
    DETR_MODEL_METADATA     artefact .pt/.json or model repository: class names when the model
                            server has no /config (external)
    DETR_MODEL_SERVER_BINARY  1 | 0: binary tensor data extension or plain JSON (default 1)
    DETR_MODEL_SERVER_TIMEOUT seconds per model-server call          (default 30)
    DETR_MAX_IMAGE_BYTES    largest accepted image, bytes            (default 10 MiB)
    DETR_MAX_IMAGE_PIXELS   largest accepted image, width x height, checked from the header
                            before decoding                          (default 40 million)
    DETR_MAX_CONCURRENCY    requests decoded and inferred at once    (default: the CPUs this
                            process may use)
    DETR_MAX_QUEUE          requests waiting beyond those; more get 503 (default 2 x concurrency)
    DETR_REQUEST_TIMEOUT_S  seconds from a request's arrival to its answer; later: 504 (default 60)
    DETR_MAX_CONNECTIONS    connections open at once; a request on one past it gets 503 (default 256)
    DETR_BACKLOG            listen backlog: connections the kernel queues before accept (default 2048)
    DETR_KEEP_ALIVE_S       seconds an idle connection is kept before its next request (default 5)
    DETR_HEADER_TIMEOUT_S   seconds to send a complete request head; later: 408 (default 10)
    DETR_SCORE_THRESHOLD    default threshold            (default: the model's own)
    DETR_HOST, PORT         where to listen                  (default 127.0.0.1, 8000)
    DETR_LOG_LEVEL          DEBUG | INFO | WARNING ... (one INFO line per request; default INFO)
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass, fields
from typing import Mapping, Optional

from detr_deploy.machine import usable_cpus

__all__ = [
    "BACKENDS",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MAX_IMAGE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "ENVIRONMENT_VARIABLES",
    "ServiceError",
    "Settings",
    "check_threshold",
    "usable_cpus",
]

BACKENDS = ("embedded", "external")
DEFAULT_MODEL_NAME = "pic2card_detr"
DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024
# 40 megapixels decode to 120 MB of RGB, about 0.6 GB with Pillow's copy and the model's float input:
# two at once (a 2-core container's workers) leave room in 4 GB
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# An open connection costs the service a few KB, up to ~350 KB while it sends (h11's 16 KiB head buffer,
# uvicorn's 64 KiB body high-water mark, one 256 KiB read): 256 of them stay under 100 MB in a 4 GB
# container, and below the usual 1024 open files
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_BACKLOG = 2048  # uvicorn's; the kernel's memory, capped by net.core.somaxconn

# What Settings.from_env reads (the module docstring describes each).
ENVIRONMENT_VARIABLES = (
    "DETR_BACKEND",
    "DETR_MODEL",
    "DETR_RUNTIME",
    "DETR_OPTIMIZE",
    "DETR_REQUIRE_SIDECAR",
    "DETR_NUM_THREADS",
    "DETR_MODEL_SERVER_URL",
    "DETR_MODEL_NAME",
    "DETR_MODEL_METADATA",
    "DETR_MODEL_SERVER_BINARY",
    "DETR_MODEL_SERVER_TIMEOUT",
    "DETR_MAX_IMAGE_BYTES",
    "DETR_MAX_IMAGE_PIXELS",
    "DETR_MAX_CONCURRENCY",
    "DETR_MAX_QUEUE",
    "DETR_REQUEST_TIMEOUT_S",
    "DETR_MAX_CONNECTIONS",
    "DETR_BACKLOG",
    "DETR_KEEP_ALIVE_S",
    "DETR_HEADER_TIMEOUT_S",
    "DETR_SCORE_THRESHOLD",
    "DETR_HOST",
    "PORT",
    "DETR_LOG_LEVEL",
)


class ServiceError(Exception):
    """An error with the HTTP status it is answered with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def _env_number(environ: Mapping[str, str], name: str, kind: type, default=None):
    """``environ[name]`` as an ``int`` or ``float``, ``default`` when unset or blank."""
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}") from None


def _env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false), got {value!r}")


def check_threshold(value, what: str = "score_threshold") -> Optional[float]:
    """None, or a float in [0, 1); ValueError naming ``what`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} must be a number in [0, 1), got {value!r}") from None
    if not (0.0 <= number < 1.0):  # also rejects nan
        raise ValueError(f"{what} must be in [0, 1), got {value!r}")
    return number


@dataclass(frozen=True)
class Settings:
    """The service's configuration; :meth:`from_env` reads the ``DETR_*`` variables."""

    backend: str = "embedded"
    model: Optional[str] = None
    runtime: Optional[str] = None
    optimize: bool = True
    require_sidecar: bool = False
    num_threads: Optional[int] = None
    model_server_url: Optional[str] = None
    model_name: str = DEFAULT_MODEL_NAME
    model_metadata: Optional[str] = None
    binary: bool = True
    timeout_s: float = 30.0
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_concurrency: Optional[int] = None  # None: usable_cpus()
    max_queue: Optional[int] = None  # None: 2 x max_concurrency
    request_timeout_s: float = 60.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    backlog: int = DEFAULT_BACKLOG
    keep_alive_s: float = 5.0
    header_timeout_s: float = 10.0
    score_threshold: Optional[float] = None
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"DETR_BACKEND must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "external" and not self.model_server_url:
            raise ValueError("the external backend needs DETR_MODEL_SERVER_URL (e.g. http://model-server:8000)")
        if self.model_server_url and urllib.parse.urlsplit(self.model_server_url).scheme not in ("http", "https"):
            raise ValueError(f"DETR_MODEL_SERVER_URL must be an http(s) URL, got {self.model_server_url!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.model_name):
            raise ValueError(f"DETR_MODEL_NAME may hold letters, digits, '_', '.', '-', got {self.model_name!r}")
        if self.max_image_bytes <= 0:
            raise ValueError(f"DETR_MAX_IMAGE_BYTES must be positive, got {self.max_image_bytes}")
        if self.max_image_pixels <= 0:
            raise ValueError(f"DETR_MAX_IMAGE_PIXELS must be positive, got {self.max_image_pixels}")
        if self.max_concurrency is None:
            object.__setattr__(self, "max_concurrency", usable_cpus())
        if self.max_concurrency <= 0:
            raise ValueError(f"DETR_MAX_CONCURRENCY must be positive, got {self.max_concurrency}")
        if self.max_queue is None:
            object.__setattr__(self, "max_queue", 2 * self.max_concurrency)
        if self.max_queue < 0:
            raise ValueError(f"DETR_MAX_QUEUE must be 0 or more, got {self.max_queue}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"DETR_REQUEST_TIMEOUT_S must be positive, got {self.request_timeout_s}")
        if self.max_connections <= 0:
            raise ValueError(f"DETR_MAX_CONNECTIONS must be positive, got {self.max_connections}")
        if not 1 <= self.backlog <= 65535:
            raise ValueError(f"DETR_BACKLOG must be in 1..65535, got {self.backlog}")
        for name, value in (("DETR_KEEP_ALIVE_S", self.keep_alive_s), ("DETR_HEADER_TIMEOUT_S", self.header_timeout_s)):
            if not 0 < value <= 3600:  # also refuses nan
                raise ValueError(f"{name} must be in (0, 3600] seconds, got {value}")
        if self.num_threads is not None and self.num_threads <= 0:
            raise ValueError(f"DETR_NUM_THREADS must be positive, got {self.num_threads}")
        if not self.timeout_s > 0:
            raise ValueError(f"DETR_MODEL_SERVER_TIMEOUT must be positive, got {self.timeout_s}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"PORT must be in 0..65535, got {self.port}")
        check_threshold(self.score_threshold, "DETR_SCORE_THRESHOLD")

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides) -> "Settings":
        """Settings from ``environ`` (default ``os.environ``); ``overrides`` that are not None win."""
        environ = os.environ if environ is None else environ
        timeout = _env_number(environ, "DETR_MODEL_SERVER_TIMEOUT", float)
        request_timeout = _env_number(environ, "DETR_REQUEST_TIMEOUT_S", float)
        keep_alive = _env_number(environ, "DETR_KEEP_ALIVE_S", float)
        header_timeout = _env_number(environ, "DETR_HEADER_TIMEOUT_S", float)
        values = dict(
            backend=environ.get("DETR_BACKEND", "embedded").strip().lower() or "embedded",
            model=environ.get("DETR_MODEL") or None,
            runtime=environ.get("DETR_RUNTIME") or None,
            optimize=_env_bool(environ, "DETR_OPTIMIZE", True),
            require_sidecar=_env_bool(environ, "DETR_REQUIRE_SIDECAR", False),
            num_threads=_env_number(environ, "DETR_NUM_THREADS", int),
            model_server_url=environ.get("DETR_MODEL_SERVER_URL") or None,
            model_name=environ.get("DETR_MODEL_NAME") or DEFAULT_MODEL_NAME,
            model_metadata=environ.get("DETR_MODEL_METADATA") or None,
            binary=_env_bool(environ, "DETR_MODEL_SERVER_BINARY", True),
            timeout_s=30.0 if timeout is None else timeout,
            max_image_bytes=_env_number(environ, "DETR_MAX_IMAGE_BYTES", int, DEFAULT_MAX_IMAGE_BYTES),
            max_image_pixels=_env_number(environ, "DETR_MAX_IMAGE_PIXELS", int, DEFAULT_MAX_IMAGE_PIXELS),
            max_concurrency=_env_number(environ, "DETR_MAX_CONCURRENCY", int),
            max_queue=_env_number(environ, "DETR_MAX_QUEUE", int),
            request_timeout_s=60.0 if request_timeout is None else request_timeout,
            max_connections=_env_number(environ, "DETR_MAX_CONNECTIONS", int, DEFAULT_MAX_CONNECTIONS),
            backlog=_env_number(environ, "DETR_BACKLOG", int, DEFAULT_BACKLOG),
            keep_alive_s=5.0 if keep_alive is None else keep_alive,
            header_timeout_s=10.0 if header_timeout is None else header_timeout,
            score_threshold=_env_number(environ, "DETR_SCORE_THRESHOLD", float),
            host=environ.get("DETR_HOST") or "127.0.0.1",
            port=_env_number(environ, "PORT", int, 8000),
        )
        known = {f.name for f in fields(cls)}
        values.update({key: value for key, value in overrides.items() if key in known and value is not None})
        return cls(**values)
