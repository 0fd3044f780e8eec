"""The KServe v2 inference protocol, as the service's external backend speaks it to a model server.

The model server (Triton Inference Server with its PyTorch or Python backend, or any server that
speaks KServe v2 over HTTP and runs the generated model) holds the model repository that
``python -m detr_deploy.export.model_repository`` writes. One ``POST /v2/models/<name>/infer``
per image: the image goes as a UINT8 tensor ``[H, W, 3]`` with the threshold as FP32 ``[1]``,
and boxes, scores and labels come back. With Triton's binary tensor data extension the tensors
travel as raw bytes after the JSON header; without it as JSON lists of numbers.

Plain KServe v2 servers (MLServer, KServe's own runtimes) lack Triton's extensions, and the
client adapts: JSON tensors when the server metadata (``GET /v2``) does not list
``binary_tensor_data``, or when a binary request fails and the same request in JSON succeeds;
``[N, 1]`` outputs where ``[N]`` is meant; and the class names from the artefact's sidecar
(:func:`read_metadata_file`) when the server has no ``GET /v2/models/<name>/config``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from detr_deploy.serve.settings import ServiceError, Settings

__all__ = ["KSERVE_INPUTS", "KSERVE_OUTPUTS", "BINARY_EXTENSION", "ExternalBackend", "read_metadata_file"]

# The tensor names of the model server's contract, in forward() order (Triton's PyTorch
# backend maps ``<name>__<index>`` to the index-th argument / output). The model repository
# (detr_deploy.export.model_repository) writes its config.pbtxt from these.
KSERVE_INPUTS = (("IMAGE__0", "UINT8"), ("SCORE_THRESHOLD__1", "FP32"))
KSERVE_OUTPUTS = (("BOXES__0", "FP32"), ("SCORES__1", "FP32"), ("LABELS__2", "INT64"))
_NUMPY_DTYPES = {"UINT8": "<u1", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}
BINARY_EXTENSION = "binary_tensor_data"  # how Triton names the extension in GET /v2's "extensions"
# How a server without the extension refuses a binary body (JSON followed by raw bytes): one of these
# statuses, with a message about parsing the body
_UNPARSED_BODY_STATUSES = (400, 415, 422, 500)
_UNPARSED_BODY_MESSAGE = re.compile(r"json|decod|pars|binary|inference-header|content-type|utf-?8", re.IGNORECASE)

log = logging.getLogger(__name__)


class ExternalBackend:
    """The model in a KServe v2 model server (Triton): one ``/infer`` call per image.

    With ``binary`` (Triton's binary tensor data extension) the image travels as raw bytes
    after the JSON header; without it, as a JSON list of numbers (plain KServe v2, larger
    and slower). A server whose metadata does not list the extension gets JSON whatever
    ``binary`` says. The model's class names and default threshold come from the
    ``detr_metadata`` parameter of the model's configuration (Triton's
    ``GET /v2/models/<name>/config``), fetched on first use and kept; when the server has
    no such configuration, from ``metadata_path`` (default ``settings.model_metadata``):
    the artefact's sidecar ``.json`` or a model repository, see :func:`read_metadata_file`.
    """

    name = "external"

    def __init__(self, settings: Settings, metadata_path: Optional[Union[str, Path]] = None):
        self.url = settings.model_server_url.rstrip("/")
        self.model_name = settings.model_name
        self.binary = settings.binary
        self.timeout_s = settings.timeout_s
        if metadata_path is None:
            metadata_path = settings.model_metadata
        self.metadata_path = str(metadata_path) if metadata_path else None
        # read now, so that a wrong path stops the service at start-up
        self._file_metadata = read_metadata_file(metadata_path, self.model_name) if metadata_path else None
        self._binary_settled = not self.binary  # JSON needs no extension; binary is settled by the server
        self._server_asked = False  # GET /v2 is asked once
        self._metadata: Optional[dict] = None
        self._metadata_source: Optional[str] = None
        self._lock = threading.Lock()

    # -- HTTP plumbing

    def _request(
        self, method: str, path: str, body: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None
    ) -> Tuple[int, Dict[str, str], bytes]:
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
        """The message of an error answer: Triton's ``{"error": ...}``, or ``{"detail": ...}``
        of servers built on FastAPI (MLServer), or the body's start."""
        try:
            answer = json.loads(body.decode("utf-8"))
            return str(answer.get("error", answer.get("detail", body[:300].decode("utf-8", "replace"))))
        except (ValueError, UnicodeDecodeError, AttributeError):
            return body[:300].decode("utf-8", "replace")

    @property
    def _model_path(self) -> str:
        return "/v2/models/" + urllib.parse.quote(self.model_name, safe="")

    # -- metadata

    def metadata(self) -> dict:
        """The artefact's metadata: as the model repository recorded it in the server's
        configuration, else from ``metadata_path``; {} if neither has any."""
        with self._lock:
            if self._metadata is None:
                status, _, body = self._request("GET", self._model_path + "/config")
                found = {}
                if status == 200:
                    try:
                        found = _metadata_from_config(json.loads(body.decode("utf-8")))
                    except (UnicodeDecodeError, ValueError, AttributeError):
                        raise ServiceError(502, "model server sent a configuration that is not a JSON object") from None
                else:  # a KServe server without Triton's configuration extension, or no such model
                    known, _, known_body = self._request("GET", self._model_path)
                    if known != 200:
                        raise ServiceError(
                            503,
                            f"model {self.model_name!r} is not available on {self.url} "
                            f"({known}: {self._error_text(known_body)})",
                        )
                if found.get("class_names") or self._file_metadata is None:
                    self._metadata, self._metadata_source = found, "model server configuration"
                else:
                    self._metadata, self._metadata_source = self._file_metadata, self.metadata_path
            return self._metadata

    @property
    def class_names(self) -> List[str]:
        names = self.metadata().get("class_names")
        if not names:
            raise ServiceError(
                503,
                f"no class names for model {self.model_name!r}: {self.url} has no configuration endpoint "
                "with detr_metadata (a plain KServe v2 server); point DETR_MODEL_METADATA at the artefact's "
                "sidecar .json or at the model repository",
            )
        return list(names)

    @property
    def max_side(self) -> Optional[int]:
        return (self.metadata().get("input") or {}).get("max_side")

    @property
    def default_threshold(self) -> Optional[float]:
        return self.metadata().get("score_threshold")

    def info(self) -> dict:
        status, _, body = self._request("GET", self._model_path + "/ready")
        if status != 200:
            raise ServiceError(
                503,
                f"model {self.model_name!r} is not ready on {self.url} "
                f"({status}: {self._error_text(body) or 'no reason given'})",
            )
        self._settle_binary()
        return {
            "model_server": self.url,
            "model_name": self.model_name,
            "binary_tensors": self.binary,
            "metadata": self.metadata(),
            "metadata_source": self._metadata_source,
            "class_names": self.class_names,  # 503 when the detections could not be named
        }

    # -- the binary tensor data extension

    def _settle_binary(self) -> None:
        """Once: JSON tensors if the server's metadata (``GET /v2``) says it lacks the binary
        extension. A server that does not say is tried in binary (:meth:`detect` falls back)."""
        with self._lock:
            if self._binary_settled or self._server_asked:
                return
            status, _, body = self._request("GET", "/v2")  # unreachable: raises, and is asked again next time
            self._server_asked = True
            try:
                extensions = json.loads(body.decode("utf-8")).get("extensions") if status == 200 else None
            except (UnicodeDecodeError, ValueError, AttributeError):
                extensions = None
            if isinstance(extensions, list):
                self._binary_settled = True
                if BINARY_EXTENSION not in extensions:
                    self._use_json(f"its metadata lists no {BINARY_EXTENSION} extension")

    def _use_json(self, reason: str) -> None:
        self.binary, self._binary_settled = False, True
        log.warning("model server %s: sending tensors as JSON, %s", self.url, reason)

    # -- inference

    def encode(
        self, image: np.ndarray, score_threshold: Optional[float], binary: Optional[bool] = None
    ) -> Tuple[bytes, Dict[str, str]]:
        """The KServe v2 inference request for one image: (body, headers); binary tensors or JSON
        as ``binary`` says (default: as this backend sends them now)."""
        binary = self.binary if binary is None else binary
        image = np.ascontiguousarray(image, dtype=np.uint8)
        threshold = np.array([-1.0 if score_threshold is None else score_threshold], dtype="<f4")
        tensors = [(KSERVE_INPUTS[0], image), (KSERVE_INPUTS[1], threshold)]
        inputs = []
        for (name, datatype), array in tensors:
            entry = {"name": name, "shape": list(array.shape), "datatype": datatype}
            if binary:
                entry["parameters"] = {"binary_data_size": int(array.nbytes)}
            else:
                entry["data"] = array.reshape(-1).tolist()
            inputs.append(entry)
        outputs = [{"name": name, "parameters": {"binary_data": binary}} for name, _ in KSERVE_OUTPUTS]
        header = json.dumps({"inputs": inputs, "outputs": outputs}, separators=(",", ":")).encode("utf-8")
        if not binary:
            return header, {"Content-Type": "application/json"}
        body = b"".join(
            [header] + [array.astype(_NUMPY_DTYPES[datatype], copy=False).tobytes() for (_, datatype), array in tensors]
        )
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
                chunk = body[offset : offset + int(size)]
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

    def _infer(
        self, image: np.ndarray, score_threshold: Optional[float], binary: Optional[bool] = None
    ) -> Tuple[int, Dict[str, str], bytes]:
        body, headers = self.encode(image, score_threshold, binary)
        return self._request("POST", self._model_path + "/infer", body, headers)

    def _refused_binary(self, status: int, response: bytes) -> bool:
        """Whether an error answer to a binary request may mean the server cannot parse binary
        bodies (only asked while the server's metadata has not settled it)."""
        return (
            self.binary
            and not self._binary_settled
            and status in _UNPARSED_BODY_STATUSES
            and bool(_UNPARSED_BODY_MESSAGE.search(self._error_text(response)))
        )

    def detect(self, image: np.ndarray, score_threshold: Optional[float]) -> Dict[str, np.ndarray]:
        self.class_names  # noqa: B018 - 503 before inference when the detections could not be named
        self._settle_binary()
        status, response_headers, response = self._infer(image, score_threshold)
        if self._refused_binary(status, response):
            refused = (status, response_headers, response)
            status, response_headers, response = self._infer(image, score_threshold, binary=False)
            if status == 200:  # the same request in JSON went through: the server lacks the extension
                with self._lock:
                    self._use_json(f"a binary request was answered {refused[0]}: {self._error_text(refused[2])}")
            else:  # JSON fails too: the binary request's error is the one to report
                status, response_headers, response = refused
        elif status == 200 and self.binary:
            self._binary_settled = True
        if status != 200:
            raise ServiceError(502, f"model server answered {status}: {self._error_text(response)}")
        try:
            arrays = self.decode(response, response_headers)
            boxes, scores, labels = (arrays[name] for name, _ in KSERVE_OUTPUTS)
        except (ValueError, KeyError, TypeError) as error:
            raise ServiceError(502, f"model server sent a malformed response: {error}") from None
        scores, labels = _as_vector(scores), _as_vector(labels)
        count = scores.shape[0] if scores.ndim == 1 else -1
        if boxes.shape != (count, 4) or labels.shape != (count,):
            raise ServiceError(
                502,
                f"model server sent inconsistent outputs: boxes {list(boxes.shape)}, "
                f"scores {list(scores.shape)}, labels {list(labels.shape)}",
            )
        return {
            "boxes": boxes.astype(np.float32),
            "scores": scores.astype(np.float32),
            "labels": labels.astype(np.int64),
        }


