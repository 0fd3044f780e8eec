"""The KServe v2 inference protocol, as the service's external backend speaks it to a model server.

The model server (Triton Inference Server with its PyTorch backend, or any server that speaks
KServe v2 over HTTP and runs the generated model) holds the model repository that
``python -m detr_deploy.export.model_repository`` writes. One ``POST /v2/models/<name>/infer``
per image: the image goes as a UINT8 tensor ``[H, W, 3]`` with the threshold as FP32 ``[1]``,
and boxes, scores and labels come back. With Triton's binary tensor data extension the tensors
travel as raw bytes after the JSON header; without it as JSON lists of numbers.
"""

from __future__ import annotations

import json
import math
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from detr_deploy.serve.settings import ServiceError, Settings

__all__ = ["KSERVE_INPUTS", "KSERVE_OUTPUTS", "ExternalBackend"]

# The tensor names of the model server's contract, in forward() order (Triton's PyTorch
# backend maps ``<name>__<index>`` to the index-th argument / output). The model repository
# (detr_deploy.export.model_repository) writes its config.pbtxt from these.
KSERVE_INPUTS = (("IMAGE__0", "UINT8"), ("SCORE_THRESHOLD__1", "FP32"))
KSERVE_OUTPUTS = (("BOXES__0", "FP32"), ("SCORES__1", "FP32"), ("LABELS__2", "INT64"))
_NUMPY_DTYPES = {"UINT8": "<u1", "FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}


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
                        raise ServiceError(
                            503,
                            f"model {self.model_name!r} is not available on {self.url} "
                            f"({known}: {self._error_text(known_body)})",
                        )
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
            raise ServiceError(
                503,
                f"model {self.model_name!r} is not ready on {self.url} "
                f"({status}: {self._error_text(body) or 'no reason given'})",
            )
        return {
            "model_server": self.url,
            "model_name": self.model_name,
            "binary_tensors": self.binary,
            "metadata": self.metadata(),
        }

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
