"""The pic2card detection service: an image in, the detections as JSON out, without torch.

The service decodes an image (Pillow), hands it to a *backend* and returns the detections as
JSON. It never imports torch: this module needs Python, numpy and Pillow, plus, for the
embedded backend, this repository's C++ module ``detr_cpp`` and the libtorch libraries it
links (the slim runtime folder of :mod:`detr_deploy.native.runtime_folder`). The HTTP side
(``POST /detect``, ``GET /health``, ``python -m detr_deploy.serve``, the worker pool and the
limits) is :mod:`detr_deploy.serve.app`; the configuration, :mod:`detr_deploy.serve.settings`.

Backends, chosen by ``DETR_BACKEND``:

``embedded``
    the model runs in this process: ``detr_cpp.Detector`` (C++ and libtorch, GIL released
    during inference, so the app's worker threads run requests in parallel).
``external``
    the model runs in a model server that speaks the KServe v2 inference protocol over
    HTTP (:mod:`detr_deploy.serve.kserve`).

Requests to ``POST /detect``:

* raw image bytes with ``Content-Type: image/*`` or ``application/octet-stream``;
* JSON ``{"image": "<base64>", "score_threshold": 0.7}`` with ``Content-Type:
  application/json`` (pic2card's API took base64 images; a ``data:image/...;base64,``
  prefix is accepted, ``score_threshold`` is optional);
* ``?score_threshold=0.7`` in the query string works for both.

Answer: ``{"detections": [{"label", "class_name", "score", "box": [x0, y0, x1, y1]}],
"image": {"width", "height"}, "score_threshold", "backend", "timings_ms"}``, boxes in input
pixels, sorted by score. Errors are JSON ``{"error": message, "status": code}``: 400 bad
input (not an image, bad base64/JSON/threshold, JSON nested too deep), 411 no Content-Length,
413 image too large (bytes, pixels in all or per side), 415 wrong content type, 404/405 wrong
path/method; 500 the model failed, 502 the model server answered with an error, 503 the model
server cannot be reached (or, from the app, every worker and queue place is taken), 504 no
answer in time (the app's limit). No request can stop the process.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Protocol, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from detr_deploy import __version__
from detr_deploy.images import to_rgb_array
from detr_deploy.native.loader import load_detr_cpp
from detr_deploy.serve.kserve import ExternalBackend
from detr_deploy.serve.settings import ServiceError, Settings, check_threshold

__all__ = ["Backend", "EmbeddedBackend", "decode_image", "decode_image_and_size", "DetectionService"]

# A JPEG whose longer side is at least twice DRAFT_MARGIN x the model's resize target (its metadata's
# preprocess.max_size) is decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft, in the JPEG decoder), keeping at
# least DRAFT_MARGIN x that target: the model still shrinks what it gets. Smaller images and other
# formats are decoded at full size, so their detections are unchanged.
DRAFT_MARGIN = 2


class Backend(Protocol):
    """What :class:`DetectionService` asks of a backend; the model's limits may be unknown (None).

    A backend may also have ``input_max_size``: the longer side the model resizes an image to at
    most; with it, very large JPEGs are decoded at a reduced scale (see DRAFT_MARGIN).
    """

    name: str
    class_names: List[str]
    max_side: Optional[int]
    default_threshold: Optional[float]

    def info(self) -> dict:
        """What ``/health`` reports of the model; ServiceError when it cannot serve."""

    def detect(self, image: np.ndarray, score_threshold: Optional[float]) -> Dict[str, np.ndarray]:
        """uint8 RGB [H, W, 3] -> {"boxes", "scores", "labels"}; ServiceError when it fails."""


class EmbeddedBackend:
    """The model in this process: ``detr_cpp.Detector``."""

    name = "embedded"

    def __init__(self, settings: Settings):
        self.detr_cpp = load_detr_cpp(runtime=settings.runtime)
        model = settings.model or (str(Path(settings.runtime) / "model.pt") if settings.runtime else None)
        if not model:
            raise ValueError("the embedded backend needs DETR_MODEL (an artefact .pt) or DETR_RUNTIME")
        self.model_path = model
        # the Detector checks the file against its sidecar's sha256 and refuses a damaged model
        self.detector = self.detr_cpp.Detector(
            model,
            num_threads=settings.num_threads,
            optimize=settings.optimize,
            require_sidecar=settings.require_sidecar,
        )
        self.metadata = dict(self.detector.metadata)
        self.class_names = list(self.detector.class_names)
        self.max_side = int(self.detector.max_side)
        self.default_threshold = float(self.detector.score_threshold)
        self.input_max_size = int(self.metadata.get("preprocess", {}).get("max_size") or 0) or None

    def info(self) -> dict:
        return {
            "model": Path(self.model_path).name,  # the file name only: /health does not reveal the file system
            "sha256": self.detector.sha256,  # of the file as loaded
            "verified": bool(self.detector.verified),  # False: no sidecar recorded it, integrity unchecked
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


def decode_image(
    data: bytes, max_side: Optional[int] = None, max_pixels: Optional[int] = None, draft_side: Optional[int] = None
) -> np.ndarray:
    """Image file bytes -> uint8 RGB [H, W, 3]; see :func:`decode_image_and_size`."""
    return decode_image_and_size(data, max_side, max_pixels, draft_side)[0]


def decode_image_and_size(
    data: bytes, max_side: Optional[int] = None, max_pixels: Optional[int] = None, draft_side: Optional[int] = None
) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Image file bytes -> (uint8 RGB [H, W, 3], the file's (width, height)); ServiceError 400 (not an
    image) or 413 (too large).

    The size is checked from the header, before the pixels are decoded, against ``max_side`` (the
    model's limit per side) and ``max_pixels`` (width x height; default Pillow's decompression-bomb
    limit). A JPEG whose longer side is at least twice ``draft_side`` is decoded at the smallest
    scale (1/2, 1/4 or 1/8) that keeps ``draft_side`` on that side, so the array may be smaller
    than the file's size.
    """
    if not data:
        raise ServiceError(400, "empty body: send the image bytes")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            _check_size(width, height, max_side, max_pixels)
            if draft_side and max(width, height) >= 2 * draft_side:
                ratio = draft_side / max(width, height)
                image.draft(image.mode, (math.ceil(width * ratio), math.ceil(height * ratio)))
            array = to_rgb_array(image)
    except ServiceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ServiceError(413, f"the image has too many pixels: {error}") from None
    except UnidentifiedImageError:
        raise ServiceError(400, "the body is not an image Pillow can decode (PNG, JPEG, GIF, BMP, WebP, ...)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ServiceError(400, f"the image could not be decoded: {error}") from None
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ServiceError(400, f"the image is empty ({array.shape[1]}x{array.shape[0]})")
    return array, (width, height)


def _check_size(width: int, height: int, max_side: Optional[int], max_pixels: Optional[int]) -> None:
    """ServiceError 413 when the header's size passes a limit."""
    if max_side and max(width, height) > max_side:
        raise ServiceError(413, f"image {width}x{height} exceeds the model's limit of {max_side} pixels per side")
    if max_pixels is not None:
        if width * height > max_pixels:
            raise ServiceError(413, f"image {width}x{height} has more than DETR_MAX_IMAGE_PIXELS={max_pixels} pixels")
    elif Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
        raise ServiceError(413, f"image {width}x{height} has more than {Image.MAX_IMAGE_PIXELS} pixels")


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
    """What the HTTP app calls, in a worker thread: request bytes in, (status, JSON-able answer) out."""

    def __init__(self, settings: Settings, backend: Optional[Backend] = None):
        self.settings = settings
        self.backend = (
            backend
            if backend is not None
            else (EmbeddedBackend(settings) if settings.backend == "embedded" else ExternalBackend(settings))
        )
        self.started = time.time()

    @property
    def max_body_bytes(self) -> Dict[str, int]:
        raw = self.settings.max_image_bytes
        return {"raw": raw, "json": 4 * math.ceil(raw / 3) + 64 * 1024}  # base64 + room for the JSON around it

    def health(self) -> Tuple[int, dict]:
        answer = {
            "status": "ok",
            "backend": self.backend.name,
            "service_version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "limits": {
                "max_image_bytes": self.settings.max_image_bytes,
                "max_image_pixels": self.settings.max_image_pixels,
            },
            "score_threshold": self.settings.score_threshold,
        }
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
            raise ServiceError(
                415,
                f"unsupported Content-Type {content_type!r}: send image bytes "
                "(image/png, image/jpeg, ... or application/octet-stream) "
                'or JSON {"image": "<base64>"} (application/json)',
            )
        if len(data) > self.settings.max_image_bytes:
            raise ServiceError(
                413, f"image of {len(data)} bytes exceeds DETR_MAX_IMAGE_BYTES={self.settings.max_image_bytes}"
            )
        if threshold is None:
            threshold = self.settings.score_threshold
        input_max_size = getattr(self.backend, "input_max_size", None)
        image, (width, height) = decode_image_and_size(
            data,
            self.backend.max_side,
            self.settings.max_image_pixels,
            DRAFT_MARGIN * input_max_size if input_max_size else None,
        )
        decoded = time.perf_counter()
        found = self.backend.detect(image, threshold)
        inferred = time.perf_counter()
        boxes = found["boxes"]
        if image.shape[:2] != (height, width):  # decoded at a reduced scale: boxes back in the file's pixels
            x_scale, y_scale = width / image.shape[1], height / image.shape[0]
            boxes = boxes * np.array([x_scale, y_scale, x_scale, y_scale], np.float32)
        names = self.backend.class_names
        detections = [
            {
                "label": int(label),
                "class_name": names[label] if 0 <= label < len(names) else None,
                "score": float(score),
                "box": [float(v) for v in box],
            }
            for box, score, label in zip(boxes, found["scores"], found["labels"].tolist(), strict=False)
        ]
        return 200, {
            "detections": detections,
            "image": {"width": width, "height": height},
            "score_threshold": threshold if threshold is not None else self.backend.default_threshold,
            "backend": self.backend.name,
            "timings_ms": {
                "decode": round(1e3 * (decoded - start), 2),
                "inference": round(1e3 * (inferred - decoded), 2),
            },
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
        except RecursionError:
            raise ServiceError(400, "the body is not JSON the service reads: nested too deep") from None
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
