"""Wider realism, off by default: what chapter 03 finds on real cards and the base generator lacks.

Inside :func:`wider_realism` (the ``wide`` variant of :mod:`~detr_deploy.data.cards.variants`) the
generator also draws, each for a share of the cards or elements:

* choice glyphs from 0.7x to 3x the label's text size (real forms show "Huge" and "Massive" ones),
  pale grey glyphs, and a wide gap between a glyph and its label (toggles);
* text lines set closer (line height 1.0-1.22 of the font size, the base draws 1.22-1.45);
* template expressions instead of words (``{name}``, ``${title}``, ``{{DATE(...)}}``), as cards
  shown in a designer before their data is bound read;
* two capture looks: a **photo** of a screen or print (perspective, uneven light, colour cast,
  blur and noise) and a **sketch** (the card's outlines as pencil strokes on paper).

Outside it the generator is byte-identical to the base one: every extra random draw happens only
inside. The state is module-level (like :func:`~detr_deploy.data.cards.fonts.only_font_families`)
so render processes can enter it per card; it is always restored on exit.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter, ImageOps

Box = Tuple[float, float, float, float, int]

_ENABLED = False

# shares of cards / elements that get each feature inside wider_realism()
PHOTO_SHARE = 0.07
SKETCH_SHARE = 0.05
TIGHT_LINES_SHARE = 0.35
WIDE_GLYPH_SHARE = 0.35
PALE_GLYPH_SHARE = 0.15
WIDE_LABEL_GAP_SHARE = 0.12
TEMPLATE_TEXT_SHARE = 0.05

_FIELDS = """name title displayName description status owner createdBy officeLocation jobTitle mail data
date time value amount total city category id email manager department phone""".split()


@contextmanager
def wider_realism() -> Iterator[None]:
    """Render the cards drawn inside this block with the wider realism of this module."""
    global _ENABLED
    previous, _ENABLED = _ENABLED, True
    try:
        yield
    finally:
        _ENABLED = previous


def enabled() -> bool:
    return _ENABLED


def line_factor(rng: random.Random, base: float) -> float:
    """Line height in font sizes: sometimes tighter than the base range."""
    return rng.uniform(1.0, 1.22) if rng.random() < TIGHT_LINES_SHARE else base


def glyph_factor(rng: random.Random) -> float:
    """Choice glyph size relative to the label's font size (the base draws 1.15)."""
    if rng.random() >= WIDE_GLYPH_SHARE:
        return 1.15
    return 0.7 + 2.3 * rng.random() ** 1.5


def template_text(rng: random.Random, text: str) -> str:
    """A template expression in place of ``text`` for a share of text blocks."""
    if rng.random() >= TEMPLATE_TEXT_SHARE:
        return text
    field = rng.choice(_FIELDS)
    kind = rng.randrange(5)
    if kind == 0:
        return "{" + field + "}"
    if kind == 1:
        return "${" + field + "}"
    if kind == 2:
        return "{{DATE(${" + field + "}, SHORT)}}"
    if kind == 3:
        return "{" + field + "." + rng.choice(_FIELDS) + "}"
    return f"{text.split(' ')[0]} {{{field}}}"


def capture_look(
    img: Image.Image, labels: List[Box], rng: random.Random, nrng: np.random.Generator
) -> Tuple[Image.Image, List[Box], str]:
    """Apply the photo or sketch look to a share of cards; returns ``(image, labels, look)``."""
    draw = rng.random()
    if draw < PHOTO_SHARE:
        return (*photo_look(img, labels, rng, nrng), "photo")
    if draw < PHOTO_SHARE + SKETCH_SHARE:
        return sketch_look(img, rng, nrng), labels, "sketch"
    return img, labels, "screen"


