"""Reading images as the pipeline wants them: uint8 RGB arrays [H, W, 3]."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_image", "to_rgb_array"]


def to_rgb_array(image: Union[Image.Image, np.ndarray]) -> np.ndarray:
    """A PIL image or array (greyscale [H, W], RGB or RGBA [H, W, 3|4]) -> contiguous uint8 RGB [H, W, 3].

    RGBA is composited on white (card screenshots with transparency are meant to be seen on a
    light background); float arrays are rejected rather than guessed at.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image)
        return np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image array must have dtype uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.ndim == 3 and array.shape[2] == 4:
        return to_rgb_array(Image.fromarray(array, mode="RGBA"))
    elif array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image array must be [H, W], [H, W, 3] or [H, W, 4], got shape {array.shape}")
    return np.ascontiguousarray(array)


def read_image(path: Union[str, os.PathLike]) -> np.ndarray:
    """Decode an image file (any format Pillow reads) -> uint8 RGB [H, W, 3]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            return to_rgb_array(image)
    except UnidentifiedImageError as error:
        raise ValueError(f"{path} is not an image Pillow can decode") from error
