"""The images every runtime is timed on: the same JPEG bytes, decoded the same way."""

from __future__ import annotations

import io

import numpy as np

from detr_deploy.paths import SAMPLES_DIR, relative

__all__ = ["make_image", "decode"]


def make_image(height: int, width: int, seed: int = 0) -> bytes:
    """A JPEG (quality 90) of a sample card resized to ``height x width``: the same bytes
    for every runtime. ``seed`` picks the card."""
    from PIL import Image

    cards = sorted((SAMPLES_DIR / "images").glob("card_*.jpg"))
    if not cards:
        raise FileNotFoundError(f"no sample images in {relative(SAMPLES_DIR / 'images')}")
    with Image.open(cards[seed % len(cards)]) as card:
        image = card.convert("RGB").resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def decode(jpeg: bytes) -> np.ndarray:
    """JPEG bytes -> uint8 RGB [H, W, 3] with Pillow, as a Python service would."""
    from PIL import Image

    from detr_deploy.images import to_rgb_array

    with Image.open(io.BytesIO(jpeg)) as image:
        return to_rgb_array(image)