def _homography(src: Sequence[Tuple[float, float]], dst: Sequence[Tuple[float, float]]) -> np.ndarray:
    """3x3 matrix mapping the four ``src`` points onto the four ``dst`` points."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    mapped = np.c_[points, np.ones(len(points))] @ matrix.T
    return mapped[:, :2] / mapped[:, 2:3]


def warp_perspective(
    img: Image.Image, labels: List[Box], corners: Sequence[Tuple[float, float]], fill: Tuple[int, int, int]
) -> Tuple[Image.Image, List[Box]]:
    """Move the image's four corners (top-left, top-right, bottom-right, bottom-left) to ``corners``
    in an image of the same size; each label becomes the box around its four moved corners."""
    w, h = img.size
    own = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
    forward = _homography(own, corners)
    backward = np.linalg.inv(forward)  # PIL samples the source for every output pixel
    coefficients = tuple((backward / backward[2, 2]).flatten()[:8])
    warped = img.transform((w, h), Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BICUBIC, fillcolor=fill)
    moved: List[Box] = []
    for x0, y0, x1, y1, c in labels:
        points = _map_points(forward, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64))
        moved.append((*points.min(axis=0).tolist(), *points.max(axis=0).tolist(), c))
    return warped, moved


def photo_look(
    img: Image.Image, labels: List[Box], rng: random.Random, nrng: np.random.Generator
) -> Tuple[Image.Image, List[Box]]:
    """A photo of a screen or print: perspective, a surface around it, uneven light, colour cast, blur, noise."""
    w, h = img.size
    jitter = rng.uniform(0.01, 0.05)
    corners = [
        (x + rng.uniform(-jitter, jitter) * w, y + rng.uniform(-jitter, jitter) * h)
        for x, y in [(0, 0), (w, 0), (w, h), (0, h)]
    ]
    # pull the corners inwards a little so the surface around the card shows
    inset = rng.uniform(0.0, 0.04)
    corners = [
        (x + (inset * w if x < w / 2 else -inset * w), y + (inset * h if y < h / 2 else -inset * h)) for x, y in corners
    ]
    surface = tuple(int(v) for v in rng.choice([(60, 55, 50), (200, 190, 175), (120, 120, 125), (30, 30, 35)]))
    img, labels = warp_perspective(img, labels, corners, surface)
    pixels = np.asarray(img, dtype=np.float32)
    # light falling off across the picture, in one random direction
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xs / w + np.sin(angle) * ys / h).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    light = 1.0 - rng.uniform(0.05, 0.3) * ramp
    cast = np.array([rng.uniform(0.92, 1.05), rng.uniform(0.95, 1.02), rng.uniform(0.88, 1.04)], dtype=np.float32)
    pixels = pixels * light[..., None] * cast
    pixels += nrng.normal(0.0, rng.uniform(2.0, 7.0), pixels.shape[:2] + (1,)).astype(np.float32)
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2))), labels


def sketch_look(img: Image.Image, rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    """The card's outlines as pencil strokes on paper; boxes stay where they are."""
    gray = ImageOps.grayscale(img)
    edges = np.asarray(gray.filter(ImageFilter.FIND_EDGES), dtype=np.float32)
    # text and glyphs are dark on light (or light on dark): keep their ink as strokes, too
    ink = np.abs(np.asarray(gray, dtype=np.float32) - float(np.median(np.asarray(gray))))
    strokes = np.clip(np.maximum(edges * rng.uniform(1.5, 3.0), ink * rng.uniform(0.6, 1.0)), 0, 255)
    strokes *= 0.55 + 0.45 * nrng.random(strokes.shape, dtype=np.float32)  # uneven pencil pressure
    paper = np.array(rng.choice([(250, 248, 240), (245, 245, 245), (252, 250, 245), (238, 236, 228)]), np.float32)
    pencil = np.array(rng.choice([(60, 60, 70), (30, 30, 40), (40, 60, 120), (90, 90, 90)]), np.float32)
    alpha = (strokes / 255.0)[..., None]
    pixels = paper * (1 - alpha) + pencil * alpha
    pixels += nrng.normal(0.0, rng.uniform(2.0, 5.0), pixels.shape[:2] + (1,)).astype(np.float32)  # paper grain
    out = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
