"""Generate the model repository for an external model server (Triton: PyTorch or Python backend).

::

    python -m detr_deploy.export.model_repository --model data/models/demo.pt --out build/model_repository \\
        [--name pic2card_detr] [--version 1] [--gpu] [--instances 1] \\
        [--backend python [--detr-cpp PATH] [--threads N] [--no-optimize]]

writes the layout Triton expects; with the default ``--backend pytorch``::

    build/model_repository/
      pic2card_detr/
        config.pbtxt          platform "pytorch_libtorch", tensors, instance group, metadata
        1/
          model.pt            TorchScript: the artefact's pipeline behind a Tensor-only forward()

Why not the artefact itself: Triton's PyTorch backend accepts only ``Tensor`` (or
``List``) arguments to ``forward`` and checks that their number equals the configuration's
inputs; the artefact's ``forward(image, score_threshold: Optional[float])`` would fail to
load ("An input of type 'Optional[float]' was detected in the model"). So the artefact's
scripted pipeline is wrapped, unchanged, as a submodule of::

    forward(image: uint8 [H, W, 3], score_threshold: float32 [1]) -> (boxes, scores, labels)

where a negative threshold means "the artefact's default". Tensors are named with the
backend's ``<name>__<index>`` convention (the index is the position among ``forward``'s
arguments or outputs) and sizes that vary are ``-1``; ``max_batch_size: 0`` because one
request is one image of its own size. The configuration carries the artefact's metadata
(class names, default threshold, input limits) as the parameter ``detr_metadata`` (JSON),
which the service reads through Triton's ``GET /v2/models/<name>/config``, and the
artefact's sha256 as ``source_sha256``.

Start Triton on it (not done here: no Docker engine on these machines)::

    docker run --rm -p 8000:8000 -v $PWD/build/model_repository:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models

choosing a release whose libtorch is at least as new as the torch that exported the model.

``--backend python`` writes the variant for Triton's Python backend (any Triton build, including
the one in the ``nvidia-pytriton`` wheel, which has no PyTorch backend)::

    build/model_repository/
      pic2card_detr/
        config.pbtxt          backend "python", the same tensors, metadata and instance group,
                              and where detr_cpp is (parameter detr_cpp), threads, optimize
        1/
          model.py            the Triton Python-backend model (PYTHON_MODEL_SOURCE)
          model.pt, model.json  the artefact itself and its sidecar, unchanged

``model.py`` runs ``model.pt`` with the C++ module ``detr_cpp`` (``--detr-cpp``: the module
file or a runtime folder; default the repository's build in ``cpp/``) when it loads in the
stub's interpreter, else with TorchScript when torch is installed there; with neither, the
model fails to load with both reasons in Triton's log.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from detr_deploy.cli import add_model_argument
from detr_deploy.export.artefact import METADATA_FILE, sha256_of
from detr_deploy.export.torchscript import load_artefact
from detr_deploy.native.loader import module_filename
from detr_deploy.paths import CPP_DIR, relative
from detr_deploy.serve.kserve import KSERVE_INPUTS, KSERVE_OUTPUTS
from detr_deploy.serve.settings import DEFAULT_MODEL_NAME

__all__ = [
    "BACKENDS",
    "CONFIG_FILE",
    "MODEL_FILE",
    "PYTHON_MODEL_FILE",
    "PYTHON_MODEL_SOURCE",
    "TritonDetection",
    "wrap_for_triton",
    "triton_signature_problems",
    "model_config",
    "default_detr_cpp",
    "python_backend_parameters",
    "Ident",
    "format_pbtxt",
    "parse_pbtxt",
    "read_config",
    "config_parameter",
    "ModelRepository",
    "generate",
    "main",
]

BACKENDS = ("pytorch", "python")  # Triton's PyTorch backend (platform pytorch_libtorch) or its Python backend
CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.pt"  # the PyTorch backend's default_model_filename; the artefact's copy for the Python backend
PYTHON_MODEL_FILE = "model.py"  # the Python backend's default_model_filename
_TRITON_TYPES = {"UINT8": "TYPE_UINT8", "FP32": "TYPE_FP32", "INT64": "TYPE_INT64"}
_DIMS = {"IMAGE__0": [-1, -1, 3], "SCORE_THRESHOLD__1": [1], "BOXES__0": [-1, 4], "SCORES__1": [-1], "LABELS__2": [-1]}


# ---------------------------------------------------------------------------- the model


class TritonDetection(nn.Module):
    """The artefact's pipeline behind the Tensor-only ``forward`` Triton's PyTorch backend needs."""

    def __init__(self, pipeline: nn.Module):
        super().__init__()
        self.pipeline = pipeline

    def forward(self, image: Tensor, score_threshold: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """image uint8 [H, W, 3] RGB; score_threshold float32 [1], negative for the artefact's default."""
        value = float(score_threshold.reshape(-1)[0])
        threshold: Optional[float] = None
        if value >= 0.0:
            threshold = value
        return self.pipeline(image, threshold)


