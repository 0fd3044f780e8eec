"""Loading and saving DETR weights, official checkpoint files included.

The official facebookresearch/detr files (e.g. ``detr-r50-e632da11.pth``) are a dict
``{"model": state_dict, ...}``; a bare state_dict is accepted too. Files are read with
``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from detr_deploy.model.detr import DETR, DETRConfig, build_detr

__all__ = [
    "CheckpointMismatchError",
    "CHECKPOINT_ENV_VAR",
    "read_state_dict",
    "load_checkpoint",
    "save_checkpoint",
    "load_model",
    "checkpoint_from_env",
]

#: Environment variable naming an official checkpoint for the notebooks (see README).
CHECKPOINT_ENV_VAR = "DETR_CHECKPOINT"

PathLike = Union[str, os.PathLike]


class CheckpointMismatchError(ValueError):
    """The checkpoint's keys or shapes do not fit the model; lists every difference."""

    def __init__(self, missing: List[str], unexpected: List[str], wrong_shape: List[Tuple[str, tuple, tuple]]):
        self.missing, self.unexpected, self.wrong_shape = missing, unexpected, wrong_shape
        lines = ["checkpoint does not match the model:"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        for key, expected, found in wrong_shape[:10]:
            lines.append(f"  wrong shape: {key}: model {list(expected)}, checkpoint {list(found)}")
        if len(wrong_shape) > 10:
            lines.append(f"  ... and {len(wrong_shape) - 10} more wrongly shaped keys")
        super().__init__("\n".join(lines))


def _preview(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")


def read_state_dict(path: PathLike) -> Tuple[Dict[str, Tensor], dict]:
    """Read a checkpoint file -> (state_dict, the other entries of the file, e.g. ``config``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        # official training checkpoints also store their argparse.Namespace of settings
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(content, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(content).__name__}, expected a dict")
    if "model" in content and isinstance(content["model"], Mapping):
        state = dict(content["model"])
        extra = {k: v for k, v in content.items() if k != "model"}
    else:
        state, extra = dict(content), {}
    if not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {path} is not a state_dict of tensors")
    # checkpoints saved from DistributedDataParallel prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state, extra


def load_checkpoint(model: nn.Module, source: Union[PathLike, Mapping[str, Tensor]]) -> nn.Module:
    """Load weights into ``model`` strictly; a mismatch raises :class:`CheckpointMismatchError`.

    ``source`` is a path (official ``{"model": ...}`` format or bare state_dict) or a state_dict.
    Batch-norm ``num_batches_tracked`` counters are optional in either direction.
    """
    state = read_state_dict(source)[0] if isinstance(source, (str, os.PathLike)) else dict(source)
    expected = model.state_dict()
    ignorable = lambda key: key.endswith("num_batches_tracked")  # noqa: E731
    missing = [k for k in expected if k not in state and not ignorable(k)]
    unexpected = [k for k in state if k not in expected and not ignorable(k)]
    wrong_shape = [
        (k, tuple(expected[k].shape), tuple(state[k].shape))
        for k in expected
        if k in state and expected[k].shape != state[k].shape
    ]
    if missing or unexpected or wrong_shape:
        raise CheckpointMismatchError(missing, unexpected, wrong_shape)
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)
    return model


def save_checkpoint(model: DETR, path: PathLike, official_format: bool = True, **extra) -> Path:
    """Save weights as ``{"model": state_dict, "config": {...}, **extra}`` (official layout).

    ``official_format=False`` writes a bare state_dict. The config is plain data so the
    file stays loadable with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    content = {"model": state, "config": model.config.to_dict(), **extra} if official_format else state
    torch.save(content, path)
    return path


def load_model(path: PathLike, config: Optional[DETRConfig] = None) -> DETR:
    """Rebuild a model from a checkpoint: its stored ``config`` unless one is given.

    Official checkpoints store no config; pass one (e.g. ``detr_resnet50().config``) or use
    :func:`load_checkpoint` on a model you built.
    """
    state, extra = read_state_dict(path)
    if config is None:
        if "config" not in extra:
            raise ValueError(
                f"checkpoint {path} stores no model config (official checkpoints do not): "
                "build the architecture first, e.g. load_checkpoint(detr_resnet50(), path)"
            )
        config = DETRConfig(**extra["config"])
    return load_checkpoint(build_detr(config), state).eval()


def checkpoint_from_env() -> Optional[Path]:
    """The checkpoint named by ``$DETR_CHECKPOINT``, or None; an unreadable path is an error."""
    value = os.environ.get(CHECKPOINT_ENV_VAR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"${CHECKPOINT_ENV_VAR} names {path}, which is not a file")
    return path
