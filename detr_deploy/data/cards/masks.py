"""Anti-aliased shape masks (rounded rectangles, rings, ellipses, stars, ticks), drawn at 4x and reduced."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Optional, Tuple

from PIL import Image, ImageChops, ImageDraw

_SS = 4


@lru_cache(maxsize=256)
def _corner(radius: int) -> Image.Image:
    """Top-left quarter of a filled rounded corner, radius x radius, anti-aliased."""
    big = Image.new("L", (radius * _SS, radius * _SS), 0)
    ImageDraw.Draw(big).ellipse([0, 0, 2 * radius * _SS - 1, 2 * radius * _SS - 1], fill=255)
    return big.reduce(_SS)


def _rrect_mask(w: int, h: int, r: int) -> Image.Image:
    """Filled rounded rectangle mask of size (w, h) and corner radius r (0 = sharp)."""
    mask = Image.new("L", (w, h), 255)
    r = int(min(r, w // 2, h // 2))
    if r <= 0:
        return mask
    c = _corner(r)
    mask.paste(c, (0, 0))
    mask.paste(c.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (w - r, 0))
    mask.paste(c.transpose(Image.Transpose.FLIP_TOP_BOTTOM), (0, h - r))
    mask.paste(c.transpose(Image.Transpose.ROTATE_180), (w - r, h - r))
    return mask


@lru_cache(maxsize=1024)
def _rring_mask(w: int, h: int, r: int, t: int) -> Image.Image:
    """Outline of a rounded rectangle, thickness t, drawn inside (w, h)."""
    outer = _rrect_mask(w, h, r)
    if w <= 2 * t or h <= 2 * t:
        return outer
    inner = Image.new("L", (w, h), 0)
    inner.paste(_rrect_mask(w - 2 * t, h - 2 * t, max(0, r - t)), (t, t))
    return ImageChops.subtract(outer, inner)


@lru_cache(maxsize=512)
def _ellipse_mask(w: int, h: int, t: int = 0) -> Image.Image:
    """Filled ellipse (t == 0) or ring of thickness t, exactly filling (w, h)."""
    big = Image.new("L", (w * _SS, h * _SS), 0)
    draw = ImageDraw.Draw(big)
    draw.ellipse([0, 0, w * _SS - 1, h * _SS - 1], fill=255)
    if t > 0:
        draw.ellipse([t * _SS, t * _SS, (w - t) * _SS - 1, (h - t) * _SS - 1], fill=0)
    return big.reduce(_SS)


def _star_points(w: float, h: float, inner: float) -> List[Tuple[float, float]]:
    radius = h / (1 + math.cos(math.radians(36)))
    cx, cy = w / 2, radius
    points = []
    for i in range(10):
        angle = math.radians(-90 + 36 * i)
        rr = radius if i % 2 == 0 else radius * inner
        points.append((cx + rr * math.cos(angle), cy + rr * math.sin(angle)))
    return points


def _star_size(height: int) -> Tuple[int, int]:
    radius = height / (1 + math.cos(math.radians(36)))
    return max(3, int(round(2 * radius * math.sin(math.radians(72))))), height


@lru_cache(maxsize=512)
def _star_mask(w: int, h: int, inner: float, outline: int = 0) -> Image.Image:
    big = Image.new("L", (w * _SS, h * _SS), 0)
    pts = [(x * _SS, y * _SS) for x, y in _star_points(w - 0.02, h - 0.02, inner)]
    draw = ImageDraw.Draw(big)
    draw.polygon(pts, fill=255)
    if outline > 0:
        inset = Image.new("L", big.size, 0)
        d2 = ImageDraw.Draw(inset)
        # shrink the star about its centre to cut the inside out
        radius = h / (1 + math.cos(math.radians(36)))
        cx, cy = w / 2, radius
        scale = max(0.0, 1 - 2.2 * outline / h)
        d2.polygon(
            [(((x / _SS - cx) * scale + cx) * _SS, ((y / _SS - cy) * scale + cy) * _SS) for x, y in pts], fill=255
        )
        big = ImageChops.subtract(big, inset)
    return big.reduce(_SS)


@lru_cache(maxsize=256)
def _tick_mask(s: int, width_frac: float) -> Image.Image:
    big = Image.new("L", (s * _SS, s * _SS), 0)
    pts = [(0.22 * s * _SS, 0.52 * s * _SS), (0.42 * s * _SS, 0.72 * s * _SS), (0.78 * s * _SS, 0.30 * s * _SS)]
    ImageDraw.Draw(big).line(pts, fill=255, width=max(_SS, int(width_frac * s * _SS)), joint="curve")
    return big.reduce(_SS)


@lru_cache(maxsize=256)
def _chevron_mask(s: int) -> Image.Image:
    big = Image.new("L", (s * _SS, s * _SS), 0)
    pts = [(0.2 * s * _SS, 0.38 * s * _SS), (0.5 * s * _SS, 0.66 * s * _SS), (0.8 * s * _SS, 0.38 * s * _SS)]
    ImageDraw.Draw(big).line(pts, fill=255, width=max(_SS, int(0.1 * s * _SS)), joint="curve")
    return big.reduce(_SS)


def _threshold_bbox(mask: Image.Image, level: int = 32) -> Optional[Tuple[int, int, int, int]]:
    return mask.point(lambda v: 255 if v >= level else 0).getbbox()