def wrap_for_triton(pipeline: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """Script :class:`TritonDetection` around a loaded artefact; the pipeline's graph and
    weights are kept as they are (a submodule), only the entry point changes."""
    return torch.jit.script(TritonDetection(pipeline).eval())


def triton_signature_problems(module: torch.jit.ScriptModule, input_count: int = len(KSERVE_INPUTS)) -> List[str]:
    """What Triton's PyTorch backend would refuse in ``module.forward`` for a configuration
    with ``input_count`` inputs (its load-time check: every argument a Tensor or List, as
    many arguments as configured inputs). Empty when the module loads."""
    arguments = [a for a in module.forward.schema.arguments if a.name != "self"]
    problems = [
        f"forward argument {a.name!r} has type {a.type}: only Tensor or List arguments are accepted"
        for a in arguments
        if not isinstance(a.type, (torch.TensorType, torch.ListType))
    ]
    if len(arguments) != input_count:
        problems.append(f"forward takes {len(arguments)} arguments, the configuration has {input_count} inputs")
    return problems


# The Python backend's model.py. It runs in Triton's stub interpreter, which has neither this
# package nor, usually, torch: the standard library, numpy and the backend's utilities.
PYTHON_MODEL_SOURCE = '''"""Triton Python-backend model: python -m detr_deploy.export.model_repository --backend python.

Runs the artefact model.pt beside this file with the C++ module detr_cpp (the configuration's
parameter detr_cpp: the module file or a runtime folder) when it loads in this interpreter, else
with TorchScript when torch is installed here. Tensors in the configuration's order: inputs image
uint8 [H, W, 3] and score threshold float32 [1] (negative: the artefact's default); outputs boxes
float32 [N, 4], scores float32 [N], labels int64 [N].
"""

import importlib.util
import json
import sys
import sysconfig
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

ARTEFACT = "model.pt"
OUTPUT_TYPES = (np.float32, np.float32, np.int64)


def parameter(config, key):
    return ((config.get("parameters") or {}).get(key) or {}).get("string_value", "")


def load_detr_cpp(location):
    """The detr_cpp module at location: a module file, or a runtime folder holding one for this Python."""
    if not location:
        raise ImportError("no detr_cpp path configured")
    path = Path(location)
    if path.is_dir():
        path = path / ("detr_cpp" + sysconfig.get_config_var("EXT_SUFFIX"))
    if not path.is_file():
        raise ImportError(f"{path} not found")
    if "detr_cpp" in sys.modules:  # an extension module cannot be loaded twice
        return sys.modules["detr_cpp"]
    spec = importlib.util.spec_from_file_location("detr_cpp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["detr_cpp"] = module
    return module


class CppRunner:
    name = "detr_cpp"

    def __init__(self, location, model, num_threads, optimize):
        self.detector = load_detr_cpp(location).Detector(model, num_threads=num_threads, optimize=optimize)

    def __call__(self, image, threshold):
        found = self.detector.detect(image, score_threshold=threshold)
        return found["boxes"], found["scores"], found["labels"]


class TorchScriptRunner:
    name = "torchscript"

    def __init__(self, model, num_threads):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.torch = torch
        self.module = torch.jit.load(model, map_location="cpu").eval()

    def __call__(self, image, threshold):
        with self.torch.inference_mode():
            outputs = self.module(self.torch.from_numpy(image), threshold)
        return tuple(output.numpy() for output in outputs)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]
        model = str(Path(args["model_repository"]) / args["model_version"] / ARTEFACT)
        location = parameter(config, "detr_cpp")
        threads = int(parameter(config, "detr_num_threads") or 0) or None
        optimize = parameter(config, "detr_optimize") != "0"
        try:
            self.runner = CppRunner(location, model, threads, optimize)
        except (ImportError, OSError) as error:  # not built for this Python, libraries missing
            cpp_problem = f"detr_cpp did not load ({error})"
            try:
                self.runner = TorchScriptRunner(model, threads)
            except ImportError as torch_error:
                problem = f"cannot run {model}: {cpp_problem}; TorchScript needs torch: {torch_error}"
                raise RuntimeError(problem) from None
            pb_utils.Logger.log_warn(f"{cpp_problem}; running {model} with TorchScript")
        versions = f"Python {sys.version.split()[0]}, numpy {np.__version__}"
        pb_utils.Logger.log_info(f"{model} runs with {self.runner.name} ({versions})")
        if int(np.__version__.split(".")[0]) >= 2:  # a stub built against numpy 1 (Triton 2.51's) misreads its arrays
            pb_utils.Logger.log_warn(f"numpy {np.__version__}: if this stub was built for numpy 1, inputs are garbled")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                image, threshold = (pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs)
                value = float(threshold.reshape(-1)[0])
                found = self.runner(np.ascontiguousarray(image, dtype=np.uint8), value if value >= 0 else None)
                tensors = [
                    pb_utils.Tensor(name, np.ascontiguousarray(array, dtype=dtype))
                    for name, array, dtype in zip(self.outputs, found, OUTPUT_TYPES)
                ]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            except Exception as error:  # this request's error goes to its client; the model keeps serving
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
        return responses
'''


# ---------------------------------------------------------------------------- protobuf text format


class Ident(str):
    """An enum value or other bare identifier in protobuf text format (written unquoted)."""


def _format_value(value, indent: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Ident):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, dict):
        inner = format_pbtxt(value, indent + "  ")
        return "{\n" + inner + indent + "}"
    raise TypeError(f"cannot write {type(value).__name__} in protobuf text format")


