"""A minimal pic2card detection service: ``POST /detect`` and ``GET /health``, standard library only.

The service decodes an image (Pillow), hands it to a *backend* and returns the detections as
JSON. It never imports torch: its dependencies are Python, numpy and Pillow, plus, for the
embedded backend, this repository's C++ module ``detr_cpp`` and the libtorch libraries it
links (the slim runtime folder of :mod:`detr_deploy.native.runtime_folder`).

Backends, chosen by ``DETR_BACKEND``:

``embedded``
    the model runs in this process: ``detr_cpp.Detector`` (C++ and libtorch, GIL released
    during inference, so the threaded server runs requests in parallel).
``external``
    the model runs in a model server that speaks the KServe v2 inference protocol over
    HTTP (Triton Inference Server with its PyTorch backend; the model repository comes from
    ``python -m detr_deploy.export.model_repository``). The service forwards each image as a UINT8
    tensor ``[H, W, 3]`` and reads back boxes, scores and labels.

Requests to ``POST /detect``:

* raw image bytes with ``Content-Type: image/*`` or ``application/octet-stream``;
* JSON ``{"image": "<base64>", "score_threshold": 0.7}`` with ``Content-Type:
  application/json`` (pic2card's API took base64 images; a ``data:image/...;base64,``
  prefix is accepted, ``score_threshold`` is optional);
* ``?score_threshold=0.7`` in the query string works for both.

Answer: ``{"detections": [{"label", "class_name", "score", "box": [x0, y0, x1, y1]}],
"image": {"width", "height"}, "score_threshold", "backend", "timings_ms"}``, boxes in input
pixels, sorted by score. Errors are JSON ``{"error": message, "status": code}``: 400 bad
input (not an image, bad base64/JSON/threshold), 411 no Content-Length, 413 image too large
(bytes or pixels), 415 wrong content type, 404/405 wrong path/method; 500 the model failed,
502 the model server answered with an error, 503 the model server cannot be reached.
No request can stop the process.

Configuration (environment; command-line flags override)::

    DETR_BACKEND            embedded | external                      (default embedded)
    DETR_MODEL              artefact .pt for embedded     (default $DETR_RUNTIME/model.pt)
    DETR_RUNTIME            runtime folder holding detr_cpp and lib/ (default: import
                            detr_cpp, else the repository's build in cpp/)
    DETR_OPTIMIZE           1 | 0: freeze + optimize after loading   (default 1)
    DETR_NUM_THREADS        torch intra-op threads for embedded      (default: libtorch's)
    DETR_MODEL_SERVER_URL   e.g. http://model-server:8000            (external)
    DETR_MODEL_NAME         model name in the model server    (default pic2card_detr)
    DETR_MODEL_SERVER_BINARY  1 | 0: binary tensor data extension or plain JSON (default 1)
    DETR_MODEL_SERVER_TIMEOUT seconds per model-server call          (default 30)
    DETR_MAX_IMAGE_BYTES    largest accepted image, bytes            (default 10 MiB)
    DETR_SCORE_THRESHOLD    default threshold            (default: the model's own)
    DETR_HOST, PORT         where to listen                  (default 127.0.0.1, 8000)
    DETR_LOG_LEVEL          DEBUG | INFO | WARNING ... (one INFO line per request; default INFO)

Command line::

    python -m detr_deploy.serve [--backend embedded|external] [--model FILE] [--port N] ...

The end of this module reads ``pic2card_notes/Dockerfile`` and ``.dockerignore`` without a
Docker engine: what each image copies (:func:`copy_sources`), its environment
(:func:`image_environment`) and what it weighs on top of the Python base image
(:func:`image_payload`, for chapter 04's size comparison).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import importlib
import importlib.util
import io
import json
import logging
import math
import os
import re
import shlex
import signal
import socket
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from detr_deploy import __version__
from detr_deploy.cli import add_model_argument
from detr_deploy.images import to_rgb_array
from detr_deploy.native.loader import load_detr_cpp
from detr_deploy.paths import CPP_DIR, REPO_ROOT

__all__ = [
    "BACKENDS",
    "KSERVE_INPUTS",
    "KSERVE_OUTPUTS",
    "ServiceError",
    "Settings",
    "ENVIRONMENT_VARIABLES",
    "load_detr_cpp",
    "EmbeddedBackend",
    "ExternalBackend",
    "decode_image",
    "DetectionService",
    "create_server",
    "main",
    "DOCKERFILE",
    "DOCKERIGNORE",
    "dockerfile_stages",
    "copy_sources",
    "image_environment",
    "DockerIgnore",
    "image_payload",
    "installed_size",
]

log = logging.getLogger("detr_deploy.serve.service")

BACKENDS = ("embedded", "external")
DEFAULT_MODEL_NAME = "pic2card_detr"
DEFAULT_MAX_IMAGE_BYTES = 10 * 1024 * 1024

# The tensor names of the model server's contract, in forward() order (Triton's PyTorch
# backend maps ``<name>__<index>`` to the index-th argument / output). The model repository
# (detr_deploy.export.model_repository) writes its config.pbtxt from these.
KSERVE_INPUTS = (("IMAGE__0", "UINT8"), ("SCORE_THRESHOLD__1", "FP32"))
KSERVE_OUTPUTS = (("BOXES__0", "FP32"), ("SCORES__1", "FP32"), ("LABELS__2", "INT64"))
_NUMPY_DTYPES = {"UINT8": "<u1", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}


# What Settings.from_env reads (the module docstring describes each).
ENVIRONMENT_VARIABLES = (
    "DETR_BACKEND", "DETR_MODEL", "DETR_RUNTIME", "DETR_OPTIMIZE", "DETR_NUM_THREADS", "DETR_MODEL_SERVER_URL",
    "DETR_MODEL_NAME", "DETR_MODEL_SERVER_BINARY", "DETR_MODEL_SERVER_TIMEOUT", "DETR_MAX_IMAGE_BYTES",
    "DETR_SCORE_THRESHOLD", "DETR_HOST", "PORT", "DETR_LOG_LEVEL",
)


class ServiceError(Exception):
    """An error with the HTTP status it is answered with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


