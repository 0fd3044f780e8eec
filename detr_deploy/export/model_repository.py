"""Generate the model repository for an external model server (Triton's PyTorch backend).

::

    python -m detr_deploy.export.model_repository --model data/models/demo.pt --out build/model_repository \\
        [--name pic2card_detr] [--version 1] [--gpu] [--instances 1]

writes the layout Triton expects::

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
from detr_deploy.paths import relative
from detr_deploy.serve.kserve import KSERVE_INPUTS, KSERVE_OUTPUTS
from detr_deploy.serve.settings import DEFAULT_MODEL_NAME

__all__ = [
    "CONFIG_FILE",
    "MODEL_FILE",
    "TritonDetection",
    "wrap_for_triton",
    "triton_signature_problems",
    "model_config",
    "Ident",
    "format_pbtxt",
    "parse_pbtxt",
    "read_config",
    "config_parameter",
    "ModelRepository",
    "generate",
    "main",
]

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.pt"  # the PyTorch backend's default_model_filename
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


def model_config(name: str, metadata: dict, source_sha256: str, gpu: bool = False, instances: int = 1) -> dict:
    """The configuration (as a dict for :func:`format_pbtxt`) of the wrapped detector."""

    def tensor(tensor_name: str, datatype: str) -> dict:
        return {"name": tensor_name, "data_type": Ident(_TRITON_TYPES[datatype]), "dims": list(_DIMS[tensor_name])}

    return {
        "name": name,
        "platform": "pytorch_libtorch",
        "max_batch_size": 0,
        "input": [tensor(n, t) for n, t in KSERVE_INPUTS],
        "output": [tensor(n, t) for n, t in KSERVE_OUTPUTS],
        "instance_group": [{"count": int(instances), "kind": Ident("KIND_GPU" if gpu else "KIND_CPU")}],
        "parameters": [
            {
                "key": "detr_metadata",
                "value": {"string_value": json.dumps(metadata, sort_keys=True, separators=(",", ":"))},
            },
            {"key": "source_sha256", "value": {"string_value": source_sha256}},
        ],
    }


@dataclass
class ModelRepository:
    """What :func:`generate` wrote."""

    root: Path
    name: str
    config_path: Path
    model_path: Path
    config: dict
    source_sha256: str


def generate(
    model, out, name: str = DEFAULT_MODEL_NAME, version: int = 1, gpu: bool = False, instances: int = 1
) -> ModelRepository:
    """Write ``out/<name>/config.pbtxt`` and ``out/<name>/<version>/model.pt`` for artefact
    ``model``. Other models already in ``out`` are left alone; ``out/<name>`` is replaced
    only if it is a model folder (it holds a ``config.pbtxt``)."""
    model, out = Path(model), Path(out)
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
    wrapped = wrap_for_triton(pipeline)
    problems = triton_signature_problems(wrapped)
    if problems:  # pragma: no cover - the wrapper is written to pass
        raise RuntimeError("the wrapped model would not load in Triton: " + "; ".join(problems))
    if folder.exists():
        shutil.rmtree(folder)
    (folder / str(version)).mkdir(parents=True)
    source_sha256 = sha256_of(model)
    model_path = folder / str(version) / MODEL_FILE
    torch.jit.save(wrapped, str(model_path), _extra_files={METADATA_FILE: json.dumps(metadata, sort_keys=True)})
    config = model_config(name, metadata, source_sha256, gpu=gpu, instances=instances)
    header = (
        f"# Triton model configuration written by python -m detr_deploy.export.model_repository\n"
        f"# from {model.name} (sha256 {source_sha256[:16]}...). {version}/{MODEL_FILE} is its pipeline\n"
        f"# behind forward(IMAGE__0 uint8 [H, W, 3], SCORE_THRESHOLD__1 float32 [1], < 0: default).\n"
    )
    config_path = folder / CONFIG_FILE
    config_path.write_text(header + format_pbtxt(config))
    return ModelRepository(out, name, config_path, model_path, config, source_sha256)


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
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:  # TorchScript's deprecation notices
            warnings.simplefilter("always")
            result = generate(
                args.model, args.out, name=args.name, version=args.version, gpu=args.gpu, instances=args.instances
            )
    except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    counts = collections.Counter(f"{w.category.__name__}: {str(w.message).splitlines()[0][:100]}" for w in caught)
    for message, count in counts.most_common():
        print(f"torch warning ({count}x): {message}")
    size = result.model_path.stat().st_size
    print(f"wrote {relative(result.config_path)} and {relative(result.model_path)} ({size / 1e6:.1f} MB)")
    print(
        f"serve it: tritonserver --model-repository={relative(result.root)}  "
        f"(the service: DETR_BACKEND=external DETR_MODEL_NAME={result.name})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