def format_pbtxt(message: Dict[str, object], indent: str = "") -> str:
    """A dict as protobuf text format: lists of scalars as ``[ a, b ]``, lists of messages
    as ``name [ {...}, {...} ]``, map entries (``{"key", "value"}`` dicts) as repeated fields."""
    lines = []
    for name, value in message.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) and set(v) == {"key", "value"} for v in value):
            lines += [f"{indent}{name}: {_format_value(v, indent)}" for v in value]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            items = [indent + "  " + _format_value(v, indent + "  ") for v in value]
            lines.append(f"{indent}{name} [\n" + ",\n".join(items) + f"\n{indent}]")
        elif isinstance(value, list):
            lines.append(f"{indent}{name}: [ " + ", ".join(_format_value(v, indent) for v in value) + " ]")
        elif isinstance(value, dict):
            lines.append(f"{indent}{name} {_format_value(value, indent)}")
        else:
            lines.append(f"{indent}{name}: {_format_value(value, indent)}")
    return "".join(line + "\n" for line in lines)


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?[fF]?(?![A-Za-z_]))
  | (?P<ident>[-]?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}\[\]:,;<>])
""",
    re.VERBOSE,
)
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "'": "'",
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "?": "?",
}


def _unescape(body: str) -> str:
    out, index = [], 0
    while index < len(body):
        char = body[index]
        if char != "\\":
            out.append(char)
            index += 1
            continue
        nxt = body[index + 1]
        if nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            index += 2
        elif nxt in "xX":
            digits = re.match(r"[0-9a-fA-F]{1,2}", body[index + 2 :]).group(0)
            out.append(chr(int(digits, 16)))
            index += 2 + len(digits)
        elif nxt.isdigit():
            digits = re.match(r"[0-7]{1,3}", body[index + 1 :]).group(0)
            out.append(chr(int(digits, 8)))
            index += 1 + len(digits)
        else:
            raise ValueError(f"unknown escape \\{nxt}")
    return "".join(out)


def _tokens(text: str) -> List[Tuple[str, str, int]]:
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match:
            line = text.count("\n", 0, position) + 1
            raise ValueError(f"protobuf text: unexpected {text[position : position + 10]!r} on line {line}")
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group(kind), text.count("\n", 0, position) + 1))
        position = match.end()
    return tokens


def parse_pbtxt(text: str) -> Dict[str, object]:
    """Protobuf text format -> dict (no schema needed). A field given more than once, or in
    ``[ ]`` list syntax, becomes a list; messages become dicts; strings are unescaped;
    numbers become int/float; ``true``/``false`` bools; other identifiers (enums) str."""
    tokens = _tokens(text)
    position = 0

    def peek():
        return tokens[position] if position < len(tokens) else ("end", "", -1)

    def take(expected: Optional[str] = None):
        nonlocal position
        token = peek()
        if expected is not None and token[1] != expected:
            raise ValueError(
                f"protobuf text: expected {expected!r}, got {token[1] or 'end of text'!r} on line {token[2]}"
            )
        position += 1
        return token

    def scalar():
        kind, value, line = take()
        if kind == "string":
            parts = [_unescape(value[1:-1])]
            while peek()[0] == "string":  # adjacent strings concatenate
                parts.append(_unescape(take()[1][1:-1]))
            return "".join(parts)
        if kind == "number":
            value = value.rstrip("fF")
            return float(value) if re.search(r"[.eE]", value) else int(value)
        if kind == "ident":
            return {"true": True, "false": False}.get(value, value)
        raise ValueError(f"protobuf text: unexpected {value!r} on line {line}")

    def value_of():
        if peek()[1] in ("{", "<"):
            closing = "}" if take()[1] == "{" else ">"
            result = message(closing)
            take(closing)
            return result
        return scalar()

    def message(closing: Optional[str]) -> Dict[str, object]:
        fields: Dict[str, object] = {}
        repeated = set()
        while peek()[0] != "end" and peek()[1] != closing:
            kind, name, line = take()
            if kind != "ident":
                raise ValueError(f"protobuf text: expected a field name, got {name!r} on line {line}")
            if peek()[1] == ":":
                take(":")
            is_list = peek()[1] == "["
            if is_list:
                take("[")
                values = []
                while peek()[1] != "]":
                    values.append(value_of())
                    if peek()[1] == ",":
                        take(",")
                take("]")
            else:
                values = [value_of()]
            if name in fields:
                if name not in repeated:
                    fields[name] = [fields[name]]
                    repeated.add(name)
                fields[name].extend(values)
            elif is_list:
                fields[name] = values
                repeated.add(name)
            else:
                fields[name] = values[0]
            if peek()[1] in (",", ";"):
                take()
        return fields

    result = message(None)
    if peek()[0] != "end":
        raise ValueError(f"protobuf text: unexpected {peek()[1]!r} on line {peek()[2]}")
    return result


def read_config(path) -> Dict[str, object]:
    """A ``config.pbtxt`` (or its model folder) parsed with :func:`parse_pbtxt`."""
    path = Path(path)
    return parse_pbtxt((path / CONFIG_FILE if path.is_dir() else path).read_text())


def config_parameter(config: Dict[str, object], key: str) -> Optional[str]:
    """The ``string_value`` of parameter ``key`` in a parsed configuration, or None."""
    entries = config.get("parameters", [])
    for entry in entries if isinstance(entries, list) else [entries]:
        if entry.get("key") == key:
            return entry.get("value", {}).get("string_value")
    return None


# ---------------------------------------------------------------------------- the repository


def model_config(
    name: str,
    metadata: dict,
    source_sha256: str,
    gpu: bool = False,
    instances: int = 1,
    backend: str = "pytorch",
    parameters: Optional[Dict[str, str]] = None,
) -> dict:
    """The configuration (as a dict for :func:`format_pbtxt`) of the detector: the wrapped
    TorchScript for Triton's PyTorch backend, or ``model.py`` for its Python backend;
    ``parameters`` are added to the configuration's string parameters."""

    def tensor(tensor_name: str, datatype: str) -> dict:
        return {"name": tensor_name, "data_type": Ident(_TRITON_TYPES[datatype]), "dims": list(_DIMS[tensor_name])}

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    strings = {
        "detr_metadata": json.dumps(metadata, sort_keys=True, separators=(",", ":")),
        "source_sha256": source_sha256,
        **(parameters or {}),
    }
    return {
        "name": name,
        **({"platform": "pytorch_libtorch"} if backend == "pytorch" else {"backend": "python"}),
        "max_batch_size": 0,
        "input": [tensor(n, t) for n, t in KSERVE_INPUTS],
        "output": [tensor(n, t) for n, t in KSERVE_OUTPUTS],
        "instance_group": [{"count": int(instances), "kind": Ident("KIND_GPU" if gpu else "KIND_CPU")}],
        "parameters": [{"key": key, "value": {"string_value": value}} for key, value in strings.items()],
    }