# ---------------------------------------------------------------------------- settings


def _env_float(environ: Mapping[str, str], name: str) -> Optional[float]:
    value = environ.get(name, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _env_int(environ: Mapping[str, str], name: str, default: Optional[int]) -> Optional[int]:
    value = environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


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
    num_threads: Optional[int] = None
    model_server_url: Optional[str] = None
    model_name: str = DEFAULT_MODEL_NAME
    binary: bool = True
    timeout_s: float = 30.0
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
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
        timeout = _env_float(environ, "DETR_MODEL_SERVER_TIMEOUT")
        values = dict(
            backend=environ.get("DETR_BACKEND", "embedded").strip().lower() or "embedded",
            model=environ.get("DETR_MODEL") or None,
            runtime=environ.get("DETR_RUNTIME") or None,
            optimize=_env_bool(environ, "DETR_OPTIMIZE", True),
            num_threads=_env_int(environ, "DETR_NUM_THREADS", None),
            model_server_url=environ.get("DETR_MODEL_SERVER_URL") or None,
            model_name=environ.get("DETR_MODEL_NAME") or DEFAULT_MODEL_NAME,
            binary=_env_bool(environ, "DETR_MODEL_SERVER_BINARY", True),
            timeout_s=30.0 if timeout is None else timeout,
            max_image_bytes=_env_int(environ, "DETR_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES),
            score_threshold=_env_float(environ, "DETR_SCORE_THRESHOLD"),
            host=environ.get("DETR_HOST") or "127.0.0.1",
            port=_env_int(environ, "PORT", 8000),
        )
        known = {f.name for f in fields(cls)}
        values.update({key: value for key, value in overrides.items() if key in known and value is not None})
        return cls(**values)


# ---------------------------------------------------------------------------- backends


class EmbeddedBackend:
    """The model in this process: ``detr_cpp.Detector``."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self.detr_cpp = load_detr_cpp(runtime=settings.runtime)
        model = settings.model or (str(Path(settings.runtime) / "model.pt") if settings.runtime else None)
        if not model:
            raise ValueError("the embedded backend needs DETR_MODEL (an artefact .pt) or DETR_RUNTIME")
        self.model_path = model
        self.detector = self.detr_cpp.Detector(model, num_threads=settings.num_threads, optimize=settings.optimize)
        self.metadata = dict(self.detector.metadata)
        self.class_names = list(self.detector.class_names)
        self.max_side = int(self.detector.max_side)
        self.default_threshold = float(self.detector.score_threshold)

    def info(self) -> dict:
        return {
            "model": self.model_path,
            "libtorch": self.detr_cpp.libtorch_version(),
            "optimized": bool(self.detector.optimized),
            "threads": int(self.detr_cpp.get_num_threads()),
            "metadata": self.metadata,
        }

    def detect(self, image: np.ndarray, score_threshold: Optional[float]) -> Dict[str, np.ndarray]:
        try:
            return self.detector.detect(image, score_threshold=score_threshold)
        except ValueError as error:  # the model rejected this image
            raise ServiceError(400, f"the model rejected the image: {error}") from None
        except RuntimeError as error:
            raise ServiceError(500, f"the model failed: {error}") from None


class ExternalBackend:
    """The model in a KServe v2 model server (Triton): one ``/infer`` call per image.

    With ``binary`` (Triton's binary tensor data extension) the image travels as raw bytes
    after the JSON header; without it, as a JSON list of numbers (plain KServe v2, larger
    and slower). The model's class names and default threshold come from the
    ``detr_metadata`` parameter of the model's configuration (Triton's
    ``GET /v2/models/<name>/config``), fetched on first use and kept.
    """

    name = "external"

    def __init__(self, settings: Settings):
        self.url = settings.model_server_url.rstrip("/")
        self.model_name = settings.model_name
        self.binary = settings.binary
        self.timeout_s = settings.timeout_s
        self._metadata: Optional[dict] = None
        self._lock = threading.Lock()

    # -- HTTP plumbing

    def _request(self, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[Dict[str, str]] = None) -> Tuple[int, Dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers.items()), error.read()
        except (urllib.error.URLError, OSError) as error:  # refused, DNS, timeout, reset
            reason = getattr(error, "reason", error)
            raise ServiceError(503, f"model server {self.url} unreachable: {reason}") from None

    @staticmethod
    def _error_text(body: bytes) -> str:
        try:
            return str(json.loads(body.decode("utf-8")).get("error", body[:300]))
        except (ValueError, UnicodeDecodeError, AttributeError):
            return body[:300].decode("utf-8", "replace")

    @property
    def _model_path(self) -> str:
        return "/v2/models/" + urllib.parse.quote(self.model_name, safe="")

    # -- metadata

    def metadata(self) -> dict:
        """The artefact's metadata as the model repository recorded it ({} if the server has none)."""
        with self._lock:
            if self._metadata is None:
                status, _, body = self._request("GET", self._model_path + "/config")
                if status == 200:
                    try:
                        self._metadata = _metadata_from_config(json.loads(body.decode("utf-8")))
                    except (UnicodeDecodeError, ValueError, AttributeError):
                        raise ServiceError(502, "model server sent a configuration that is not a JSON object") from None
                else:  # a KServe server without Triton's configuration extension, or no such model
                    known, _, known_body = self._request("GET", self._model_path)
                    if known != 200:
                        raise ServiceError(503, f"model {self.model_name!r} is not available on {self.url} "
                                                f"({known}: {self._error_text(known_body)})")
                    self._metadata = {}
            return self._metadata

    @property
    def class_names(self) -> List[str]:
        return list(self.metadata().get("class_names", []))

    @property
    def max_side(self) -> Optional[int]:
        return (self.metadata().get("input") or {}).get("max_side")

    @property
    def default_threshold(self) -> Optional[float]:
        return self.metadata().get("score_threshold")

    def info(self) -> dict:
        status, _, body = self._request("GET", self._model_path + "/ready")
        if status != 200:
            raise ServiceError(503, f"model {self.model_name!r} is not ready on {self.url} "
                                    f"({status}: {self._error_text(body) or 'no reason given'})")
        return {"model_server": self.url, "model_name": self.model_name, "binary_tensors": self.binary,
                "metadata": self.metadata()}

    # -- inference

    def encode(self, image: np.ndarray, score_threshold: Optional[float]) -> Tuple[bytes, Dict[str, str]]:
        """The KServe v2 inference request for one image: (body, headers)."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        threshold = np.array([-1.0 if score_threshold is None else score_threshold], dtype="<f4")
        tensors = [(KSERVE_INPUTS[0], image), (KSERVE_INPUTS[1], threshold)]
        inputs = []
        for (name, datatype), array in tensors:
            entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
            if self.binary:
                entry["parameters"] = {"binary_data_size": int(array.nbytes)}
            else:
                entry["data"] = array.reshape(-1).tolist()
            inputs.append(entry)
        outputs = [{"name": name, "parameters": {"binary_data": self.binary}} for name, _ in KSERVE_OUTPUTS]
        header = json.dumps({"inputs": inputs, "outputs": outputs}, separators=(",", ":")).encode("utf-8")
        if not self.binary:
            return header, {"Content-Type": "application/json"}
        body = b"".join([header] + [array.astype(_NUMPY_DTYPES[datatype], copy=False).tobytes()
                                    for (_, datatype), array in tensors])
        return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}

    @staticmethod
    def decode(body: bytes, headers: Mapping[str, str]) -> Dict[str, np.ndarray]:
        """A KServe v2 inference response -> {output name: array}; ValueError if malformed."""
        lowered = {key.lower(): value for key, value in headers.items()}
        header_length = lowered.get("inference-header-content-length")
        header_length = int(header_length) if header_length is not None else len(body)
        if not 0 < header_length <= len(body):
            raise ValueError(f"Inference-Header-Content-Length {header_length} does not fit a {len(body)}-byte body")
        response = json.loads(body[:header_length].decode("utf-8"))
        offset = header_length
        arrays: Dict[str, np.ndarray] = {}
        for output in response.get("outputs", []):
            name, datatype, shape = output["name"], output["datatype"], [int(d) for d in output["shape"]]
            if datatype not in _NUMPY_DTYPES:
                raise ValueError(f"output {name} has datatype {datatype}, which this client does not read")
            dtype = np.dtype(_NUMPY_DTYPES[datatype])
            size = (output.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                chunk = body[offset: offset + int(size)]
                offset += int(size)
                if len(chunk) != int(size):
                    raise ValueError(f"output {name}: body ends before its {size} bytes of binary data")
                array = np.frombuffer(chunk, dtype=dtype)
            else:
                array = np.asarray(output.get("data", []), dtype=dtype).reshape(-1)
            if array.size != math.prod(shape):
                raise ValueError(f"output {name}: {array.size} values for shape {shape}")
            arrays[name] = array.reshape(shape).astype(dtype.newbyteorder("="), copy=False)
        return arrays

    def detect(self, image: np.ndarray, score_threshold: Optional[float]) -> Dict[str, np.ndarray]:
        body, headers = self.encode(image, score_threshold)
        status, response_headers, response = self._request("POST", self._model_path + "/infer", body, headers)
        if status != 200:
            raise ServiceError(502, f"model server answered {status}: {self._error_text(response)}")
        try:
            arrays = self.decode(response, response_headers)
            boxes, scores, labels = (arrays[name] for name, _ in KSERVE_OUTPUTS)
        except (ValueError, KeyError, TypeError) as error:
            raise ServiceError(502, f"model server sent a malformed response: {error}") from None
        count = scores.shape[0] if scores.ndim == 1 else -1
        if boxes.shape != (count, 4) or labels.shape != (count,):
            raise ServiceError(502, f"model server sent inconsistent outputs: boxes {list(boxes.shape)}, "
                                    f"scores {list(scores.shape)}, labels {list(labels.shape)}")
        return {"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32),
                "labels": labels.astype(np.int64)}


def _metadata_from_config(config: dict) -> dict:
    """The ``detr_metadata`` parameter of a Triton model configuration (JSON form), parsed."""
    parameters = config.get("parameters") or {}  # AttributeError if config is not a dict
    entry = parameters.get("detr_metadata") if isinstance(parameters, dict) else None
    if not isinstance(entry, dict):
        return {}
    text = entry.get("string_value", entry.get("stringValue"))
    try:
        metadata = json.loads(text) if text else {}
    except ValueError:
        return {}
    return metadata if isinstance(metadata, dict) else {}


# ---------------------------------------------------------------------------- requests


def decode_image(data: bytes, max_side: Optional[int] = None) -> np.ndarray:
    """Image file bytes -> uint8 RGB [H, W, 3]; ServiceError 400 (not an image) or 413 (too large).

    The size is checked from the header, before the pixels are decoded, against ``max_side``
    (the model's limit) and Pillow's decompression-bomb limit.
    """
    if not data:
        raise ServiceError(400, "empty body: send the image bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max_side and max(width, height) > max_side:
                raise ServiceError(413, f"image {width}x{height} exceeds the model's limit of {max_side} pixels per side")
            if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
                raise ServiceError(413, f"image {width}x{height} has more than {Image.MAX_IMAGE_PIXELS} pixels")
            array = to_rgb_array(image)
    except ServiceError:
        raise
    except UnidentifiedImageError:
        raise ServiceError(400, "the body is not an image Pillow can decode (PNG, JPEG, GIF, BMP, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ServiceError(400, f"the image could not be decoded: {error}") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ServiceError(400, f"the image is empty ({array.shape[1]}x{array.shape[0]})")
    return array


def _decode_base64(text) -> bytes:
    """The ``image`` field of a JSON request -> bytes: standard or URL-safe base64, padding
    optional, whitespace ignored, an optional ``data:...;base64,`` prefix."""
    if not isinstance(text, str):
        raise ServiceError(400, "'image' must be a base64 string")
    if text.startswith("data:"):
        prefix, _, text = text.partition(",")
        if not prefix.endswith(";base64"):
            raise ServiceError(400, "a data URL in 'image' must be base64 encoded (data:image/png;base64,...)")
    text = "".join(text.split())
    altchars = b"-_" if ("-" in text or "_" in text) else None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ServiceError(400, "'image' is not valid base64") from None


class DetectionService:
    """What the HTTP handler calls: request bytes in, (status, JSON-able answer) out."""

    def __init__(self, settings: Settings, backend=None):
        self.settings = settings
        self.backend = backend if backend is not None else (
            EmbeddedBackend(settings) if settings.backend == "embedded" else ExternalBackend(settings))
        self.started = time.time()

    @property
    def max_body_bytes(self) -> Dict[str, int]:
        raw = self.settings.max_image_bytes
        return {"raw": raw, "json": 4 * math.ceil(raw / 3) + 64 * 1024}  # base64 + room for the JSON around it

    def health(self) -> Tuple[int, dict]:
        answer = {"status": "ok", "backend": self.backend.name, "service_version": __version__,
                  "uptime_s": round(time.time() - self.started, 1),
                  "limits": {"max_image_bytes": self.settings.max_image_bytes},
                  "score_threshold": self.settings.score_threshold}
        try:
            answer.update(self.backend.info())
        except ServiceError as error:
            answer.update(status="unavailable", error=error.message)
            return 503, answer
        return 200, answer

    def detect(self, content_type: str, body: bytes, query: Mapping[str, List[str]]) -> Tuple[int, dict]:
        start = time.perf_counter()
        threshold = self._query_threshold(query)
        if content_type == "application/json":
            data, json_threshold = self._parse_json(body)
            threshold = json_threshold if json_threshold is not None else threshold
        elif content_type.startswith("image/") or content_type == "application/octet-stream":
            data = body
        else:
            raise ServiceError(415, f"unsupported Content-Type {content_type!r}: send image bytes "
                                    "(image/png, image/jpeg, ... or application/octet-stream) "
                                    "or JSON {\"image\": \"<base64>\"} (application/json)")
        if len(data) > self.settings.max_image_bytes:
            raise ServiceError(413, f"image of {len(data)} bytes exceeds DETR_MAX_IMAGE_BYTES="
                                    f"{self.settings.max_image_bytes}")
        if threshold is None:
            threshold = self.settings.score_threshold
        image = decode_image(data, self.backend.max_side)
        decoded = time.perf_counter()
        found = self.backend.detect(image, threshold)
        inferred = time.perf_counter()
        names = self.backend.class_names
        detections = [
            {"label": int(label), "class_name": names[label] if 0 <= label < len(names) else None,
             "score": float(score), "box": [float(v) for v in box]}
            for box, score, label in zip(found["boxes"], found["scores"], found["labels"].tolist())
        ]
        return 200, {
            "detections": detections,
            "image": {"width": int(image.shape[1]), "height": int(image.shape[0])},
            "score_threshold": threshold if threshold is not None else self.backend.default_threshold,
            "backend": self.backend.name,
            "timings_ms": {"decode": round(1e3 * (decoded - start), 2),
                           "inference": round(1e3 * (inferred - decoded), 2)},
        }

    @staticmethod
    def _query_threshold(query: Mapping[str, List[str]]) -> Optional[float]:
        unknown = sorted(set(query) - {"score_threshold"})
        if unknown:
            raise ServiceError(400, f"unknown query parameter(s): {', '.join(unknown)} (known: score_threshold)")
        values = query.get("score_threshold")
        if not values:
            return None
        try:
            return check_threshold(values[-1])
        except ValueError as error:
            raise ServiceError(400, str(error)) from None

    @staticmethod
    def _parse_json(body: bytes) -> Tuple[bytes, Optional[float]]:
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise ServiceError(400, f"the body is not valid JSON: {error}") from None
        if not isinstance(payload, dict) or "image" not in payload:
            raise ServiceError(400, "JSON body must be an object with an 'image' field (base64 image bytes)")
        unknown = sorted(set(payload) - {"image", "score_threshold"})
        if unknown:
            raise ServiceError(400, f"unknown JSON field(s): {', '.join(unknown)} (known: image, score_threshold)")
        try:
            threshold = check_threshold(payload.get("score_threshold"))
        except ValueError as error:
            raise ServiceError(400, str(error)) from None
        return _decode_base64(payload["image"]), threshold


# ---------------------------------------------------------------------------- HTTP


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
                    self._error(405, f"{method} not allowed on {url.path}", close=close,
                                extra={"Allow": ", ".join(routes[url.path])})
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
            self._error(413, f"body of {length} bytes exceeds the limit of {limit} bytes "
                             f"(DETR_MAX_IMAGE_BYTES={self.service.settings.max_image_bytes})", close=True)
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
    parser = argparse.ArgumentParser(prog="python -m detr_deploy.serve",
                                     description="pic2card detection service: POST /detect, GET /health. "
                                                 "Flags override the DETR_* environment variables.")
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
        settings = Settings.from_env(backend=args.backend, model=args.model, runtime=args.runtime,
                                     model_server_url=args.model_server_url, model_name=args.model_name,
                                     host=args.host, port=args.port)
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


# ---------------------------------------------------------------------------- images, without Docker

DOCKERFILE = REPO_ROOT / "pic2card_notes" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _dockerfile_instructions(text: str) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def dockerfile_stages(dockerfile: Path = DOCKERFILE) -> Tuple[Dict[str, str], Dict[str, dict]]:
    """(global ARG defaults, {stage name: {"base": FROM argument, "copies": [(sources, dest)],
    "runs": [RUN arguments], "env": {ENV name: value}}}), stages in file order."""
    global_args: Dict[str, str] = {}
    stages: Dict[str, dict] = {}
    stage = None
    for keyword, rest in _dockerfile_instructions(Path(dockerfile).read_text()):
        if keyword == "ARG" and stage is None:
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            stage = stages[name] = {"base": words[0], "copies": [], "runs": [], "env": {}}
        elif keyword == "RUN" and stage is not None:
            stage["runs"].append(rest)
        elif keyword == "ENV" and stage is not None:
            words = shlex.split(rest)
            if words and "=" not in words[0]:  # the old form: ENV KEY value with spaces
                stage["env"][words[0]] = " ".join(words[1:])
            else:
                stage["env"].update(word.split("=", 1) for word in words)
        elif keyword in ("COPY", "ADD") and stage is not None:
            words = [w for w in rest.split() if not w.startswith("--chown") and not w.startswith("--chmod")]
            if any(w.startswith("--from") for w in words):
                continue  # from another stage or image, not from the build context
            words = [w for w in words if not w.startswith("--")]
            stage["copies"].append((words[:-1], words[-1]))
    return global_args, stages


def _expand(text: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def _stage_chain(target: Optional[str], dockerfile: Path) -> List[dict]:
    """The stages an image for build argument TARGET=``target`` is made of, base first."""
    global_args, stages = dockerfile_stages(dockerfile)
    variables = dict(global_args, **({"TARGET": target} if target else {}))
    name = list(stages)[-1]
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = _expand(stages[name]["base"], variables)
    return chain[::-1]


def copy_sources(target: Optional[str] = None, dockerfile: Path = DOCKERFILE) -> List[Tuple[str, str]]:
    """(context path, image destination) of every COPY from the build context into the image
    built with ``--build-arg TARGET=<target>`` (default: the Dockerfile's default target)."""
    return [(source, dest) for stage in _stage_chain(target, dockerfile) for sources, dest in stage["copies"]
            for source in sources]


def image_environment(target: Optional[str] = None, dockerfile: Path = DOCKERFILE) -> Dict[str, str]:
    """The ENV variables the image for ``TARGET=<target>`` is built with (later stages win)."""
    environment: Dict[str, str] = {}
    for stage in _stage_chain(target, dockerfile):
        environment.update(stage["env"])
    return environment


class DockerIgnore:
    """``.dockerignore`` matching: patterns in order, the last match wins, ``!`` re-includes;
    a pattern that matches a folder matches everything under it; ``*`` stays within one
    path element, ``**`` crosses them (Docker's rules, for the patterns used here)."""

    def __init__(self, path: Path = DOCKERIGNORE):
        self.rules: List[Tuple[bool, re.Pattern]] = []
        if Path(path).is_file():
            for line in Path(path).read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                include = line.startswith("!")
                pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
                self.rules.append((include, re.compile(self._translate(pattern) + r"(/.*)?\Z")))

    @staticmethod
    def _translate(pattern: str) -> str:
        out, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**", index):
                out, index = out + ".*", index + 2
            elif pattern[index] == "*":
                out, index = out + "[^/]*", index + 1
            elif pattern[index] == "?":
                out, index = out + "[^/]", index + 1
            else:
                out, index = out + re.escape(pattern[index]), index + 1
        return out

    def excluded(self, relative_path: str) -> bool:
        path = os.path.normpath(relative_path).lstrip("/")
        verdict = False
        for include, regex in self.rules:
            if regex.match(path):
                verdict = not include
        return verdict


def _files_under(root: Path, relative: str, ignore: DockerIgnore) -> Dict[str, int]:
    path = root / relative
    if path.is_file():
        return {} if ignore.excluded(relative) else {relative: path.stat().st_size}
    found = {}
    for item in sorted(path.rglob("*")):
        name = str(item.relative_to(root))
        if item.is_file() and not ignore.excluded(name):
            found[name] = item.stat().st_size
    return found


def installed_size(distribution: str) -> int:
    """Bytes a pip-installed distribution takes (its RECORD), e.g. ``installed_size("torch")``."""
    from importlib import metadata

    files = metadata.distribution(distribution).files or []
    total = 0
    for item in files:
        located = Path(item.locate())
        if located.is_file():
            total += located.stat().st_size
    return total


def image_payload(target: Optional[str] = None, context: Path = REPO_ROOT, dockerfile: Path = DOCKERFILE,
                  dockerignore: Optional[Path] = None) -> dict:
    """What the image for ``TARGET=<target>`` adds on top of its Python base image, measured
    from the build context (no Docker engine): the files its COPY instructions take (after
    ``.dockerignore``) and the pip packages it installs (their size in this environment).

    Returns ``{"target", "copied": {path: bytes}, "missing": [paths], "pip": {dist: bytes},
    "copied_bytes", "pip_bytes", "total_bytes"}``. ``missing`` lists COPY sources not in
    ``context`` (run the build steps first: ``make build`` and ``python -m detr_deploy.native.runtime_folder``).
    """
    context = Path(context)
    ignore = DockerIgnore(dockerignore if dockerignore is not None else context / ".dockerignore")
    global_args, _ = dockerfile_stages(dockerfile)
    chain = _stage_chain(target, dockerfile)
    copied: Dict[str, int] = {}
    missing: List[str] = []
    for source, _ in copy_sources(target, dockerfile):
        if not (context / source).exists():
            missing.append(source)
        else:
            copied.update(_files_under(context, source.rstrip("/"), ignore))
    pip: Dict[str, int] = {}
    for stage in chain:
        for run in stage["runs"]:
            if re.search(r"\bpip3? install\b", run):
                for name in re.findall(r"[\"']?([A-Za-z0-9_.\-]+)==", run):
                    pip[name.lower()] = installed_size(name)
    return {
        "target": target or global_args.get("TARGET"),
        "copied": copied,
        "missing": missing,
        "pip": pip,
        "copied_bytes": sum(copied.values()),
        "pip_bytes": sum(pip.values()),
        "total_bytes": sum(copied.values()) + sum(pip.values()),
    }


if __name__ == "__main__":
    sys.exit(main())