def _as_vector(array: np.ndarray) -> np.ndarray:
    """``[N, 1]`` as ``[N]``: plain KServe v2 servers (MLServer) answer 1-D tensors as columns."""
    return array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array


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


_DETR_METADATA_PARAMETER = re.compile(
    r'key:\s*"detr_metadata"\s*value\s*:?\s*\{\s*string_value\s*:\s*"((?:[^"\\]|\\.)*)"', re.DOTALL
)


def read_metadata_file(path: Union[str, Path], model_name: str) -> dict:
    """The artefact's metadata for a model server that does not give it: ``path`` is the
    artefact's sidecar ``.json`` (or the artefact beside it), a model folder, or a model
    repository holding ``<model_name>/``; from a folder it is the ``detr_metadata`` parameter of
    ``config.pbtxt``, as ``python -m detr_deploy.export.model_repository`` writes it.
    ValueError when nothing there gives class names."""
    path = Path(path)
    if path.is_dir():
        config = next((c for c in (path / model_name / "config.pbtxt", path / "config.pbtxt") if c.is_file()), None)
        if config is None:
            raise ValueError(f"model metadata: {path} holds neither {model_name}/config.pbtxt nor config.pbtxt")
        match = _DETR_METADATA_PARAMETER.search(config.read_text())
        if match is None:
            raise ValueError(f"model metadata: {config} has no detr_metadata parameter")
        # undo the escapes format_pbtxt writes: \\ \" \n
        text = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), match.group(1))
        source = config
    else:
        source = path.with_suffix(".json") if path.suffix != ".json" else path
        if not source.is_file():
            raise ValueError(f"model metadata: {source} not found (the artefact's sidecar .json)")
        text = source.read_text()
    try:
        metadata = json.loads(text)
    except ValueError as error:
        raise ValueError(f"model metadata: {source} is not JSON: {error}") from None
    names = metadata.get("class_names") if isinstance(metadata, dict) else None
    if not (isinstance(names, list) and names and all(isinstance(n, str) for n in names)):
        raise ValueError(f"model metadata: {source} has no class_names list")
    return metadata