def default_detr_cpp() -> Optional[Path]:
    """The repository's build of ``detr_cpp`` (``make build``) if there is one."""
    path = CPP_DIR / module_filename()
    return path if path.is_file() else None


def python_backend_parameters(
    detr_cpp=None, num_threads: Optional[int] = None, optimize: bool = True
) -> Dict[str, str]:
    """The configuration parameters ``model.py`` reads: where ``detr_cpp`` is (a module file or
    a runtime folder, recorded as an absolute path; empty: TorchScript only), libtorch's
    intra-op threads (empty: libtorch's default) and whether to freeze and optimise."""
    if detr_cpp is not None and not Path(detr_cpp).exists():
        raise FileNotFoundError(f"--detr-cpp {detr_cpp} not found: a detr_cpp module file or a runtime folder")
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"threads must be >= 1, got {num_threads}")
    return {
        "detr_cpp": str(Path(detr_cpp).resolve()) if detr_cpp is not None else "",
        "detr_num_threads": str(num_threads or ""),
        "detr_optimize": "1" if optimize else "0",
    }


@dataclass
class ModelRepository:
    """What :func:`generate` wrote."""

    root: Path
    name: str
    config_path: Path
    model_path: Path  # the wrapped TorchScript, or the artefact's copy for the Python backend
    config: dict
    source_sha256: str
    python_model_path: Optional[Path] = None  # model.py (Python backend)


def generate(
    model,
    out,
    name: str = DEFAULT_MODEL_NAME,
    version: int = 1,
    gpu: bool = False,
    instances: int = 1,
    backend: str = "pytorch",
    detr_cpp=None,
    num_threads: Optional[int] = None,
    optimize: bool = True,
) -> ModelRepository:
    """Write ``out/<name>/config.pbtxt`` and ``out/<name>/<version>/model.pt`` for artefact
    ``model`` (with ``backend="python"`` also ``model.py``; ``detr_cpp``, ``num_threads`` and
    ``optimize`` are for that backend, see :func:`python_backend_parameters`). Other models
    already in ``out`` are left alone; ``out/<name>`` is replaced only if it is a model folder
    (it holds a ``config.pbtxt``)."""
    model, out = Path(model), Path(out)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "pytorch" and (detr_cpp is not None or num_threads is not None or not optimize):
        raise ValueError("detr_cpp, threads and optimize are settings of the Python backend's model.py")
    parameters = python_backend_parameters(detr_cpp, num_threads, optimize) if backend == "python" else {}
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"model name may hold letters, digits, '_', '.', '-', got {name!r}")
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    if instances < 1:
        raise ValueError(f"instances must be >= 1, got {instances}")
    folder = out / name
    if folder.exists() and not (folder / CONFIG_FILE).is_file():
        raise FileExistsError(f"{folder} exists and is not a model folder; choose another --out or --name")
    pipeline, metadata = load_artefact(model)  # checks format and the sidecar's sha256
    wrapped = None
    if backend == "pytorch":
        wrapped = wrap_for_triton(pipeline)
        problems = triton_signature_problems(wrapped)
        if problems:  # pragma: no cover - the wrapper is written to pass
            raise RuntimeError("the wrapped model would not load in Triton: " + "; ".join(problems))
    if folder.exists():
        shutil.rmtree(folder)
    (folder / str(version)).mkdir(parents=True)
    source_sha256 = sha256_of(model)
    model_path = folder / str(version) / MODEL_FILE
    python_model_path = None
    if wrapped is not None:
        torch.jit.save(wrapped, str(model_path), _extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
        what = f"{version}/{MODEL_FILE} is its pipeline\n# behind forward("
    else:
        shutil.copyfile(model, model_path)
        if model.with_suffix(".json").is_file():  # the sidecar, for DETR_MODEL_METADATA and for readers
            shutil.copyfile(model.with_suffix(".json"), model_path.with_suffix(".json"))
        python_model_path = folder / str(version) / PYTHON_MODEL_FILE
        python_model_path.write_text(PYTHON_MODEL_SOURCE)
        what = f"{version}/{PYTHON_MODEL_FILE} runs it ({version}/{MODEL_FILE})\n# as f("
    config = model_config(name, metadata, source_sha256, gpu, instances, backend, parameters)
    header = (
        f"# Triton model configuration written by python -m detr_deploy.export.model_repository\n"
        f"# from {model.name} (sha256 {source_sha256[:16]}...). {what}"
        f"IMAGE__0 uint8 [H, W, 3], SCORE_THRESHOLD__1 float32 [1], < 0: default).\n"
    )
    config_path = folder / CONFIG_FILE
    config_path.write_text(header + format_pbtxt(config))
    return ModelRepository(out, name, config_path, model_path, config, source_sha256, python_model_path)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.export.model_repository",
        description="Write a Triton model repository (config.pbtxt + TorchScript) for an exported artefact.",
    )
    add_model_argument(parser, required=True, what="exported artefact .pt (python -m detr_deploy.export)")
    parser.add_argument("--out", default="build/model_repository", help="repository folder (default: %(default)s)")
    parser.add_argument("--name", default=DEFAULT_MODEL_NAME, help="model name (default: %(default)s)")
    parser.add_argument("--version", type=int, default=1, help="version folder (default: %(default)s)")
    parser.add_argument("--gpu", action="store_true", help="instance_group KIND_GPU instead of KIND_CPU")
    parser.add_argument("--instances", type=int, default=1, help="model instances (default: %(default)s)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="pytorch",
        help="Triton backend: pytorch (platform pytorch_libtorch, wrapped TorchScript) or python (model.py "
        "running the artefact with detr_cpp or TorchScript) (default: %(default)s)",
    )
    python_only = parser.add_argument_group("--backend python")
    python_only.add_argument(
        "--detr-cpp",
        help="detr_cpp module file or runtime folder model.py loads (default: the build in cpp/ if any; "
        "'none': TorchScript only)",
    )
    python_only.add_argument("--threads", type=int, help="libtorch intra-op threads (default: libtorch's)")
    python_only.add_argument("--no-optimize", action="store_true", help="run the saved graph without freezing")
    args = parser.parse_args(argv)
    if args.backend == "pytorch" and (args.detr_cpp or args.threads is not None or args.no_optimize):
        parser.error("--detr-cpp, --threads and --no-optimize need --backend python")
    options = dict(name=args.name, version=args.version, gpu=args.gpu, instances=args.instances, backend=args.backend)
    if args.backend == "python":
        detr_cpp = default_detr_cpp() if args.detr_cpp is None else args.detr_cpp
        options.update(
            detr_cpp=None if str(detr_cpp).lower() in ("none", "") else detr_cpp,
            num_threads=args.threads,
            optimize=not args.no_optimize,
        )
    try:
        with warnings.catch_warnings(record=True) as caught:  # TorchScript's deprecation notices
            warnings.simplefilter("always")
            result = generate(args.model, args.out, **options)
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = collections.Counter(f"{w.category.__name__}: {str(w.message).splitlines()[0][:100]}" for w in caught)
    for message, count in counts.most_common():
        print(f"torch warning ({count}x): {message}")
    size = result.model_path.stat().st_size
    written = [result.config_path] + ([result.python_model_path] if result.python_model_path else [])
    print(f"wrote {', '.join(relative(p) for p in written)} and {relative(result.model_path)} ({size / 1e6:.1f} MB)")
    if args.backend == "python":
        runtime = config_parameter(result.config, "detr_cpp") or "TorchScript (torch)"
        print(f"model.py runs it with {runtime}")
    # the Python backend runs in this repository's Triton environment too (pitfalls handled by the script)
    server = "bash scripts/tritonserver.sh" if args.backend == "python" else "tritonserver"
    print(
        f"serve it: {server} --model-repository={relative(result.root)}  "
        f"(the service: DETR_BACKEND=external DETR_MODEL_NAME={result.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
