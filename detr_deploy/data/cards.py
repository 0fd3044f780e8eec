"""Synthetic Adaptive Card images with exact box labels for pic2card's six classes.

The generator draws card designs the way the Adaptive Cards web / Teams / Outlook renderers show
them: a (usually rounded) container with padding holding stacked elements — TextBlocks, Images,
ColumnSets of 2-4 columns, FactSets, expanded ChoiceSets (radio buttons / checkboxes),
Input.Toggle, Input.Text boxes, star ratings and ActionSets — with separators and the renderers'
spacing scale. Roughly 60 % of the cards come from 14 hand-written templates (weather, expense
report, flight update, restaurant review, poll, form, activity update, product, gallery, news,
reminder, survey, profile, task list), the rest are random compositions of the same elements.

Labelling policy (class index: name)

* ``0 textbox`` — every TextBlock: titles, subtitles, whole wrapped paragraphs (one box per
  block), captions, FactSet titles and values (one box each), the label next to a radio button /
  checkbox / toggle (its own box), the value and count text next to a star rating, and input
  labels above Input.Text fields. Boxes are tight around the rendered ink (alpha >= 1/8).
* ``1 radiobutton`` — the circle of an expanded single-select ChoiceSet, checked or not; the box
  covers the circle only.
* ``2 checkbox`` — the square of Input.Toggle or of a multi-select expanded ChoiceSet.
* ``3 actionset`` — one box around the whole row (or vertical stack) of 1-4 buttons; the button
  captions are *not* labelled separately.
* ``4 image`` — pictures (photo crops of matplotlib's sample images, procedural photos,
  landscapes, textures, charts, logos), round "person" avatars and small icons. Opaque images are
  boxed by their extent; icons with transparent parts by their visible pixels.
* ``5 rating`` — the row of five stars only.

Not labelled at all: the card background, containers, separators, and **input fields**
(Input.Text / Number / Date / Time boxes and compact ChoiceSet drop-downs) *including the
placeholder or value text drawn inside them* — text inside an input frame is part of the input,
not a TextBlock, and pic2card has no input class.

Everything is deterministic per seed: ``render_card(s)`` returns byte-identical pixels and labels
on a given machine (font discovery also looks at ``/usr/share/fonts``, so a machine with other
system fonts makes other — equally valid — images).

Command line::

    python -m detr_deploy.data.cards OUT_DIR --num-images N --seed S [--formats coco voc] [--max-side M]
"""

from __future__ import annotations

import argparse
import glob
import io
import math
import os
import random
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from detr_deploy.data.annotations import write_coco, write_voc

__all__ = [
    "CLASS_NAMES",
    "CLASS_COLORS",
    "TEMPLATES",
    "render_card",
    "generate_dataset",
    "draw_labels",
    "main",
]

CLASS_NAMES: Tuple[str, ...] = ("textbox", "radiobutton", "checkbox", "actionset", "image", "rating")
"""pic2card's classes; the position is the model's 0-based class index (COCO id = index + 1)."""

CLASS_COLORS: Tuple[Tuple[int, int, int], ...] = (
    (230, 25, 75),  # textbox: red
    (60, 180, 75),  # radiobutton: green
    (0, 130, 200),  # checkbox: blue
    (245, 130, 48),  # actionset: orange
    (145, 30, 180),  # image: purple
    (240, 50, 230),  # rating: magenta
)
"""One fixed RGB colour per class index, used by :func:`draw_labels` (cycled for extra classes)."""

TEXTBOX, RADIO, CHECKBOX, ACTIONSET, IMAGE, RATING = range(6)

Color = Tuple[int, int, int]
Box = Tuple[float, float, float, float]

_LAYOUT = ImageFont.Layout.BASIC  # deterministic and fast; no complex scripts are drawn

# ============================================================================================
# pseudo-English text

_WORDS = """
the of and to in is for on that with as at by from this be are was it an or have will your
you we our not all can new more one about time team project report update review meeting
plan design data card image service customer order account request status approval budget
travel flight hotel weather forecast today tomorrow week month year daily weekly quarter
sales revenue growth market product launch feature release version build test issue bug task
deadline schedule event invite calendar reminder notice alert message reply comment share
please check confirm submit cancel approve reject open close view details summary total amount
cost price item items expense receipt payment invoice balance transfer deposit credit debit
city street office room building floor location address phone email contact support help
great good best better quick easy simple clear bright fresh warm cold sunny cloudy rain snow
wind storm light dark green blue red orange purple yellow white black silver golden
coffee lunch dinner breakfast menu table booking restaurant kitchen pizza pasta salad burger
music movie book game sport team player score match season league goal win lose draw
learning training course lesson class student teacher school program workshop session
health fitness run walk yoga sleep water energy focus goal habit progress streak
security password login device access policy compliance training privacy risk owner
shipping delivery package tracking arrival departure gate terminal seat boarding baggage
survey feedback question answer option choice rating vote poll result response
""".split()

_FIRST = """Alex Maria John Priya Chen Fatima Lucas Emma Noah Olivia Liam Ava Mia Ethan Sofia Kenji
Aisha Carlos Hannah David Sara Omar Grace Leo Nina Ravi Elena Tom Yuki Zoe Adam Lina Marco Jade
Ivan Amara Felix Chloe Diego Nora Samuel Ines Victor Mei Oscar Leah""".split()
_LAST = """Smith Johnson Garcia Patel Chen Kim Nguyen Muller Rossi Silva Brown Wilson Taylor Lee
Martin Lopez Clark Lewis Walker Hall Young King Wright Scott Green Baker Adams Nelson Hill Campbell
Mitchell Roberts Carter Phillips Evans Turner Torres Parker Collins Edwards Stewart Morris""".split()
_CITIES = """Seattle Redmond London Paris Tokyo Sydney Berlin Madrid Toronto Chicago Boston Austin
Denver Mumbai Bangalore Singapore Dublin Amsterdam Oslo Zurich Vienna Prague Lisbon Rome Cairo
Nairobi Lagos Lima Bogota Santiago Montreal Vancouver Miami Atlanta Dallas Phoenix""".split()
_MONTHS = "January February March April May June July August September October November December".split()
_DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_COMPANIES = """Contoso Fabrikam Northwind Tailspin Litware Adatum Proseware Woodgrove Fourth Coffee
Wingtip Lamna Relecloud Alpine Ski Trey Research Margie's Travel""".split()


class _Text:
    """Pseudo-English generator bound to one ``random.Random``."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def word(self) -> str:
        return self.rng.choice(_WORDS)

    def words(self, lo: int, hi: int) -> str:
        return " ".join(self.word() for _ in range(self.rng.randint(lo, hi)))

    def title(self, lo: int = 2, hi: int = 5) -> str:
        words = self.words(lo, hi).split()
        while len(words) > 1 and len(words[-1]) <= 3:
            words.pop()
        return " ".join(w.capitalize() if (i == 0 or len(w) > 3) else w for i, w in enumerate(words))

    def sentence(self, lo: int = 5, hi: int = 14) -> str:
        parts = self.words(lo, hi).split()
        if len(parts) > 6 and self.rng.random() < 0.35:
            parts[self.rng.randint(2, len(parts) - 3)] += ","
        if self.rng.random() < 0.15:
            parts.insert(self.rng.randint(1, len(parts)), self.rng.choice([self.name(), self.city(), self.number()]))
        text = " ".join(parts)
        return text[0].upper() + text[1:] + self.rng.choice(".......!?")

    def paragraph(self, lo: int = 1, hi: int = 3) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(lo, hi)))

    def first(self) -> str:
        return self.rng.choice(_FIRST)

    def name(self) -> str:
        return f"{self.rng.choice(_FIRST)} {self.rng.choice(_LAST)}"

    def city(self) -> str:
        return self.rng.choice(_CITIES)

    def company(self) -> str:
        return self.rng.choice(_COMPANIES)

    def number(self) -> str:
        return str(self.rng.choice([self.rng.randint(1, 99), self.rng.randint(100, 9999)]))

    def money(self) -> str:
        value = self.rng.choice([self.rng.uniform(1, 99), self.rng.uniform(100, 9999)])
        symbol = self.rng.choice(["$", "$", "$", "\u20ac", "\u00a3"])
        return f"{symbol}{value:,.2f}"

    def date(self) -> str:
        r = self.rng
        month, day, year = r.randrange(12), r.randint(1, 28), r.randint(2019, 2026)
        kind = r.randrange(5)
        if kind == 0:
            return f"{_MONTHS[month]} {day}, {year}"
        if kind == 1:
            return f"{_DAYS[r.randrange(7)][:3]}, {_MONTHS[month][:3]} {day}, {year}"
        if kind == 2:
            return f"{month + 1}/{day}/{year}"
        if kind == 3:
            return f"{year}-{month + 1:02d}-{day:02d}"
        return f"{_DAYS[r.randrange(7)]}, {_MONTHS[month]} {day}"

    def time(self) -> str:
        r = self.rng
        if r.random() < 0.6:
            return f"{r.randint(1, 12)}:{r.choice(['00', '15', '30', '45', '05', '50'])} {r.choice(['AM', 'PM'])}"
        return f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}"

    def label(self) -> str:
        """A short button / choice caption."""
        r = self.rng
        if r.random() < 0.6:
            return r.choice(
                [
                    "Submit", "Approve", "Reject", "View details", "Open", "Cancel", "Reply", "Save",
                    "Learn more", "Book now", "Accept", "Decline", "Snooze", "Dismiss", "Comment",
                    "Set due date", "Check in", "Share", "Order", "Send", "Vote", "Confirm", "Skip",
                    "Edit", "Next", "Done", "Add to cart", "Track", "Call", "Directions", "Sign up",
                ]
            )
        return self.title(1, 2)


# ============================================================================================
# fonts


@dataclass(frozen=True)
class _Family:
    name: str
    regular: str
    bold: str
    italic: str
    bold_italic: str
    light: str
    weight: float  # how often the family is picked for a card


_SKIP_FONT = ("sym", "nonuni", "math", "lastresort", "last resort", "display", "cmex", "cmsy", "cmmi",
              "cmb10", "cmr10", "cmss10", "cmti10", "cmtt10", "emoji", "icon", "awesome", "wingding", "dingbat")


def _font_paths() -> List[str]:
    paths: List[str] = []
    try:
        import matplotlib

        paths += sorted(glob.glob(os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "*.ttf")))
    except Exception:  # pragma: no cover - matplotlib is a dependency
        pass
    for pattern in ("/usr/share/fonts/**/*.ttf", "/usr/share/fonts/**/*.otf"):
        paths += sorted(glob.glob(pattern, recursive=True))
    return paths


@lru_cache(maxsize=1)
def _font_families() -> Tuple[_Family, ...]:
    found: Dict[Tuple[str, str], str] = {}
    for path in _font_paths():
        base = os.path.basename(path).lower()
        if any(token in base for token in _SKIP_FONT):
            continue
        try:
            family, style = ImageFont.truetype(path, 16, layout_engine=_LAYOUT).getname()
        except Exception:
            continue
        if not family or any(token in family.lower() for token in _SKIP_FONT):
            continue
        tokens = (style or "Regular").lower().replace("-", " ").split()
        if "condensed" in tokens:
            family += " Condensed"
            tokens = [t for t in tokens if t != "condensed"]
        bold = "bold" in tokens or "semibold" in tokens
        italic = "italic" in tokens or "oblique" in tokens
        light = any(t in tokens for t in ("light", "extralight", "thin"))
        rest = [t for t in tokens if t not in ("bold", "semibold", "italic", "oblique", "light", "extralight",
                                               "thin", "regular", "book", "roman", "normal", "medium")]
        if rest:
            continue
        slot = "light" if light else ("bold_italic" if bold and italic else "bold" if bold else "italic" if italic else "regular")
        found.setdefault((family, slot), path)
    families = []
    for family in sorted({fam for fam, _ in found}):
        regular = found.get((family, "regular"))
        if regular is None:
            continue
        bold = found.get((family, "bold"), regular)
        italic = found.get((family, "italic"), regular)
        lower = family.lower()
        if "mono" in lower:
            weight = 0.4
        elif "condensed" in lower and "sans" in lower:
            weight = 4.0
        elif "sans" in lower:
            weight = 6.0
        elif "serif" in lower or "stix" in lower:
            weight = 0.9
        else:
            weight = 2.0
        families.append(
            _Family(family, regular, bold, italic, found.get((family, "bold_italic"), bold),
                    found.get((family, "light"), regular), weight)
        )
    if not families:  # pragma: no cover - matplotlib always ships DejaVu
        raise RuntimeError("no usable TrueType fonts found (matplotlib's DejaVu fonts are expected)")
    return tuple(families)


@lru_cache(maxsize=2048)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(4, int(size)), layout_engine=_LAYOUT)


# ============================================================================================
# anti-aliased masks (drawn at 4x and reduced; cached by size)

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
        d2.polygon([(((x / _SS - cx) * scale + cx) * _SS, ((y / _SS - cy) * scale + cy) * _SS) for x, y in pts], fill=255)
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


# ============================================================================================
# pictures


def _mpl_path(*parts: str) -> Optional[str]:
    try:
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), *parts)
        return path if os.path.exists(path) else None
    except Exception:  # pragma: no cover
        return None


def _colormap(values: np.ndarray, stops: Sequence[Tuple[float, Color]]) -> np.ndarray:
    xs = [s for s, _ in stops]
    out = np.empty(values.shape + (3,), dtype=np.float32)
    for c in range(3):
        out[..., c] = np.interp(values, xs, [col[c] for _, col in stops])
    return out


def _hillshade(z: np.ndarray, stops, azimuth=315.0, altitude=45.0) -> Image.Image:
    z = z.astype(np.float64)
    z = (z - z.min()) / max(1e-9, z.max() - z.min())
    gy, gx = np.gradient(z * 40.0)
    slope = np.pi / 2 - np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)
    az, alt = np.radians(azimuth), np.radians(altitude)
    shade = np.sin(alt) * np.sin(slope) + np.cos(alt) * np.cos(slope) * np.cos(az - aspect)
    rgb = _colormap(z, stops) * (0.45 + 0.65 * np.clip(shade, 0, 1))[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


_TERRAIN = [(0.0, (40, 90, 40)), (0.3, (90, 140, 60)), (0.55, (170, 160, 100)), (0.8, (140, 110, 80)), (1.0, (245, 245, 245))]
_OCEAN = [(0.0, (10, 40, 110)), (0.45, (40, 110, 190)), (0.5, (200, 190, 140)), (0.6, (80, 150, 70)), (0.85, (120, 100, 70)), (1.0, (250, 250, 250))]


@lru_cache(maxsize=1)
def _photo_sources() -> Tuple[Image.Image, ...]:
    """Photographic-looking source pictures (RGB), loaded once."""
    sources: List[Image.Image] = []
    path = _mpl_path("sample_data", "grace_hopper.jpg")
    if path:
        with Image.open(path) as im:
            sources.append(im.convert("RGB"))
    path = _mpl_path("sample_data", "jacksboro_fault_dem.npz")
    if path:
        with np.load(path) as data:
            z = np.asarray(data["elevation"], dtype=np.float64)
        sources.append(_hillshade(z, _TERRAIN))
    path = _mpl_path("sample_data", "topobathy.npz")
    if path:
        with np.load(path) as data:
            z = np.asarray(data["topo"], dtype=np.float64)
        z = np.where(z < 0, z / max(1.0, -z.min()) * 0.5 + 0.5, z / max(1.0, z.max()) * 0.5 + 0.5)
        img = _hillshade(z, _OCEAN).resize((480, 364), Image.Resampling.BICUBIC)
        sources.append(img)
    path = _mpl_path("sample_data", "Minduka_Present_Blue_Pack.png")
    if path:
        with Image.open(path) as im:
            rgba = im.convert("RGBA").resize((256, 256), Image.Resampling.BICUBIC)
        bg = Image.new("RGBA", rgba.size, (236, 240, 244, 255))
        sources.append(Image.alpha_composite(bg, rgba).convert("RGB"))
    return tuple(sources)


@lru_cache(maxsize=1)
def _icon_sources() -> Tuple[Image.Image, ...]:
    """Small RGBA icons shipped with matplotlib (toolbar icons, the logo)."""
    icons: List[Image.Image] = []
    for name in ("home_large", "back_large", "forward_large", "filesave_large", "help_large", "move_large",
                 "zoom_to_rect_large", "subplots_large", "matplotlib_large", "hand"):
        path = _mpl_path("images", name + ".png")
        if path:
            with Image.open(path) as im:
                icons.append(im.convert("RGBA"))
    return tuple(icons)


@lru_cache(maxsize=1)
def _logo_source() -> Optional[Image.Image]:
    path = _mpl_path("sample_data", "logo2.png")
    if not path:
        return None
    with Image.open(path) as im:
        return im.convert("RGBA")


def _vivid(rng: random.Random, light: float = 0.5) -> Color:
    import colorsys

    h = rng.random()
    s = rng.uniform(0.45, 0.95)
    r, g, b = colorsys.hls_to_rgb(h, min(0.9, max(0.1, light + rng.uniform(-0.15, 0.15))), s)
    return (int(r * 255), int(g * 255), int(b * 255))


def _smooth_noise(nrng: np.random.Generator, w: int, h: int, cells: int) -> np.ndarray:
    gw = max(2, int(round(cells * max(1.0, w / max(h, 1)))))
    gh = max(2, int(round(cells * max(1.0, h / max(w, 1)))))
    small = Image.fromarray(nrng.random((gh, gw)).astype(np.float32), "F")
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32)


def _noise1d(nrng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Smooth 1-D noise in [0, 1] with about ``cells`` bumps over ``n`` samples."""
    points = nrng.random(max(2, cells) + 1)
    return np.interp(np.linspace(0, len(points) - 1, n), np.arange(len(points)), points).astype(np.float32) if cells < 3 else \
        np.asarray(Image.fromarray(points[None, :].astype(np.float32), "F").resize((n, 1), Image.Resampling.BICUBIC), np.float32)[0]


def _fbm(nrng: np.random.Generator, w: int, h: int, octaves: int = 4, base: int = 3) -> np.ndarray:
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amp * _smooth_noise(nrng, w, h, base * (2 ** octave))
        norm += amp
        amp *= 0.5
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(1e-6, hi - lo)


def _grain(arr: np.ndarray, nrng: np.random.Generator, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return arr
    return arr + nrng.normal(0.0, sigma, arr.shape[:2] + (1,)).astype(np.float32)


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def _pic_photo(rng, nrng, w, h) -> Image.Image:
    sources = _photo_sources()
    if not sources:
        return _pic_landscape(rng, nrng, w, h)
    weights = [0.45, 0.25, 0.2, 0.1 if max(w, h) <= 200 else 0.0][: len(sources)]
    src = sources[rng.choices(range(len(sources)), weights=weights)[0]]
    sw, sh = src.size
    target = w / h
    crop_w = sw * rng.uniform(0.45, 1.0)
    crop_h = crop_w / target
    if crop_h > sh:
        crop_h = sh * rng.uniform(0.6, 1.0)
        crop_w = crop_h * target
    crop_w, crop_h = min(crop_w, sw), min(crop_h, sh)
    x0 = rng.uniform(0, sw - crop_w)
    y0 = rng.uniform(0, sh - crop_h)
    img = src.resize((w, h), Image.Resampling.BILINEAR, box=(x0, y0, x0 + crop_w, y0 + crop_h))
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.35:
        arr = arr[..., list(rng.choice([(0, 2, 1), (1, 0, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)]))]
    gain = np.array([rng.uniform(0.8, 1.2) for _ in range(3)], np.float32)
    contrast = rng.uniform(0.75, 1.25)
    mean = arr.mean()
    arr = (arr - mean) * contrast + mean * rng.uniform(0.85, 1.15)
    arr = arr * gain
    if rng.random() < 0.2:
        grey = arr.mean(axis=2, keepdims=True)
        arr = grey + (arr - grey) * rng.uniform(0.0, 0.6)
    return _to_image(arr)


def _pic_landscape(rng, nrng, w, h) -> Image.Image:
    sw, sh = max(8, w // 2), max(8, h // 2)
    yy = np.linspace(0, 1, sh, dtype=np.float32)[:, None, None]
    palettes = [
        ((40, 100, 200), (170, 210, 245)),  # day
        ((60, 40, 120), (250, 150, 80)),  # sunset
        ((20, 30, 70), (90, 120, 170)),  # dusk
        ((120, 170, 220), (235, 240, 245)),  # haze
    ]
    top, horizon = palettes[rng.randrange(len(palettes))]
    sky = np.asarray(top, np.float32) * (1 - yy) + np.asarray(horizon, np.float32) * yy
    arr = np.broadcast_to(sky, (sh, sw, 3)).copy()
    if rng.random() < 0.5:  # sun or moon
        cx, cy, r = rng.uniform(0.1, 0.9) * sw, rng.uniform(0.1, 0.45) * sh, rng.uniform(0.03, 0.08) * sw
        xx = np.arange(sw, dtype=np.float32)[None, :]
        dist = np.hypot(xx - cx, yy[:, :, 0] * sh - cy)
        glow = np.clip(1.2 - dist / (r * 3), 0, 1)[..., None] ** 2
        arr = arr * (1 - glow * 0.6) + np.asarray((255, 240, 200), np.float32) * glow * 0.6
        arr[dist < r] = (255, 245, 220)
    if rng.random() < 0.6:  # clouds
        clouds = np.clip((_fbm(nrng, sw, sh, 4, 2) - 0.55) * 3, 0, 1)[..., None] * (1 - yy) ** 0.5
        arr = arr * (1 - clouds * 0.8) + 250 * clouds * 0.8
    layers = rng.randint(2, 4)
    near = np.asarray(rng.choice([(60, 110, 50), (90, 125, 60), (120, 95, 65), (70, 95, 125), (50, 85, 60),
                                  (140, 120, 80), (45, 60, 45)]), np.float32)
    far = np.asarray(horizon, np.float32) * 0.55 + np.asarray((90, 110, 140), np.float32) * 0.45
    base_line = rng.uniform(0.35, 0.6)
    rows = np.arange(sh, dtype=np.float32)[:, None]
    texture = _fbm(nrng, sw, sh, 4, 8)[..., None]
    for layer in range(layers):
        t = (layer + 1) / layers
        ridge = base_line + t * (0.85 - base_line) * rng.uniform(0.3, 0.8)
        profile = _noise1d(nrng, sw, rng.randint(3, 9)) * rng.uniform(0.1, 0.3) * (1.2 - t)
        profile += _noise1d(nrng, sw, rng.randint(15, 40)) * rng.uniform(0.0, 0.03)
        line = (ridge - profile) * sh
        mask = rows >= line[None, :]
        colour = far * (1 - t) + near * t
        depth = np.clip((rows - line[None, :]) / (0.35 * sh), 0, 1)[..., None]  # lighter at the ridge
        shade = (1.1 - 0.3 * depth) * (0.8 + 0.4 * texture)
        arr = np.where(mask[..., None], colour * shade, arr)
    if rng.random() < 0.35:  # water
        wl = int(sh * rng.uniform(0.78, 0.92))
        refl = arr[wl - (sh - wl) : wl][::-1] if wl * 2 > sh else arr[wl:]
        n = min(len(refl), sh - wl)
        water = np.asarray((40, 70, 110), np.float32)
        arr[wl : wl + n] = refl[:n] * 0.55 + water * 0.45
    arr = _grain(arr, nrng, rng.uniform(0, 5))
    img = _to_image(arr).resize((w, h), Image.Resampling.BICUBIC)
    return img


def _pic_skyline(rng, nrng, w, h) -> Image.Image:
    img = _pic_landscape(rng, nrng, w, h) if rng.random() < 0.3 else _pic_gradient(rng, nrng, w, h)
    draw = ImageDraw.Draw(img)
    base = h * rng.uniform(0.75, 1.0)
    x = -rng.uniform(0, 10)
    colour = rng.choice([(25, 30, 45), (40, 40, 55), (60, 65, 80), (15, 15, 20)])
    windows = rng.random() < 0.6
    while x < w:
        bw = rng.uniform(0.05, 0.14) * w
        bh = rng.uniform(0.2, 0.7) * h
        draw.rectangle([x, base - bh, x + bw, h], fill=colour)
        if windows:
            for wy in np.arange(base - bh + 4, base - 4, max(4.0, h * 0.04)):
                for wx in np.arange(x + 3, x + bw - 3, max(4.0, w * 0.02)):
                    if rng.random() < 0.45:
                        draw.rectangle([wx, wy, wx + 1.5, wy + 1.5], fill=(250, 220, 140))
        x += bw + rng.uniform(0, 4)
    return img


def _pic_gradient(rng, nrng, w, h) -> Image.Image:
    angle = rng.uniform(0, 2 * math.pi)
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    t = np.clip(xx * math.cos(angle) + yy * math.sin(angle) + 0.5, 0, 1)
    stops = [(0.0, _vivid(rng)), (1.0, _vivid(rng))]
    if rng.random() < 0.5:
        stops.insert(1, (rng.uniform(0.3, 0.7), _vivid(rng)))
    arr = _colormap(t, stops)
    return _to_image(_grain(arr, nrng, rng.uniform(0, 3)))


def _pic_plasma(rng, nrng, w, h) -> Image.Image:
    sw, sh = max(8, w // 2), max(8, h // 2)
    v = _fbm(nrng, sw, sh, rng.randint(2, 5), rng.randint(2, 4))
    stops = sorted([(0.0, _vivid(rng, 0.3))] + [(rng.random(), _vivid(rng, rng.uniform(0.3, 0.7))) for _ in range(rng.randint(1, 3))] + [(1.0, _vivid(rng, 0.7))])
    arr = _colormap(v, stops)
    return _to_image(arr).resize((w, h), Image.Resampling.BICUBIC)


def _pic_bokeh(rng, nrng, w, h) -> Image.Image:
    sw, sh = max(8, w // 3), max(8, h // 3)
    bg = _pic_gradient(rng, nrng, sw, sh).convert("RGBA")
    layer = Image.new("RGBA", (sw, sh), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for _ in range(rng.randint(8, 30)):
        r = rng.uniform(0.03, 0.15) * max(sw, sh)
        cx, cy = rng.uniform(0, sw), rng.uniform(0, sh)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_vivid(rng, 0.7) + (rng.randint(40, 140),))
    img = Image.alpha_composite(bg, layer).convert("RGB").filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    return img.resize((w, h), Image.Resampling.BICUBIC)


def _pic_product(rng, nrng, w, h) -> Image.Image:
    """An object on a studio background: a shaded blob / bottle / plate."""
    bg = rng.choice([(245, 245, 245), (235, 232, 228), (230, 238, 245), _vivid(rng, 0.85)])
    sw, sh = max(8, w // 2), max(8, h // 2)
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    arr = np.broadcast_to(np.asarray(bg, np.float32), (sh, sw, 3)) * (1.0 - 0.15 * yy[..., None] / sh)
    colour = np.asarray(_vivid(rng), np.float32)
    cx, cy = sw * rng.uniform(0.35, 0.65), sh * rng.uniform(0.45, 0.6)
    rx, ry = sw * rng.uniform(0.15, 0.35), sh * rng.uniform(0.2, 0.38)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    inside = np.clip((1 - d) * min(rx, ry) * 0.6, 0, 1)[..., None]
    light = np.clip(1.15 - 0.6 * (((xx - cx + rx * 0.4) / rx) ** 2 + ((yy - cy + ry * 0.4) / ry) ** 2), 0.35, 1.2)
    shadow = np.clip(1 - (((xx - cx) / (rx * 1.1)) ** 2 + ((yy - cy - ry * 0.95) / (ry * 0.25)) ** 2), 0, 1) * 0.35
    arr = arr * (1 - shadow[..., None])
    arr = arr * (1 - inside) + colour * light[..., None] * inside
    arr = _grain(arr, nrng, 2.0)
    return _to_image(arr).resize((w, h), Image.Resampling.BICUBIC)


def _pic_shapes(rng, nrng, w, h) -> Image.Image:
    img = Image.new("RGB", (w * 2, h * 2), _vivid(rng, rng.uniform(0.6, 0.9)))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.randint(3, 9)):
        colour = _vivid(rng, rng.uniform(0.3, 0.7))
        x, y = rng.uniform(0, 2 * w), rng.uniform(0, 2 * h)
        s = rng.uniform(0.1, 0.5) * 2 * min(w, h)
        kind = rng.randrange(3)
        if kind == 0:
            draw.ellipse([x - s, y - s, x + s, y + s], fill=colour)
        elif kind == 1:
            draw.rectangle([x - s, y - s * 0.6, x + s, y + s * 0.6], fill=colour)
        else:
            draw.polygon([(x, y - s), (x + s, y + s), (x - s, y + s)], fill=colour)
    return img.reduce(2)


def _pic_chart(rng, nrng, w, h) -> Image.Image:
    bg = rng.choice([(255, 255, 255), (250, 250, 250), (245, 247, 250), (30, 30, 35)])
    dark = sum(bg) < 300
    img = Image.new("RGB", (w * 2, h * 2), bg)
    draw = ImageDraw.Draw(img)
    axis = (200, 200, 200) if dark else (120, 120, 120)
    m = int(0.12 * min(w, h) * 2)
    draw.line([(m, m // 2), (m, 2 * h - m), (2 * w - m // 2, 2 * h - m)], fill=axis, width=2)
    n = rng.randint(4, 12)
    vals = nrng.random(n) * 0.8 + 0.15
    colour = _vivid(rng)
    span = (2 * w - m * 1.5) / n
    if rng.random() < 0.6:
        for i, v in enumerate(vals):
            x0 = m + i * span + span * 0.15
            draw.rectangle([x0, 2 * h - m - v * (2 * h - 1.5 * m), x0 + span * 0.7, 2 * h - m - 1], fill=colour)
    else:
        pts = [(m + (i + 0.5) * span, 2 * h - m - v * (2 * h - 1.5 * m)) for i, v in enumerate(vals)]
        draw.line(pts, fill=colour, width=max(2, int(min(w, h) * 0.02)))
        for x, y in pts:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=colour)
    return img.reduce(2)


def _pic_logo(rng, nrng, w, h) -> Image.Image:
    """A logo-like picture: letter on a coloured tile or the matplotlib logo."""
    logo = _logo_source()
    if logo is not None and w > 1.8 * h and rng.random() < 0.6:
        bg = Image.new("RGBA", (w, h), (255, 255, 255, 255) if rng.random() < 0.7 else _vivid(rng, 0.85) + (255,))
        lw, lh = logo.size
        scale = min(w / lw, h / lh) * rng.uniform(0.8, 1.0)
        small = logo.resize((max(1, int(lw * scale)), max(1, int(lh * scale))), Image.Resampling.LANCZOS)
        bg.alpha_composite(small, ((w - small.width) // 2, (h - small.height) // 2))
        return bg.convert("RGB")
    img = Image.new("RGB", (w, h), _vivid(rng, rng.uniform(0.3, 0.55)))
    family = rng.choice(_font_families())
    text = rng.choice(_COMPANIES)[: rng.randint(1, 2)].upper()
    font = _font(family.bold, int(min(w, h) * rng.uniform(0.4, 0.6)))
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    draw.text(((w - (x1 - x0)) / 2 - x0, (h - (y1 - y0)) / 2 - y0), text, font=font, fill=(255, 255, 255))
    return img


def _pic_avatar(rng, nrng, w, h) -> Image.Image:
    """Content for a round person avatar: a face crop, a silhouette or a texture."""
    sources = _photo_sources()
    choice = rng.random()
    if sources and choice < 0.45:
        src = sources[0]  # Grace Hopper portrait: crop around the face
        side = rng.uniform(200, 330)
        cx, cy = 256 + rng.uniform(-25, 25), 190 + rng.uniform(-25, 25)
        img = src.resize((w, h), Image.Resampling.BILINEAR, box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2))
        arr = np.asarray(img, np.float32) * np.asarray([rng.uniform(0.85, 1.15) for _ in range(3)], np.float32)
        return _to_image(arr)
    if choice < 0.8:
        bg = _vivid(rng, rng.uniform(0.55, 0.8))
        fg = tuple(int(c * 0.55) for c in bg) if rng.random() < 0.5 else (250, 250, 250)
        big = Image.new("RGB", (w * 2, h * 2), bg)
        draw = ImageDraw.Draw(big)
        W, H = 2 * w, 2 * h
        draw.ellipse([W * 0.32, H * 0.18, W * 0.68, H * 0.54], fill=fg)
        draw.ellipse([W * 0.15, H * 0.6, W * 0.85, H * 1.3], fill=fg)
        return big.reduce(2)
    return _pic_plasma(rng, nrng, w, h)


_PICTURES: Dict[str, Callable] = {
    "photo": _pic_photo,
    "landscape": _pic_landscape,
    "skyline": _pic_skyline,
    "gradient": _pic_gradient,
    "plasma": _pic_plasma,
    "bokeh": _pic_bokeh,
    "product": _pic_product,
    "shapes": _pic_shapes,
    "chart": _pic_chart,
    "logo": _pic_logo,
    "avatar": _pic_avatar,
}
_PICTURE_WEIGHTS = {"photo": 5, "landscape": 4, "skyline": 1.2, "gradient": 0.8, "plasma": 1.2, "bokeh": 1,
                    "product": 1.5, "shapes": 1, "chart": 0.8, "logo": 0.6}


def _weighted(rng: random.Random, weights: Dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _picture(ctx: "_Ctx", w: int, h: int, kind: str = "auto") -> Image.Image:
    if kind == "auto":
        kind = _weighted(ctx.rng, _PICTURE_WEIGHTS)
    img = _PICTURES[kind](ctx.rng, ctx.nrng, max(2, w), max(2, h))
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return img


def _icon_rgba(ctx: "_Ctx", s: int, kind: str = "auto") -> Image.Image:
    """A small RGBA icon of size (s, s): weather glyphs, simple symbols or matplotlib's icons."""
    rng = ctx.rng
    if kind == "auto":
        kind = rng.choice(["sun", "cloud", "rain", "partly", "mpl", "glyph", "glyph", "mpl"])
    if kind == "mpl" and _icon_sources():
        src = rng.choice(_icon_sources())
        icon = src.resize((s, s), Image.Resampling.LANCZOS)
        if ctx.theme.dark:
            r, g, b, a = icon.split()
            icon = Image.merge("RGBA", (ImageChops.invert(r), ImageChops.invert(g), ImageChops.invert(b), a))
        return icon
    S = s * _SS
    big = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    draw = ImageDraw.Draw(big)
    sun = rng.choice([(255, 185, 0), (250, 200, 40), (255, 160, 20)])
    cloud = (235, 238, 242) if ctx.theme.dark else rng.choice([(180, 188, 200), (150, 160, 175), (205, 210, 220)])
    if kind in ("sun", "partly"):
        cx = cy = S * (0.5 if kind == "sun" else 0.38)
        r = S * (0.22 if kind == "sun" else 0.2)
        for i in range(8):
            a = i * math.pi / 4
            draw.line([(cx + math.cos(a) * r * 1.35, cy + math.sin(a) * r * 1.35),
                       (cx + math.cos(a) * r * 1.9, cy + math.sin(a) * r * 1.9)], fill=sun, width=max(2, S // 18))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=sun)
    if kind in ("cloud", "rain", "partly"):
        y = S * (0.35 if kind == "rain" else 0.45)
        draw.ellipse([S * 0.12, y + S * 0.08, S * 0.5, y + S * 0.4], fill=cloud)
        draw.ellipse([S * 0.3, y - S * 0.08, S * 0.75, y + S * 0.37], fill=cloud)
        draw.ellipse([S * 0.55, y + S * 0.1, S * 0.9, y + S * 0.4], fill=cloud)
        draw.rectangle([S * 0.3, y + S * 0.2, S * 0.72, y + S * 0.4], fill=cloud)
        if kind == "rain":
            for i in range(3):
                x = S * (0.32 + 0.18 * i)
                draw.line([(x, y + S * 0.48), (x - S * 0.06, y + S * 0.62)], fill=(60, 140, 230), width=max(2, S // 20))
    if kind == "glyph":
        colour = ctx.theme.accent if rng.random() < 0.6 else _vivid(rng)
        shape = rng.randrange(4)
        if shape == 0:
            draw.ellipse([S * 0.05, S * 0.05, S * 0.95, S * 0.95], fill=colour)
            draw.text((S * 0.5, S * 0.52), rng.choice("i!?$+"), font=_font(ctx.family.bold, int(S * 0.6)), fill=(255, 255, 255), anchor="mm")
        elif shape == 1:
            draw.rounded_rectangle([S * 0.05, S * 0.05, S * 0.95, S * 0.95], radius=S * 0.2, fill=colour)
            draw.rectangle([S * 0.25, S * 0.3, S * 0.75, S * 0.4], fill=(255, 255, 255))
            draw.rectangle([S * 0.25, S * 0.5, S * 0.65, S * 0.6], fill=(255, 255, 255))
        elif shape == 2:
            draw.polygon([(S * 0.5, S * 0.05), (S * 0.95, S * 0.9), (S * 0.05, S * 0.9)], fill=colour)
        else:
            draw.ellipse([S * 0.1, S * 0.1, S * 0.9, S * 0.9], outline=colour, width=S // 9)
            draw.line([(S * 0.5, S * 0.5), (S * 0.5, S * 0.25)], fill=colour, width=S // 10)
            draw.line([(S * 0.5, S * 0.5), (S * 0.7, S * 0.6)], fill=colour, width=S // 10)
    return big.reduce(_SS)


# ============================================================================================
# theme


@dataclass
class _Theme:
    dark: bool
    page_bg: Color
    card_bg: Color
    border: Optional[Color]
    shadow: float
    radius: int
    text: Color
    subtle: Color
    accent: Color
    good: Color
    warning: Color
    attention: Color
    emphasis_bg: Color
    separator: Color
    input_bg: Color
    input_border: Color
    placeholder: Color
    control_border: Color
    button_style: str
    button_radius: int
    star: Color
    star_empty: Color
    star_empty_style: str


_ACCENTS = [(0, 120, 212), (98, 100, 167), (0, 99, 177), (16, 124, 16), (46, 137, 252), (91, 95, 199),
            (0, 120, 215), (196, 49, 75), (202, 80, 16), (0, 153, 188), (135, 100, 184), (0, 90, 158)]


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))  # type: ignore[return-value]


def _make_theme(rng: random.Random) -> _Theme:
    dark = rng.random() < 0.22
    accent = rng.choice(_ACCENTS) if rng.random() < 0.85 else _vivid(rng, 0.45)
    if dark:
        card_bg = rng.choice([(41, 41, 41), (45, 44, 44), (32, 31, 31), (36, 36, 36), (27, 26, 26), (50, 49, 48)])
        page_bg = rng.choice([(31, 31, 31), (20, 20, 20), (41, 41, 41), (17, 17, 17), (51, 51, 51), card_bg])
        text = rng.choice([(255, 255, 255), (240, 240, 240), (225, 223, 221)])
        subtle = rng.choice([(180, 180, 180), (200, 198, 196), (160, 160, 160)])
        accent = _mix(accent, (255, 255, 255), rng.uniform(0.2, 0.45))
        emphasis = _mix(card_bg, (255, 255, 255), rng.uniform(0.05, 0.1))
        separator = _mix(card_bg, (255, 255, 255), rng.uniform(0.12, 0.22))
        input_bg = rng.choice([_mix(card_bg, (0, 0, 0), 0.25), _mix(card_bg, (255, 255, 255), 0.06)])
        input_border = _mix(card_bg, (255, 255, 255), rng.uniform(0.2, 0.4))
        placeholder = _mix(card_bg, (255, 255, 255), rng.uniform(0.45, 0.6))
        control_border = _mix(card_bg, (255, 255, 255), rng.uniform(0.55, 0.75))
        border = rng.choice([None, None, _mix(card_bg, (255, 255, 255), 0.15)])
        star_empty = _mix(card_bg, (255, 255, 255), rng.uniform(0.25, 0.4))
    else:
        card_bg = rng.choice([(255, 255, 255)] * 6 + [(250, 250, 250), (252, 252, 252), (250, 249, 248)])
        page_bg = rng.choice([(255, 255, 255), (245, 245, 245), (243, 242, 241), (240, 240, 240), (235, 235, 235),
                              (250, 249, 248), (230, 232, 236), (238, 241, 246), (225, 225, 225), _mix(accent, (255, 255, 255), 0.9)])
        text = rng.choice([(50, 49, 48), (0, 0, 0), (36, 36, 36), (51, 51, 51), (32, 31, 30), (23, 43, 77)])
        subtle = rng.choice([(96, 94, 92), (118, 118, 118), (128, 128, 128), (97, 97, 97), (107, 114, 128)])
        emphasis = rng.choice([(243, 242, 241), (245, 245, 245), (248, 248, 248), (240, 242, 245), _mix(accent, (255, 255, 255), 0.92)])
        separator = rng.choice([(238, 238, 238), (225, 223, 221), (230, 230, 230), (210, 210, 210)])
        input_bg = rng.choice([(255, 255, 255), (255, 255, 255), (250, 250, 250), (243, 242, 241)])
        input_border = rng.choice([(138, 136, 134), (200, 198, 196), (204, 204, 204), (225, 223, 221), (170, 170, 170)])
        placeholder = rng.choice([(161, 159, 157), (128, 128, 128), (150, 150, 150), (112, 112, 112)])
        control_border = rng.choice([(96, 94, 92), (50, 49, 48), (118, 118, 118), (138, 136, 134)])
        border = rng.choice([None, (225, 223, 221), (230, 230, 230), (209, 209, 209), (237, 235, 233)])
        star_empty = rng.choice([(200, 198, 196), (210, 210, 210), (225, 223, 221), (190, 190, 190)])
    if page_bg == card_bg and border is None and rng.random() < 0.7:
        border = _mix(card_bg, (128, 128, 128), 0.25)
    return _Theme(
        dark=dark,
        page_bg=page_bg,
        card_bg=card_bg,
        border=border,
        shadow=rng.choice([0.0, 0.0, 0.08, 0.14, 0.22]) * (0.6 if dark else 1.0),
        radius=rng.choice([0, 2, 4, 4, 6, 8, 8, 10, 12, 16]),
        text=text,
        subtle=subtle,
        accent=accent,
        good=rng.choice([(84, 162, 84), (16, 124, 16), (35, 134, 54)]),
        warning=rng.choice([(230, 149, 0), (193, 156, 0), (202, 80, 16)]),
        attention=rng.choice([(204, 51, 0), (164, 38, 44), (209, 52, 56)]),
        emphasis_bg=emphasis,
        separator=separator,
        input_bg=input_bg,
        input_border=input_border,
        placeholder=placeholder,
        control_border=control_border,
        button_style=rng.choices(["teams", "filled", "outline", "tint", "link", "grey", "primary_first"],
                                 weights=[4, 3, 2.5, 1, 1, 1, 2.5])[0],
        button_radius=rng.choice([0, 2, 3, 4, 4, 6, 8, 99]),
        star=rng.choice([(255, 185, 0), (242, 200, 17), (255, 170, 0), (250, 190, 40), (255, 200, 0), accent, (232, 17, 35)]),
        star_empty=star_empty,
        star_empty_style=rng.choice(["grey", "grey", "outline"]),
    )


# ============================================================================================
# rendering context and elements


class _Ctx:
    """Mutable state of one card rendering."""

    def __init__(self, rng: random.Random, nrng: np.random.Generator, width: int):
        self.rng = rng
        self.nrng = nrng
        self.text = _Text(rng)
        self.theme = _make_theme(rng)
        families = _font_families()
        self.family = rng.choices(families, weights=[f.weight for f in families])[0]
        self.title_family = self.family if rng.random() < 0.85 else rng.choice(families)
        self.scale = rng.uniform(0.85, min(1.6, 0.75 + width / 550))
        self.stretch = 1.0 if rng.random() < 0.45 else rng.uniform(0.82, 0.97)
        self.line_factor = rng.uniform(1.22, 1.45)
        self.sizes = {"small": 12, "default": 14, "medium": 17, "large": 21, "extraLarge": 26}
        if rng.random() < 0.4:
            jitter = rng.uniform(0.88, 1.15)
            self.sizes = {k: v * jitter for k, v in self.sizes.items()}
        self.spacings = {"none": 0, "small": 4, "default": 8, "medium": 16, "large": 28, "extraLarge": 40, "padding": 16}
        self.width = width
        self.pad = self.px(rng.choice([12, 14, 15, 16, 16, 20]))
        self.content_w = width - 2 * self.pad
        self.img: Optional[Image.Image] = None
        self.labels: List[Tuple[float, float, float, float, int]] = []

    def px(self, value: float) -> int:
        return max(1, int(round(value * self.scale)))

    def space(self, name: Union[str, int]) -> int:
        if isinstance(name, int):
            return name
        return 0 if name == "none" else self.px(self.spacings[name])

    def color(self, name: Union[str, Color]) -> Color:
        if isinstance(name, tuple):
            return name
        t = self.theme
        return {"default": t.text, "subtle": t.subtle, "accent": t.accent, "good": t.good, "warning": t.warning,
                "attention": t.attention, "light": (255, 255, 255), "dark": (0, 0, 0)}[name]

    def font(self, size: Union[str, float], weight: str = "default", italic: bool = False, family: Optional[_Family] = None) -> ImageFont.FreeTypeFont:
        fam = family or self.family
        px = self.px(self.sizes[size]) if isinstance(size, str) else max(6, int(round(size)))
        if weight == "bolder":
            path = fam.bold_italic if italic else fam.bold
        elif weight == "lighter":
            path = fam.light if not italic else fam.italic
        else:
            path = fam.italic if italic else fam.regular
        return _font(path, px)

    def label(self, box: Tuple[float, float, float, float], cls: int) -> None:
        self.labels.append((float(box[0]), float(box[1]), float(box[2]), float(box[3]), cls))

    def fill(self, color: Color, x: int, y: int, mask: Image.Image) -> None:
        self.img.paste(color, (x, y, x + mask.width, y + mask.height), mask)


class _El:
    spacing: Union[str, int] = "default"
    separator: bool = False
    h: int = 0

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        return None

    def measure(self, ctx: _Ctx, width: int) -> int:
        raise NotImplementedError

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        raise NotImplementedError

    def at(self, spacing: Union[str, int] = "default", separator: bool = False) -> "_El":
        self.spacing = spacing
        self.separator = separator
        return self


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: float, stretch: float) -> List[str]:
    lines: List[str] = []
    for para in text.split("\n"):
        words = para.split(" ")
        line = ""
        for word in words:
            trial = word if not line else line + " " + word
            if not line or font.getlength(trial) * stretch <= width:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _ellipsize(text: str, font: ImageFont.FreeTypeFont, width: float, stretch: float) -> str:
    if font.getlength(text) * stretch <= width:
        return text
    while len(text) > 1 and font.getlength(text + "\u2026") * stretch > width:
        text = text[:-1].rstrip()
    return text + "\u2026"


class TextBlock(_El):
    def __init__(self, text: str, size: Union[str, float] = "default", weight: str = "default", color: Union[str, Color] = "default",
                 wrap: bool = True, max_lines: int = 0, align: str = "left", italic: bool = False, label: bool = True,
                 title_font: bool = False):
        self.text, self.size, self.weight, self.color = text, size, weight, color
        self.wrap, self.max_lines, self.align, self.italic = wrap, max_lines, align, italic
        self.do_label, self.title_font = label, title_font
        self.lines: List[str] = []

    def _font(self, ctx: _Ctx):
        return ctx.font(self.size, self.weight, self.italic, ctx.title_family if self.title_font else None)

    def _line_height(self, ctx: _Ctx, font) -> Tuple[int, int]:
        ascent, descent = font.getmetrics()
        lh = max(ascent + descent, int(round(font.size * ctx.line_factor)))
        return lh, (lh - ascent - descent) // 2

    def natural_width(self, ctx: _Ctx) -> int:
        font = self._font(ctx)
        return int(math.ceil(max(font.getlength(line) for line in self.text.split("\n")) * ctx.stretch)) + 2

    def measure(self, ctx: _Ctx, width: int) -> int:
        font = self._font(ctx)
        if self.wrap:
            lines = _wrap(self.text, font, width - 2, ctx.stretch)
            if self.max_lines and len(lines) > self.max_lines:
                lines = lines[: self.max_lines]
                lines[-1] = _ellipsize(lines[-1] + " \u2026", font, width - 2, ctx.stretch)
        else:
            lines = [_ellipsize(self.text.split("\n")[0], font, width - 2, ctx.stretch)]
        self.lines = [line for line in lines if line.strip()] or ["-"]
        lh, _ = self._line_height(ctx, font)
        self.h = lh * len(self.lines)
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        font = self._font(ctx)
        lh, pad = self._line_height(ctx, font)
        stretch = ctx.stretch
        raw_w = int(math.ceil(width / stretch)) + 2
        mask = Image.new("L", (raw_w, self.h), 0)
        draw = ImageDraw.Draw(mask)
        for i, line in enumerate(self.lines):
            length = font.getlength(line)
            if self.align == "center":
                lx = (width / stretch - length) / 2
            elif self.align == "right":
                lx = width / stretch - length - 1
            else:
                lx = 0
            draw.text((max(0, int(lx)) + 1, i * lh + pad), line, font=font, fill=255)
        if stretch != 1.0:
            mask = mask.resize((width, self.h), Image.Resampling.BILINEAR, box=(0, 0, width / stretch, self.h))
        else:
            mask = mask.crop((0, 0, width, self.h))
        bbox = _threshold_bbox(mask)
        if bbox is None:
            return
        ctx.fill(ctx.color(self.color), x, y, mask)
        if self.do_label:
            ctx.label((x + bbox[0], y + bbox[1], x + bbox[2], y + bbox[3]), TEXTBOX)


class ImageEl(_El):
    """An Image: fixed size (w, h in design px), or stretched to the width with an aspect ratio."""

    def __init__(self, w: float = 0, h: float = 0, kind: str = "auto", person: bool = False, align: str = "left",
                 stretch: bool = False, aspect: float = 0.5, radius: int = 0, bleed: int = 0, icon: str = "auto"):
        self.w, self.hh, self.kind, self.person, self.align = w, h, kind, person, align
        self.icon = icon
        self.stretch, self.aspect, self.radius, self.bleed = stretch, aspect, radius, bleed
        self.size = (0, 0)

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        return None if self.stretch else ctx.px(self.w)

    def measure(self, ctx: _Ctx, width: int) -> int:
        if self.stretch:
            w = width + 2 * self.bleed
            h = max(8, int(round(w * self.aspect)))
        else:
            w, h = ctx.px(self.w), ctx.px(self.hh or self.w)
            if w > width:
                h, w = max(4, int(h * width / w)), width
        self.size = (w, h)
        self.h = h
        return h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        w, h = self.size
        if self.stretch:
            x -= self.bleed
        elif self.align == "center":
            x += (width - w) // 2
        elif self.align == "right":
            x += width - w
        if self.kind == "icon":
            icon = _icon_rgba(ctx, w, self.icon)
            if icon.size != (w, h):
                icon = icon.resize((w, h), Image.Resampling.LANCZOS)
            alpha = icon.getchannel("A")
            bbox = _threshold_bbox(alpha)
            if bbox is None:
                return
            ctx.img.paste(icon.convert("RGB"), (x, y), alpha)
            ctx.label((x + bbox[0], y + bbox[1], x + bbox[2], y + bbox[3]), IMAGE)
            return
        pic = _picture(ctx, w, h, "avatar" if (self.person and self.kind == "auto") else self.kind)
        if self.person:
            mask = _ellipse_mask(w, h)
        elif self.radius:
            mask = _rrect_mask(w, h, ctx.px(self.radius))
        else:
            mask = None
        ctx.img.paste(pic, (x, y), mask)
        ctx.label((x, y, x + w, y + h), IMAGE)


class ImageSet(_El):
    def __init__(self, count: int, size: float, kind: str = "auto", person: bool = False, gap: float = 8):
        self.count, self.size, self.kind, self.person, self.gap = count, size, kind, person, gap
        self.positions: List[Tuple[int, int]] = []

    def measure(self, ctx: _Ctx, width: int) -> int:
        s, gap = ctx.px(self.size), ctx.px(self.gap)
        s = min(s, width)
        self.s = s
        self.positions = []
        x = y = 0
        for _ in range(self.count):
            if x + s > width and x > 0:
                x, y = 0, y + s + gap
            self.positions.append((x, y))
            x += s + gap
        self.h = y + s
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        for px_, py_ in self.positions:
            el = ImageEl(kind=self.kind, person=self.person)
            el.size = (self.s, self.s)
            el.draw(ctx, x + px_, y + py_, self.s)


def _stack_heights(ctx: _Ctx, items: Sequence[_El], width: int) -> Tuple[int, List[int]]:
    total, gaps = 0, []
    for i, el in enumerate(items):
        gap = 0
        if i > 0:
            gap = ctx.space(el.spacing)
            if el.separator:
                gap = max(gap, ctx.px(8)) * 2 + 1
        gaps.append(gap)
        total += gap + el.measure(ctx, width)
    return total, gaps


class Container(_El):
    def __init__(self, items: Sequence[_El], style: Optional[str] = None, padding: Optional[float] = None,
                 bleed: int = 0, radius: int = 0, bg: Optional[Color] = None):
        self.items, self.style, self.bleed, self.radius, self.bg = list(items), style, bleed, radius, bg
        self.padding = padding

    def _pad(self, ctx: _Ctx) -> int:
        if self.padding is not None:
            return ctx.px(self.padding) if self.padding else 0
        return ctx.px(12) if (self.style or self.bg) else 0

    def _bg(self, ctx: _Ctx) -> Optional[Color]:
        if self.bg is not None:
            return self.bg
        t = ctx.theme
        if self.style == "emphasis":
            return t.emphasis_bg
        if self.style in ("accent", "good", "attention", "warning"):
            base = ctx.color(self.style)
            return _mix(base, t.card_bg, 0.82 if not t.dark else 0.7)
        return None

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        widths = [el.natural_width(ctx) for el in self.items]
        if any(w is None for w in widths) or not widths:
            return None
        return max(widths) + 2 * self._pad(ctx)

    def measure(self, ctx: _Ctx, width: int) -> int:
        pad = self._pad(ctx)
        inner = width + 2 * self.bleed - 2 * pad
        total, self.gaps = _stack_heights(ctx, self.items, max(10, inner))
        self.h = total + 2 * pad
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        pad = self._pad(ctx)
        bg = self._bg(ctx)
        x0, w = x - self.bleed, width + 2 * self.bleed
        if bg is not None:
            ctx.fill(bg, x0, y, _rrect_mask(w, self.h, ctx.px(self.radius) if self.radius else 0))
        cy = y + pad
        for el, gap in zip(self.items, self.gaps):
            if el.separator and gap:
                ctx.fill(ctx.theme.separator, x0 + pad, cy + gap // 2, Image.new("L", (w - 2 * pad, 1), 255))
            cy += gap
            el.draw(ctx, x0 + pad, cy, w - 2 * pad)
            cy += el.h


class Column:
    def __init__(self, items: Sequence[_El], width: Union[str, float] = "stretch", valign: str = "top", weight: float = 1.0):
        self.items, self.width, self.valign, self.weight = list(items), width, valign, weight


class ColumnSet(_El):
    def __init__(self, columns: Sequence[Column], gap: float = 8, col_separator: bool = False, style: Optional[str] = None):
        self.columns, self.gap, self.col_separator = list(columns), gap, col_separator
        self.style = style

    def natural_width(self, ctx: _Ctx) -> Optional[int]:
        total = 0
        for col in self.columns:
            if isinstance(col.width, tuple):
                total += int(col.width[1])
                continue
            if isinstance(col.width, (int, float)):
                total += ctx.px(col.width)
                continue
            widths = [el.natural_width(ctx) for el in col.items]
            if any(w is None for w in widths):
                return None
            total += max(widths or [0])
        return total + ctx.px(self.gap) * (len(self.columns) - 1)

    def measure(self, ctx: _Ctx, width: int) -> int:
        gap = ctx.px(self.gap)
        n = len(self.columns)
        avail = max(10 * n, width - gap * (n - 1))
        widths: List[Optional[int]] = [None] * n
        kinds = []
        for i, col in enumerate(self.columns):
            if isinstance(col.width, tuple):  # ("px", n): already in pixels
                widths[i] = int(col.width[1])
                kinds.append("fixed")
            elif isinstance(col.width, (int, float)):
                widths[i] = ctx.px(col.width)
                kinds.append("fixed")
            elif col.width == "auto":
                nat = [el.natural_width(ctx) for el in col.items]
                if any(v is None for v in nat):
                    kinds.append("stretch")
                else:
                    widths[i] = max(nat or [0])
                    kinds.append("auto")
            else:
                kinds.append("stretch")
        n_stretch = kinds.count("stretch")
        min_stretch = max(ctx.px(40), int(avail * (0.25 if n <= 2 else 0.15)))
        budget = avail - n_stretch * min_stretch
        for i in range(n):  # fixed first, then auto columns, each capped so the rest still fits
            if kinds[i] == "fixed":
                widths[i] = max(10, min(widths[i], budget - 10 * (n - 1)))
                budget -= widths[i]
        n_auto = kinds.count("auto")
        for i in range(n):
            if kinds[i] == "auto":
                cap = budget if n_auto == 1 else max(10, budget // n_auto)
                if n > 1:
                    cap = min(cap, int(avail * 0.7))
                widths[i] = max(10, min(widths[i], cap))
        used = sum(w for w in widths if w is not None)
        remaining = max(0, avail - used)
        weights = sum(self.columns[i].weight for i in range(n) if kinds[i] == "stretch") or 1.0
        for i in range(n):
            if kinds[i] == "stretch":
                widths[i] = max(10, int(remaining * self.columns[i].weight / weights))
        self.widths = [int(w) for w in widths]  # type: ignore[arg-type]
        self.col_heights = []
        self.col_gaps = []
        for col, w in zip(self.columns, self.widths):
            total, gaps = _stack_heights(ctx, col.items, w)
            self.col_heights.append(total)
            self.col_gaps.append(gaps)
        self.h = max(self.col_heights or [0])
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        gap = ctx.px(self.gap)
        cx = x
        for i, (col, w, ch, gaps) in enumerate(zip(self.columns, self.widths, self.col_heights, self.col_gaps)):
            if i > 0 and self.col_separator:
                ctx.fill(ctx.theme.separator, cx - gap // 2 - 1, y, Image.new("L", (1, max(1, self.h)), 255))
            cy = y
            if col.valign == "center":
                cy += (self.h - ch) // 2
            elif col.valign == "bottom":
                cy += self.h - ch
            for el, g in zip(col.items, gaps):
                if el.separator and g:
                    ctx.fill(ctx.theme.separator, cx, cy + g // 2, Image.new("L", (w, 1), 255))
                cy += g
                el.draw(ctx, cx, cy, w)
                cy += el.h
            cx += w + gap


class FactSet(_El):
    def __init__(self, facts: Sequence[Tuple[str, str]], title_weight: str = "bolder", gap: float = 6,
                 title_color: str = "default", size: str = "default"):
        self.facts, self.title_weight, self.gap, self.title_color, self.size = list(facts), title_weight, gap, title_color, size

    def measure(self, ctx: _Ctx, width: int) -> int:
        titles = [TextBlock(t, self.size, self.title_weight, self.title_color) for t, _ in self.facts]
        tw = max(t.natural_width(ctx) for t in titles)
        tw = min(tw, int(width * 0.45))
        self.rows = []
        for title, (_, value) in zip(titles, self.facts):
            row = ColumnSet([Column([title], ("px", tw)), Column([TextBlock(value, self.size)], "stretch")], gap=10)
            row.spacing = self.gap if self.rows else "none"
            self.rows.append(row)
        total, self.gaps = _stack_heights(ctx, [r.at(ctx.px(self.gap) if i else "none") for i, r in enumerate(self.rows)], width)
        self.h = total
        return total

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        cy = y
        for row, gap in zip(self.rows, self.gaps):
            cy += gap
            row.draw(ctx, x, cy, width)
            cy += row.h


def _draw_control(ctx: _Ctx, kind: str, x: int, y: int, s: int, checked: bool, style: int) -> None:
    t = ctx.theme
    bg = t.input_bg
    border_t = max(1, int(round(s / 14)))
    if kind == "radio":
        if checked and style == 1:  # filled accent disc with a white centre dot (Fluent / Windows 11)
            ctx.fill(t.accent, x, y, _ellipse_mask(s, s))
            d = max(2, int(s * 0.42)) | 0
            o = (s - d) // 2
            ctx.fill((255, 255, 255), x + o, y + o, _ellipse_mask(d, d))
            return
        ctx.fill(bg, x, y, _ellipse_mask(s, s))
        ring = t.accent if (checked and style != 2) else t.control_border
        ctx.fill(ring, x, y, _ellipse_mask(s, s, border_t))
        if checked:
            d = max(2, int(round(s * (0.5 if style == 0 else 0.45))))
            o = (s - d) // 2
            ctx.fill(t.accent if style != 2 else t.text, x + o, y + o, _ellipse_mask(d, d))
    else:
        r = ctx.rng.choice([0, 1, 2, 3]) if style != 1 else 2
        r = min(r, s // 4)
        if checked and style != 2:
            ctx.fill(t.accent, x, y, _rrect_mask(s, s, r))
            ctx.fill((255, 255, 255), x, y, _tick_mask(s, 0.12))
            return
        ctx.fill(bg, x, y, _rrect_mask(s, s, r))
        ctx.fill(t.control_border, x, y, _rring_mask(s, s, r, border_t))
        if checked:
            ctx.fill(t.text, x, y, _tick_mask(s, 0.12))


class ChoiceSet(_El):
    """Expanded Input.ChoiceSet (radio buttons) or multi-select / Input.Toggle (checkboxes)."""

    def __init__(self, choices: Sequence[str], multi: bool = False, selected: Sequence[int] = (), gap: float = 10,
                 size: Optional[float] = None, text_size: str = "default"):
        self.choices, self.multi, self.selected = list(choices), multi, set(selected)
        self.gap, self.size, self.text_size = gap, size, text_size

    def _s(self, ctx: _Ctx) -> int:
        return ctx.px(self.size) if self.size else ctx.px(ctx.sizes[self.text_size] * 1.15)

    def natural_width(self, ctx: _Ctx) -> int:
        s = self._s(ctx)
        return s + ctx.px(8) + max(TextBlock(c, self.text_size).natural_width(ctx) for c in self.choices)

    def measure(self, ctx: _Ctx, width: int) -> int:
        s = self._s(ctx)
        self.s = s
        self.label_gap = ctx.px(8)
        self.blocks = [TextBlock(c, self.text_size) for c in self.choices]
        self.rows = []
        total = 0
        for i, block in enumerate(self.blocks):
            th = block.measure(ctx, max(20, width - s - self.label_gap))
            font = block._font(ctx)
            lh, _ = block._line_height(ctx, font)
            rh = max(s, th)
            self.rows.append((total, rh, lh))
            total += rh + (ctx.px(self.gap) if i < len(self.blocks) - 1 else 0)
        self.h = total
        self.style = ctx.rng.choice([0, 0, 1, 2])
        return total

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        s = self.s
        for i, (block, (ry, rh, lh)) in enumerate(zip(self.blocks, self.rows)):
            ty = y + ry + max(0, (s - lh) // 2) if lh < s else y + ry
            cy = y + ry + max(0, (lh - s) // 2) if lh >= s else y + ry
            _draw_control(ctx, "check" if self.multi else "radio", x, cy, s, i in self.selected, self.style)
            ctx.label((x, cy, x + s, cy + s), CHECKBOX if self.multi else RADIO)
            block.draw(ctx, x + s + self.label_gap, ty, max(20, width - s - self.label_gap))


class InputText(_El):
    """Input.Text / Number / Date / Time or a compact ChoiceSet. Nothing inside is labelled."""

    def __init__(self, placeholder: str, lines: int = 1, kind: str = "text", value: bool = False):
        self.placeholder, self.lines, self.kind, self.value = placeholder, lines, kind, value

    def natural_width(self, ctx: _Ctx) -> int:
        return ctx.px(180)

    def measure(self, ctx: _Ctx, width: int) -> int:
        font = ctx.font("default")
        lh = int(font.size * ctx.line_factor)
        self.h = max(ctx.px(30), lh + ctx.px(14)) + (self.lines - 1) * lh
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        r = min(ctx.px(t.button_radius if t.button_radius < 10 else 4), 6)
        style = ctx.rng.random()
        ctx.fill(t.input_bg, x, y, _rrect_mask(width, self.h, r))
        if style < 0.75:
            ctx.fill(t.input_border, x, y, _rring_mask(width, self.h, r, 1))
        else:  # Fluent style: only a bottom border
            ctx.fill(t.input_border, x, y, _rring_mask(width, self.h, r, 1) if style < 0.85 else Image.new("L", (width, 1), 60))
            ctx.fill(t.control_border, x, y + self.h - 1, Image.new("L", (width, 1), 255))
        pad = ctx.px(8)
        text_w = width - 2 * pad
        if self.kind in ("date", "time", "dropdown"):
            icon = min(ctx.px(16), self.h - 4)
            icon_mask = _chevron_mask(icon)
            ctx.fill(t.subtle, x + width - pad - icon, y + (self.h - icon) // 2, icon_mask)
            text_w -= icon + pad
        block = TextBlock(self.placeholder, "default", color="default" if self.value else t.placeholder,
                          wrap=self.lines > 1, max_lines=self.lines, label=False)
        block.measure(ctx, max(20, text_w))
        font = block._font(ctx)
        lh, _ = block._line_height(ctx, font)
        top = (min(self.h, ctx.px(30) if self.lines == 1 else self.h) - lh) // 2 if self.lines == 1 else pad // 2 + 2
        block.draw(ctx, x + pad, y + max(1, top), max(20, text_w))


class Rating(_El):
    def __init__(self, value: float, size: float = 16, value_text: bool = False, count: Optional[str] = None,
                 gap: float = 3, align: str = "left", count_color: str = "subtle"):
        self.value, self.size, self.value_text, self.count = value, size, value_text, count
        self.gap, self.align, self.count_color = gap, align, count_color

    def _parts(self, ctx: _Ctx) -> Tuple[int, int, int, List[TextBlock]]:
        sh = ctx.px(self.size)
        sw, _ = _star_size(sh)
        gap = ctx.px(self.gap)
        texts = []
        if self.value_text:
            texts.append(TextBlock(f"{self.value:.1f}", "default", "bolder"))
        if self.count:
            texts.append(TextBlock(self.count, "small" if ctx.rng.random() < 0.5 else "default", color=self.count_color))
        return sw, sh, gap, texts

    def natural_width(self, ctx: _Ctx) -> int:
        sw, sh, gap, texts = self._parts(ctx)
        return 5 * sw + 4 * gap + sum(t.natural_width(ctx) + ctx.px(6) for t in texts)

    def measure(self, ctx: _Ctx, width: int) -> int:
        sw, sh, gap, texts = self._parts(ctx)
        while 5 * sw + 4 * gap > width and sh > 8:
            sh -= 1
            sw, _ = _star_size(sh)
        self.sw, self.sh, self.g = sw, sh, gap
        stars_w = 5 * sw + 4 * gap
        self.texts = []
        used = stars_w
        for t in texts:
            tw = t.natural_width(ctx)
            if used + ctx.px(6) + tw <= width:
                self.texts.append((t, tw))
                used += ctx.px(6) + tw
        self.total_w = used
        heights = [sh] + [t.measure(ctx, tw) for t, tw in self.texts]
        self.h = max(heights)
        self.inner = ctx.rng.uniform(0.38, 0.5)
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        if self.align == "center":
            x += (width - self.total_w) // 2
        elif self.align == "right":
            x += width - self.total_w
        cx = x
        items = []
        value_first = self.value_text and self.texts and self.texts[0][0].text.replace(".", "").isdigit()
        if value_first:
            items.append(self.texts[0])
        items.append(None)
        items += [p for p in self.texts if not (value_first and p is self.texts[0])]
        for item in items:
            if item is None:
                sy = y + (self.h - self.sh) // 2
                full = _star_mask(self.sw, self.sh, self.inner)
                for i in range(5):
                    sx = cx + i * (self.sw + self.g)
                    frac = min(1.0, max(0.0, self.value - i))
                    if t.star_empty_style == "outline":
                        ctx.fill(t.star, sx, sy, _star_mask(self.sw, self.sh, self.inner, max(1, self.sh // 12)))
                    else:
                        ctx.fill(t.star_empty, sx, sy, full)
                    if frac > 0:
                        if frac >= 0.99:
                            ctx.fill(t.star, sx, sy, full)
                        else:
                            cut = int(round(self.sw * frac))
                            ctx.fill(t.star, sx, sy, full.crop((0, 0, cut, self.sh)))
                ink = _threshold_bbox(full) or (0, 0, self.sw, self.sh)
                last = cx + 4 * (self.sw + self.g)
                ctx.label((cx + ink[0], sy + ink[1], last + ink[2], sy + ink[3]), RATING)
                cx += 5 * self.sw + 4 * self.g + ctx.px(6)
            else:
                block, tw = item
                block.draw(ctx, cx, y + (self.h - block.h) // 2, tw)
                cx += tw + ctx.px(6)


class ActionSet(_El):
    def __init__(self, titles: Sequence[str], vertical: bool = False, align: str = "left", stretch: bool = False,
                 style: Optional[str] = None, size: str = "default"):
        self.titles, self.vertical, self.align, self.stretch = list(titles), vertical, align, stretch
        self.style, self.size = style, size

    def _font(self, ctx: _Ctx):
        return ctx.font(self.size, self.weight)

    def measure(self, ctx: _Ctx, width: int) -> int:
        t = ctx.theme
        self.st = self.style or t.button_style
        self.weight = "bolder" if (self.st in ("teams", "link") or ctx.rng.random() < 0.4) else "default"
        font = self._font(ctx)
        self.bh = ctx.px(ctx.rng.choice([28, 30, 32, 32, 36])) if self.st != "link" else int(font.size * 1.5)
        self.pad = ctx.px(ctx.rng.choice([10, 12, 16, 20])) if self.st != "link" else 0
        self.gap = ctx.px(ctx.rng.choice([8, 8, 10, 12])) if self.st != "link" else ctx.px(ctx.rng.choice([16, 20, 24]))
        minw = ctx.px(ctx.rng.choice([0, 60, 80])) if self.st != "link" else 0
        self.bw = [max(minw, int(math.ceil(font.getlength(s) * ctx.stretch)) + 2 * self.pad + 6) for s in self.titles]
        total = sum(self.bw) + self.gap * (len(self.bw) - 1)
        each = (width - self.gap * (len(self.bw) - 1)) // len(self.bw)
        if self.stretch and each < max(self.bw) * (0.9 if ctx.rng.random() < 0.3 else 1.0):
            self.stretch = False  # equal-width buttons would cut the captions
        if not self.vertical and not self.stretch and total > width:
            if len(self.titles) > 1 and each >= max(self.bw) * 0.85:
                self.stretch = True
            else:
                self.vertical = True
        if self.vertical:
            if self.stretch or self.st != "link":
                self.bw = [width if self.stretch or ctx.rng.random() < 0.7 else min(width, max(self.bw))] * len(self.bw)
            self.bw = [min(width, w) for w in self.bw]
            self.h = len(self.bw) * self.bh + (len(self.bw) - 1) * ctx.px(8)
        else:
            if self.stretch:
                each = (width - self.gap * (len(self.bw) - 1)) // len(self.bw)
                self.bw = [each] * len(self.bw)
            self.h = self.bh
        return self.h

    def draw(self, ctx: _Ctx, x: int, y: int, width: int) -> None:
        t = ctx.theme
        font = self._font(ctx)
        r = min(ctx.px(t.button_radius) if t.button_radius < 99 else self.bh // 2, self.bh // 2)
        positions = []
        if self.vertical:
            for i, w in enumerate(self.bw):
                bx = x + ((width - w) // 2 if self.align == "center" else 0)
                positions.append((bx, y + i * (self.bh + ctx.px(8)), w))
        else:
            total = sum(self.bw) + self.gap * (len(self.bw) - 1)
            bx = x + (width - total) // 2 if self.align == "center" else x + (width - total if self.align == "right" else 0)
            for w in self.bw:
                positions.append((bx, y, w))
                bx += w + self.gap
        ink: List[Tuple[int, int, int, int]] = []
        for i, ((bx, by, w), title) in enumerate(zip(positions, self.titles)):
            st = self.st
            if st == "primary_first":
                st = "filled" if i == 0 else "outline"
            if st == "teams" and i == 0 and ctx.rng.random() < 0.3:
                st = "filled"
            text_colour = t.text
            if st == "filled":
                ctx.fill(t.accent, bx, by, _rrect_mask(w, self.bh, r))
                text_colour = (255, 255, 255)
            elif st == "outline":
                ctx.fill(t.accent, bx, by, _rring_mask(w, self.bh, r, 1))
                text_colour = t.accent
            elif st == "teams":
                ctx.fill(t.input_bg if not t.dark else t.card_bg, bx, by, _rrect_mask(w, self.bh, r))
                ctx.fill(t.input_border, bx, by, _rring_mask(w, self.bh, r, 1))
            elif st == "tint":
                ctx.fill(_mix(t.accent, t.card_bg, 0.85), bx, by, _rrect_mask(w, self.bh, r))
                text_colour = t.accent
            elif st == "grey":
                ctx.fill(t.emphasis_bg if t.emphasis_bg != t.card_bg else _mix(t.card_bg, (128, 128, 128), 0.15), bx, by, _rrect_mask(w, self.bh, r))
            elif st == "link":
                text_colour = t.accent
            label = _ellipsize(title, font, max(10, w - 2 * self.pad - 4), ctx.stretch)
            block = TextBlock(label, self.size, self.weight, text_colour, wrap=False,
                              align="center" if st != "link" or self.vertical else "left", label=True)
            block.measure(ctx, w)
            before = len(ctx.labels)
            block.draw(ctx, bx, by + (self.bh - block.h) // 2, w)
            caption = ctx.labels[before:]
            del ctx.labels[before:]  # captions are part of the action set, not textboxes
            if st == "link":  # the visible extent of a link-style action is its caption
                ink += [tuple(int(v) for v in lab[:4]) for lab in caption]
            else:
                ink.append((bx, by, bx + w, by + self.bh))
        if ink:
            ctx.label((min(b[0] for b in ink), min(b[1] for b in ink), max(b[2] for b in ink), max(b[3] for b in ink)), ACTIONSET)


# ============================================================================================
# templates (each returns the card body; card-level actions are appended by the caller)


def _tb(ctx: _Ctx, kind: str, text: Optional[str] = None, **kw) -> TextBlock:
    """Common TextBlock presets."""
    tx = ctx.text
    if kind == "title":
        return TextBlock(text or tx.title(2, 5), kw.pop("size", ctx.rng.choice(["large", "large", "medium", "extraLarge"])),
                         kw.pop("weight", "bolder"), title_font=True, **kw)
    if kind == "subtitle":
        return TextBlock(text or tx.title(2, 6), kw.pop("size", "medium"), kw.pop("weight", ctx.rng.choice(["bolder", "default"])), **kw)
    if kind == "para":
        return TextBlock(text or tx.paragraph(1, 3), kw.pop("size", "default"), **kw)
    if kind == "caption":
        return TextBlock(text or ctx.rng.choice([tx.date(), tx.time(), f"{tx.date()} {tx.time()}", tx.sentence(2, 6)]),
                         kw.pop("size", "small"), color=kw.pop("color", "subtle"), **kw)
    return TextBlock(text or tx.sentence(3, 8), **kw)


def _actions(ctx: _Ctx, lo: int = 1, hi: int = 3) -> List[str]:
    titles: List[str] = []
    for _ in range(ctx.rng.randint(lo, hi)):
        label = ctx.text.label()
        if label not in titles:
            titles.append(label)
    return titles or ["Submit"]


def _t_weather(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    temp = r.randint(-5, 38) if r.random() < 0.5 else r.randint(20, 100)
    unit = r.choice(["\u00b0F", "\u00b0C", "\u00b0"])
    body: List[_El] = [
        _tb(ctx, "subtitle", f"{tx.city()}, {r.choice(['WA', 'CA', 'NY', 'UK', 'FR', 'JP', 'TX', 'DE'])}", size="medium", weight="default"),
        _tb(ctx, "caption", f"{tx.date()}").at("none"),
    ]
    current = ColumnSet([
        Column([ImageEl(r.choice([48, 64, 72, 80]), kind="icon", icon=r.choice(["sun", "cloud", "rain", "partly"]))], "auto", "center"),
        Column([TextBlock(f"{temp}", r.choice([40, 44, 52, 60]) * ctx.scale, "default" if r.random() < 0.6 else "lighter")], "auto", "center"),
        Column([TextBlock(unit, "medium", "default"), _tb(ctx, "caption", f"Hi {temp + r.randint(1, 8)}\u00b0").at("small"),
                _tb(ctx, "caption", f"Lo {temp - r.randint(1, 12)}\u00b0").at("none")], "stretch", "center"),
    ], gap=r.choice([8, 12, 16]))
    body.append(current.at("default"))
    if r.random() < 0.6:
        body.append(TextBlock(r.choice(["Sunny", "Partly cloudy", "Light rain", "Overcast", "Clear", "Showers", "Windy"]) +
                              (f" \u2022 Wind {r.randint(2, 30)} mph" if r.random() < 0.5 else ""), "default", color="subtle").at("small"))
    if r.random() < 0.85:
        days = r.randint(3, 5)
        start = r.randrange(7)
        cols = []
        for d in range(days):
            hi = temp + r.randint(-6, 6)
            cols.append(Column([
                TextBlock(_DAYS[(start + d) % 7][:3], "default", "bolder" if r.random() < 0.5 else "default", align="center"),
                ImageEl(r.choice([28, 32, 40]), kind="icon", align="center", icon=r.choice(["sun", "cloud", "rain", "partly"])).at("small"),
                TextBlock(f"{hi}\u00b0 / {hi - r.randint(4, 15)}\u00b0" if r.random() < 0.7 else f"{hi}\u00b0", "small", align="center").at("small"),
            ], "stretch"))
        body.append(ColumnSet(cols, gap=8, style=None).at("medium", separator=r.random() < 0.5))
    return body


def _t_expense(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    header = ColumnSet([
        Column([ImageEl(r.choice([32, 40, 48]), kind=r.choice(["logo", "icon"]))], "auto", "center"),
        Column([_tb(ctx, "title", r.choice(["Expense Report", "Expense approval", "Travel expenses", "Invoice"]) , size="medium"),
                _tb(ctx, "caption", f"{tx.company()} \u2022 {tx.date()}").at("none")], "stretch", "center"),
    ])
    body: List[_El] = [header]
    body.append(FactSet([("Submitted by", tx.name()), ("Report ID", f"#{r.randint(10000, 99999)}"), ("Date", tx.date()),
                         ("Purpose", tx.title(1, 3))][: r.randint(2, 4)], title_weight=r.choice(["bolder", "default"]),
                        title_color=r.choice(["default", "subtle"])).at("medium", separator=r.random() < 0.5))
    rows = []
    for i in range(r.randint(2, 4)):
        rows.append(ColumnSet([
            Column([TextBlock(tx.date(), "small", color="subtle")], "auto" if r.random() < 0.5 else 80),
            Column([TextBlock(tx.title(1, 3), "default", wrap=True)], "stretch"),
            Column([TextBlock(tx.money(), "default", align="right")], "auto"),
        ]).at("small" if i else "medium", separator=i == 0 or r.random() < 0.4))
    body += rows
    body.append(ColumnSet([
        Column([TextBlock("Total", "medium", "bolder")], "stretch"),
        Column([TextBlock(tx.money(), "medium", "bolder", color=r.choice(["default", "accent"]))], "auto"),
    ]).at("medium", separator=True))
    return body


def _t_flight(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    codes = ["SEA", "SFO", "JFK", "LHR", "AMS", "CDG", "NRT", "SYD", "DXB", "SIN", "BOS", "ORD", "LAX", "FRA"]
    a, b = r.sample(codes, 2)
    body: List[_El] = []
    if r.random() < 0.7:
        body.append(ColumnSet([
            Column([ImageEl(r.choice([24, 28, 32]), kind=r.choice(["icon", "logo"]))], "auto", "center"),
            Column([TextBlock(r.choice(["Flight Status", "Flight update", "Your trip", "Boarding pass"]), "default", "bolder", color=r.choice(["default", "accent"]))], "stretch", "center"),
        ]))
    body.append(_tb(ctx, "title", f"{tx.company()} {r.randint(10, 999)}", size=r.choice(["medium", "large"])).at("default"))
    body.append(_tb(ctx, "caption", f"{tx.date()} \u2022 {r.choice(['On time', 'Delayed', 'Boarding', 'Gate changed'])}",
                    color=r.choice(["subtle", "good", "attention"])).at("none"))
    route = ColumnSet([
        Column([TextBlock(tx.city(), "small", color="subtle"), TextBlock(a, r.choice([32, 36, 42]) * ctx.scale, "default").at("none"),
                TextBlock(tx.time(), "default").at("none")], "auto"),
        Column([ImageEl(r.choice([24, 32]), kind="icon", align="center")], "stretch", "center"),
        Column([TextBlock(tx.city(), "small", color="subtle", align="right"), TextBlock(b, r.choice([32, 36, 42]) * ctx.scale, "default", align="right").at("none"),
                TextBlock(tx.time(), "default", align="right").at("none")], "auto"),
    ])
    body.append(route.at("medium", separator=r.random() < 0.5))
    if r.random() < 0.7:
        body.append(FactSet([("Gate", f"{r.choice('ABCDN')}{r.randint(1, 40)}"), ("Seat", f"{r.randint(1, 40)}{r.choice('ABCDEF')}"),
                             ("Terminal", str(r.randint(1, 5))), ("Boarding", tx.time())][: r.randint(2, 4)]).at("medium"))
    return body


def _t_restaurant(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    hero_top = r.random() < 0.6
    if hero_top:
        body.append(ImageEl(stretch=True, aspect=r.uniform(0.35, 0.6), kind=r.choice(["photo", "product", "landscape", "bokeh", "auto"])))
    name = f"{tx.company()} {r.choice(['Cafe', 'Bistro', 'Kitchen', 'Grill', 'Diner', 'Trattoria', 'Bar'])}"
    info = [
        _tb(ctx, "title", name, size=r.choice(["medium", "large"])),
        Rating(r.choice([3, 3.5, 4, 4.5, 5, 4, 2.5]), r.choice([12, 14, 16, 18, 20]), value_text=r.random() < 0.4,
               count=r.choice([None, f"({r.randint(5, 2500)})", f"{r.randint(5, 900)} reviews"])).at("small"),
        _tb(ctx, "caption", f"{r.choice(['Italian', 'Thai', 'Mexican', 'Cafe', 'Seafood', 'Vegan'])} \u2022 {'$' * r.randint(1, 4)} \u2022 {r.randint(1, 9)}.{r.randint(0, 9)} mi").at("small"),
    ]
    if hero_top or r.random() < 0.5:
        body += info
    else:
        body.append(ColumnSet([Column(info, "stretch"), Column([ImageEl(r.choice([72, 90, 110]), kind=r.choice(["photo", "product"]))], "auto")]))
    if r.random() < 0.8:
        body.append(_tb(ctx, "para", max_lines=r.choice([0, 3])).at("default"))
    return body


def _t_poll(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.5:
        body.append(_tb(ctx, "caption", r.choice(["Poll", "Quick poll", "Survey", "Vote"]) + f" \u2022 {tx.name()}", size="small"))
    q = tx.sentence(4, 12).rstrip(".!") + "?"
    body.append(TextBlock(q, r.choice(["medium", "default", "large"]), "bolder").at("small" if body else "none"))
    n = r.randint(2, 5)
    choices = [tx.title(1, 4) if r.random() < 0.6 else tx.sentence(3, 9) for _ in range(n)]
    selected = [r.randrange(n)] if r.random() < 0.6 else []
    body.append(ChoiceSet(choices, multi=False, selected=selected, gap=r.choice([6, 8, 10, 12])).at("medium"))
    if r.random() < 0.3:
        body.append(_tb(ctx, "caption", f"{r.randint(2, 300)} votes \u2022 closes {tx.date()}").at("medium"))
    return body


def _t_form(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [_tb(ctx, "title", r.choice(["Registration", "Request form", "New ticket", "Sign up", "Contact us", tx.title(2, 4)]))]
    if r.random() < 0.6:
        body.append(_tb(ctx, "para", tx.sentence(6, 16), color=r.choice(["default", "subtle"])).at("small"))
    fields = r.randint(1, 3)
    for i in range(fields):
        label = r.choice(["Name", "Email", "Phone number", "Title", "Description", "Department", "Due date", "Comments", "Company"])
        kind = "date" if "date" in label.lower() else r.choice(["text", "text", "dropdown"])
        body.append(TextBlock(label + (" *" if r.random() < 0.3 else ""), "default", r.choice(["default", "bolder"])).at("medium"))
        placeholder = r.choice([f"Enter {label.lower()}", tx.words(1, 3), "Select an option", label, tx.date()]) if kind != "date" else tx.date()
        body.append(InputText(placeholder, lines=r.choice([1, 1, 1, 2, 3]) if label in ("Description", "Comments") else 1,
                              kind=kind, value=r.random() < 0.25).at("small"))
    if r.random() < 0.5:
        body.append(TextBlock(r.choice(["Priority", "Type", "Size", "Category", "Frequency", tx.title(1, 2)]), "default",
                              r.choice(["default", "bolder"])).at("medium"))
        opts = r.choice([["Low", "Medium", "High"], ["Daily", "Weekly", "Monthly"], ["Small", "Medium", "Large"],
                         [tx.title(1, 3) for _ in range(r.randint(2, 4))]])
        body.append(ChoiceSet(opts, selected=[r.randrange(len(opts))] if r.random() < 0.7 else [], gap=r.choice([6, 8, 10])).at("small"))
    if r.random() < 0.7:
        body.append(TextBlock(r.choice(["Select topics", "Interests", "Options", "Preferences", tx.title(1, 3)]), "default", "bolder").at("medium"))
        n = r.randint(2, 5)
        body.append(ChoiceSet([tx.title(1, 3) for _ in range(n)], multi=True, selected=r.sample(range(n), r.randint(0, n))).at("small"))
    if r.random() < 0.6:
        body.append(ChoiceSet([r.choice(["I agree to the terms and conditions", "Send me updates", "Remember my choice",
                                         "Notify my team", tx.sentence(3, 7)])], multi=True, selected=[0] if r.random() < 0.5 else []).at("medium"))
    return body


def _t_activity(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.6:
        body.append(_tb(ctx, "title", tx.title(2, 6), size=r.choice(["medium", "large"])))
    body.append(ColumnSet([
        Column([ImageEl(r.choice([32, 36, 40, 48]), person=True)], "auto", "center"),
        Column([TextBlock(tx.name(), "default", "bolder"), _tb(ctx, "caption", f"Created {tx.date()}").at("none")], "stretch", "center"),
    ]).at("default"))
    body.append(_tb(ctx, "para").at("default"))
    if r.random() < 0.7:
        body.append(FactSet([("Board:", tx.title(1, 3)), ("List:", tx.title(1, 2)), ("Assigned to:", tx.name()),
                             ("Due date:", tx.date())][: r.randint(2, 4)], title_weight=r.choice(["bolder", "default"])).at("default"))
    return body


def _t_product(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    img = ImageEl(stretch=True, aspect=r.uniform(0.5, 0.9), kind=r.choice(["product", "product", "photo", "shapes"]))
    info: List[_El] = [
        _tb(ctx, "title", tx.title(1, 4), size=r.choice(["medium", "large"])),
        TextBlock(tx.money(), r.choice(["medium", "large"]), "bolder", color=r.choice(["default", "accent", "good"])).at("small"),
    ]
    if r.random() < 0.7:
        info.append(Rating(r.choice([3.5, 4, 4.5, 5, 4.5]), r.choice([12, 14, 16]), value_text=r.random() < 0.3,
                           count=r.choice([None, f"({r.randint(3, 5000):,})"])).at("small"))
    if r.random() < 0.6:
        info.append(_tb(ctx, "para", tx.sentence(6, 18), color="subtle", size=r.choice(["small", "default"])).at("small"))
    if r.random() < 0.5:
        return [img] + [el for el in info]
    return [ColumnSet([Column([ImageEl(r.choice([90, 110, 130]), kind=img.kind)], "auto"), Column(info, "stretch")], gap=12)]


def _t_gallery(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [_tb(ctx, "title", r.choice(["Photo gallery", "New photos", "Shared album", tx.title(2, 4)]), size=r.choice(["medium", "large"]))]
    if r.random() < 0.5:
        body.append(_tb(ctx, "caption", f"{tx.name()} added {r.randint(2, 30)} photos").at("none"))
    person = r.random() < 0.15
    body.append(ImageSet(r.randint(2, 8), r.choice([60, 72, 80, 96, 110]), kind="auto", person=person, gap=r.choice([4, 6, 8, 10])).at("medium"))
    if r.random() < 0.5:
        body.append(_tb(ctx, "para", tx.sentence(5, 15)).at("default"))
    return body


def _t_news(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = []
    if r.random() < 0.5:
        body.append(ColumnSet([
            Column([ImageEl(r.choice([20, 24, 28]), kind=r.choice(["logo", "icon"]))], "auto", "center"),
            Column([TextBlock(r.choice(["News", "Top stories", tx.company() + " News", "Daily digest", "Blog"]), "small", "bolder", color="subtle")], "stretch", "center"),
        ]))
    body.append(ImageEl(stretch=True, aspect=r.uniform(0.4, 0.6), kind=r.choice(["photo", "landscape", "skyline", "auto"]), bleed=0).at("small"))
    body.append(_tb(ctx, "title", tx.sentence(4, 10).rstrip(".!?"), size=r.choice(["medium", "large"])).at("default"))
    body.append(_tb(ctx, "caption", f"{tx.name()} \u2022 {r.randint(2, 15)} min read").at("small"))
    body.append(_tb(ctx, "para", max_lines=r.choice([0, 0, 2, 3, 4])).at("default"))
    if r.random() < 0.5:
        for _ in range(r.randint(1, 3)):
            body.append(ColumnSet([
                Column([ImageEl(r.choice([48, 56, 64]), kind=r.choice(["photo", "landscape", "auto"]))], "auto"),
                Column([TextBlock(tx.sentence(4, 10).rstrip(".!?"), "default", "bolder", max_lines=2),
                        _tb(ctx, "caption").at("small")], "stretch"),
            ]).at("medium", separator=r.random() < 0.6))
    return body


def _t_reminder(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [
        TextBlock(r.choice(["Reminder", "Upcoming meeting", "Calendar", "Event"]), "small", "bolder", color=r.choice(["accent", "subtle", "attention"])),
        _tb(ctx, "title", tx.title(2, 5), size=r.choice(["medium", "large"])).at("small"),
        _tb(ctx, "caption", f"{tx.date()} \u2022 {tx.time()} - {tx.time()}", size="default").at("small"),
        _tb(ctx, "caption", f"{r.choice(['Room', 'Building', 'Conf room'])} {r.randint(1, 40)}/{r.randint(100, 4000)}, {tx.city()}", size="default").at("none"),
    ]
    if r.random() < 0.5:
        body.append(ImageSet(r.randint(2, 5), r.choice([24, 28, 32]), person=True, gap=4).at("default"))
    if r.random() < 0.7:
        body.append(InputText(r.choice(["5 minutes", "15 minutes", "30 minutes", "1 hour"]), kind="dropdown", value=True).at("medium"))
    return body


def _t_survey(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [_tb(ctx, "title", r.choice(["How did we do?", "Rate your experience", "Feedback", "Quick survey", tx.title(2, 4)]))]
    if r.random() < 0.6:
        body.append(_tb(ctx, "para", tx.sentence(6, 14), color=r.choice(["default", "subtle"])).at("small"))
    body.append(Rating(r.choice([0, 1, 2, 3, 4, 5, 3.5]), r.choice([20, 24, 28, 32]), gap=r.choice([4, 6, 8]),
                       align=r.choice(["left", "left", "center"])).at("medium"))
    if r.random() < 0.7:
        body.append(TextBlock(tx.sentence(4, 9).rstrip(".!") + "?", "default", "bolder").at("medium"))
        opts = r.choice([["Yes", "No"], ["Yes", "No", "Maybe"], ["Very satisfied", "Satisfied", "Neutral", "Dissatisfied"],
                         [tx.title(1, 2) for _ in range(3)]])
        if r.random() < 0.3 and len(opts) <= 3:
            body.append(ColumnSet([Column([ChoiceSet([o], selected=[0] if r.random() < 0.3 else [])], "auto") for o in opts], gap=20).at("small"))
        else:
            body.append(ChoiceSet(opts, selected=[r.randrange(len(opts))] if r.random() < 0.5 else []).at("small"))
    if r.random() < 0.6:
        body.append(InputText(r.choice(["Tell us more (optional)", "Add a comment", "Your feedback"]), lines=r.choice([1, 2, 3])).at("medium"))
    return body


def _t_profile(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    name = tx.name()
    centred = r.random() < 0.5
    align = "center" if centred else "left"
    head: List[_El] = [ImageEl(r.choice([64, 72, 80, 96]), person=True, align=align),
                       TextBlock(name, r.choice(["medium", "large"]), "bolder", align=align).at("small"),
                       TextBlock(r.choice(["Product Manager", "Software Engineer", "Designer", "Sales Lead", "Director of " + tx.title(1, 1)]),
                                 "default", color="subtle", align=align).at("none")]
    if not centred:
        head = [ColumnSet([Column([head[0]], "auto", "center"), Column(head[1:], "stretch", "center")], gap=12)]
    head.append(FactSet([("Email", f"{name.split()[0].lower()}@{tx.company().lower().replace(' ', '')}.com"),
                         ("Phone", f"+1 {r.randint(200, 999)} {r.randint(100, 999)} {r.randint(1000, 9999)}"),
                         ("Office", f"{tx.city()} {r.randint(1, 40)}/{r.randint(1000, 3000)}"),
                         ("Manager", tx.name())][: r.randint(2, 4)]).at("medium", separator=r.random() < 0.5))
    return head


def _t_tasks(ctx: _Ctx) -> List[_El]:
    r, tx = ctx.rng, ctx.text
    body: List[_El] = [_tb(ctx, "title", r.choice(["To do", "Checklist", "Tasks for today", "Onboarding", tx.title(2, 3)]))]
    if r.random() < 0.5:
        body.append(_tb(ctx, "caption", f"{r.randint(1, 9)} of {r.randint(9, 15)} completed").at("none"))
    n = r.randint(2, 6)
    if r.random() < 0.5:
        body.append(ChoiceSet([tx.sentence(2, 7).rstrip(".!?") for _ in range(n)], multi=True,
                              selected=r.sample(range(n), r.randint(0, n)), gap=r.choice([8, 10, 12])).at("medium"))
    else:
        for i in range(n):
            body.append(ColumnSet([
                Column([ChoiceSet([tx.sentence(2, 6).rstrip(".!?")], multi=True, selected=[0] if r.random() < 0.4 else [])], "stretch"),
                Column([TextBlock(tx.date() if r.random() < 0.6 else tx.name(), "small", color="subtle", align="right")], "auto", "center"),
            ]).at("small" if i else "medium", separator=r.random() < 0.4))
    return body


def _short(ctx: _Ctx) -> str:
    tx, r = ctx.text, ctx.rng
    return r.choice([tx.title(1, 2), tx.name(), tx.money(), tx.date(), tx.number(), tx.city(), tx.time(), tx.label()])


def _narrow_block(ctx: _Ctx, avail: int) -> _El:
    """Something that fits a column about ``avail`` pixels wide."""
    r, tx = ctx.rng, ctx.text
    narrow = avail < 130
    mid = avail < 260
    kinds = {"short": 3, "caption": 1.5, "image": 1.2, "icon": 0.5, "rating": 0.5, "button": 0.5, "toggle": 0.4}
    if not narrow:
        kinds.update({"para": 1.5, "radio": 0.5, "check": 0.5, "bigtext": 0.5, "input": 0.4})
    if not mid:
        kinds.update({"facts": 0.6, "para": 2.5, "imageset": 0.3})
    kind = _weighted(r, kinds)
    if kind == "short":
        return TextBlock(_short(ctx), r.choice(["default", "default", "medium", "small"]), r.choice(["default", "bolder"]),
                         color=r.choice(["default"] * 4 + ["subtle", "accent"]), align=r.choice(["left", "left", "center"]),
                         wrap=r.random() < 0.7, max_lines=2)
    if kind == "caption":
        return _tb(ctx, "caption", max_lines=2)
    if kind == "bigtext":
        return TextBlock(r.choice([tx.number(), tx.money(), f"{r.randint(1, 99)}%", f"{r.randint(-9, 99)}\u00b0"]),
                         r.choice(["large", "extraLarge"]), r.choice(["bolder", "default", "lighter"]),
                         color=r.choice(["default", "accent", "good", "attention"]))
    if kind == "para":
        return _tb(ctx, "para", tx.sentence(4, 16), size=r.choice(["default", "small"]), max_lines=r.choice([0, 3, 4]))
    if kind == "image":
        size = min(avail, r.choice([32, 48, 56, 64, 80, 96, 120]))
        return ImageEl(size / ctx.scale, r.choice([0, 0, size * 0.75 / ctx.scale]), person=r.random() < 0.25,
                       align=r.choice(["left", "center"]), radius=r.choice([0, 0, 0, 4]))
    if kind == "icon":
        return ImageEl(r.choice([16, 20, 24, 32]), kind="icon", align=r.choice(["left", "center"]))
    if kind == "rating":
        return Rating(r.choice([2, 3, 3.5, 4, 4.5, 5]), r.choice([10, 12, 14, 16]),
                      count=None if narrow else r.choice([None, f"({r.randint(1, 999)})"]))
    if kind == "button":
        return ActionSet([tx.label()], stretch=r.random() < 0.3)
    if kind == "toggle":
        return ChoiceSet([tx.title(1, 2) if mid else tx.sentence(2, 6).rstrip(".!?")], multi=True, selected=[0] if r.random() < 0.5 else [])
    if kind in ("radio", "check"):
        n = r.randint(2, 4)
        return ChoiceSet([tx.title(1, 2 if mid else 4) for _ in range(n)], multi=kind == "check",
                         selected=[r.randrange(n)] if r.random() < 0.6 else [])
    if kind == "input":
        return InputText(r.choice([tx.words(1, 2), "Enter a value", tx.date()]), kind=r.choice(["text", "date", "dropdown"]))
    if kind == "facts":
        return FactSet([(tx.title(1, 2), _short(ctx)) for _ in range(r.randint(2, 4))])
    return ImageSet(r.randint(2, 4), r.choice([32, 40, 48]), person=r.random() < 0.5, gap=4)


def _row_pattern(ctx: _Ctx, kind: str, avail: int) -> _El:
    r, tx = ctx.rng, ctx.text
    if kind == "row_header":
        return ColumnSet([
            Column([ImageEl(r.choice([24, 32, 40, 48, 56]), person=r.random() < 0.6,
                            kind=r.choice(["auto", "logo", "icon"]) if r.random() < 0.5 else "auto")], "auto", r.choice(["center", "top"])),
            Column([TextBlock(r.choice([tx.name(), tx.title(2, 4)]), r.choice(["default", "medium"]), "bolder", max_lines=2),
                    _tb(ctx, "caption", max_lines=1).at("none")], "stretch", "center"),
        ], gap=r.choice([8, 10, 12]))
    if kind == "row_kv":
        return ColumnSet([
            Column([TextBlock(tx.title(1, 3), r.choice(["default", "small"]), r.choice(["default", "bolder"]),
                              color=r.choice(["default", "subtle"]), max_lines=2)], "stretch", "center"),
            Column([TextBlock(_short(ctx), "default", r.choice(["default", "bolder"]), align="right", wrap=False)], "auto", "center"),
        ])
    if kind == "row_media":
        img = ImageEl(r.choice([48, 56, 64, 80, 96, 120]), r.choice([0, 0, 40, 60]), kind=r.choice(["auto", "photo", "landscape"]),
                      radius=r.choice([0, 0, 4]))
        text = [TextBlock(tx.sentence(2, 7).rstrip(".!?"), r.choice(["default", "medium"]), "bolder", max_lines=2),
                _tb(ctx, "para", tx.sentence(4, 14), size=r.choice(["small", "default"]), color=r.choice(["default", "subtle"]),
                    max_lines=r.choice([2, 3])).at("small")]
        if r.random() < 0.3:
            text.append(Rating(r.choice([3, 3.5, 4, 4.5, 5]), r.choice([10, 12, 14]), count=r.choice([None, f"({r.randint(1, 500)})"])).at("small"))
        cols = [Column([img], "auto"), Column(text, "stretch")]
        if r.random() < 0.3:
            cols.reverse()
        return ColumnSet(cols, gap=r.choice([8, 12, 16]))
    if kind == "row_stats":
        n = r.randint(2, 4 if avail > 360 else 3)
        cols = []
        for _ in range(n):
            cols.append(Column([
                TextBlock(r.choice([tx.number(), f"{r.randint(1, 99)}%", tx.money().split(".")[0], f"{r.randint(1, 9)}.{r.randint(0, 9)}k"]),
                          r.choice(["large", "extraLarge"]), r.choice(["bolder", "default", "lighter"]), align="center",
                          color=r.choice(["default", "accent"])),
                TextBlock(tx.title(1, 2), "small", color="subtle", align="center").at("none"),
            ], "stretch"))
        return ColumnSet(cols, col_separator=r.random() < 0.3)
    if kind == "row_text2":
        return ColumnSet([Column([_tb(ctx, "subtitle", size="default", weight="bolder"), _tb(ctx, "para", tx.sentence(4, 12), size="small").at("small")], "stretch")
                          for _ in range(2)], gap=r.choice([12, 16, 20]))
    if kind == "row_choices2":
        multi = r.random() < 0.5
        return ColumnSet([Column([ChoiceSet([tx.title(1, 2) for _ in range(r.randint(2, 4))], multi=multi,
                                            selected=[0] if r.random() < 0.4 else [])], "stretch") for _ in range(2)])
    if kind == "row_inputs2":
        return ColumnSet([Column([TextBlock(tx.title(1, 2), "default", r.choice(["default", "bolder"])),
                                  InputText(r.choice([tx.words(1, 2), tx.date(), "Select"]), kind=r.choice(["text", "date", "dropdown"])).at("small")], "stretch")
                          for _ in range(2)], gap=r.choice([8, 12, 16]))
    if kind == "row_images":
        n = r.randint(2, 4)
        aspect = r.uniform(0.6, 1.2)
        return ColumnSet([Column([ImageEl(stretch=True, aspect=aspect)], "stretch") for _ in range(n)], gap=r.choice([4, 8, 12]))
    # row_free: 2-4 columns of width-aware content
    n = r.choice([2, 2, 2, 3, 3] + ([4] if avail > 480 else []))
    each = (avail - 12 * (n - 1)) // n
    cols = []
    for _ in range(n):
        auto = r.random() < 0.25
        items = [_narrow_block(ctx, each).at(r.choice(["none", "small", "default"])) for _ in range(r.choice([1, 1, 2, 2, 3]))]
        cols.append(Column(items, "auto" if auto else "stretch", r.choice(["top", "top", "center"])))
    return ColumnSet(cols, gap=r.choice([8, 12, 16, 20]), col_separator=r.random() < 0.1)


def _random_block(ctx: _Ctx, avail: int, depth: int = 0) -> _El:
    r, tx = ctx.rng, ctx.text
    kinds = {"title": 1.0, "para": 2, "caption": 1.0, "text": 1.2, "image": 1.3, "facts": 0.8, "radio": 1.5,
             "check": 1.1, "toggle": 0.8, "input": 0.7, "rating": 1.2, "actions": 0.7, "imageset": 0.4,
             "row_header": 1.0, "row_kv": 0.8, "row_media": 1.0, "row_stats": 0.5, "row_text2": 0.3,
             "row_choices2": 0.3, "row_inputs2": 0.3, "row_images": 0.4, "row_free": 1.0, "icon_row": 0.5}
    if depth == 0:
        kinds["container"] = 0.7
    kind = _weighted(r, kinds)
    if kind.startswith("row_"):
        return _row_pattern(ctx, kind, avail)
    if kind == "title":
        return _tb(ctx, "title")
    if kind == "para":
        return _tb(ctx, "para", max_lines=r.choice([0, 0, 2, 3]), color=r.choice(["default"] * 4 + ["subtle"]),
                   size=r.choice(["default", "default", "small", "medium"]), italic=r.random() < 0.05)
    if kind == "caption":
        return _tb(ctx, "caption", align=r.choice(["left", "left", "right", "center"]))
    if kind == "text":
        return TextBlock(r.choice([tx.title(1, 4), tx.sentence(2, 8), tx.name(), tx.money(), tx.date(), tx.number()]),
                         r.choice(list(ctx.sizes)), r.choice(["default", "bolder", "lighter", "default"]),
                         color=r.choice(["default", "default", "subtle", "accent", "good", "attention", "warning"]),
                         align=r.choice(["left", "left", "center", "right"]))
    if kind == "image":
        if depth == 0 and r.random() < 0.5:
            return ImageEl(stretch=True, aspect=r.uniform(0.3, 0.75))
        return ImageEl(r.choice([40, 56, 64, 80, 100, 120, 160]), r.choice([0, 0, 40, 60, 80, 100]), person=r.random() < 0.25,
                       align=r.choice(["left", "center", "right"]), radius=r.choice([0, 0, 4, 8]))
    if kind == "icon_row":
        return ColumnSet([Column([ImageEl(r.choice([16, 20, 24]), kind="icon")], "auto", "center"),
                          Column([TextBlock(tx.sentence(2, 6), "default")], "stretch", "center")])
    if kind == "facts":
        return FactSet([(tx.title(1, 2) + r.choice([":", ""]), r.choice([tx.name(), tx.date(), tx.money(), tx.title(1, 3), tx.number()]))
                        for _ in range(r.randint(2, 5))], title_weight=r.choice(["bolder", "default"]))
    if kind == "radio":
        n = r.randint(2, 5)
        return ChoiceSet([tx.title(1, 4) for _ in range(n)], selected=[r.randrange(n)] if r.random() < 0.6 else [],
                         gap=r.choice([6, 8, 10, 12]))
    if kind == "check":
        n = r.randint(2, 5)
        return ChoiceSet([tx.title(1, 4) for _ in range(n)], multi=True, selected=r.sample(range(n), r.randint(0, n)),
                         gap=r.choice([6, 8, 10, 12]))
    if kind == "toggle":
        return ChoiceSet([tx.sentence(2, 8).rstrip(".!?")], multi=True, selected=[0] if r.random() < 0.5 else [])
    if kind == "input":
        items: List[_El] = []
        if r.random() < 0.7:
            items.append(TextBlock(tx.title(1, 3), "default", r.choice(["default", "bolder"])))
        items.append(InputText(r.choice([tx.words(1, 4), "Enter a value", tx.date()]), lines=r.choice([1, 1, 1, 2]),
                               kind=r.choice(["text", "text", "date", "dropdown"]), value=r.random() < 0.3).at("small"))
        return Container(items, padding=0) if len(items) > 1 else items[0]
    if kind == "rating":
        return Rating(r.choice([1, 2, 2.5, 3, 3.5, 4, 4.5, 5]), r.choice([10, 12, 14, 16, 20, 24]), value_text=r.random() < 0.3,
                      count=r.choice([None, None, f"({r.randint(1, 999)})", f"{r.randint(1, 999)} ratings"]),
                      align=r.choice(["left", "left", "center", "right"]))
    if kind == "actions":
        return ActionSet(_actions(ctx, 1, 3), vertical=r.random() < 0.15, align=r.choice(["left", "left", "center", "right"]),
                         stretch=r.random() < 0.2)
    if kind == "imageset":
        return ImageSet(r.randint(2, 6), r.choice([40, 56, 64, 80]), person=r.random() < 0.2, gap=r.choice([4, 8]))
    # container
    inner = avail - 2 * ctx.px(12)
    items = [_random_block(ctx, inner, depth + 1).at(r.choice(["small", "default"])) for _ in range(r.randint(1, 3))]
    return Container(items, style=r.choice(["emphasis", "emphasis", "accent", "good", "attention", "warning"]),
                     radius=r.choice([0, 0, 4, 8]))


def _t_random(ctx: _Ctx) -> List[_El]:
    r = ctx.rng
    body: List[_El] = []
    if r.random() < 0.7:
        body.append(_tb(ctx, "title"))
    for _ in range(r.randint(2, 7)):
        el = _random_block(ctx, ctx.content_w)
        body.append(el.at(r.choice(["small", "default", "default", "medium", "large"]), separator=r.random() < 0.15))
    return body


TEMPLATES: Dict[str, Callable[[_Ctx], List[_El]]] = {
    "weather": _t_weather,
    "expense": _t_expense,
    "flight": _t_flight,
    "restaurant": _t_restaurant,
    "poll": _t_poll,
    "form": _t_form,
    "activity": _t_activity,
    "product": _t_product,
    "gallery": _t_gallery,
    "news": _t_news,
    "reminder": _t_reminder,
    "survey": _t_survey,
    "profile": _t_profile,
    "tasks": _t_tasks,
    "random": _t_random,
}
"""Card layouts by name; ``render_card(template=...)`` picks one, default: weighted random."""

_TEMPLATE_WEIGHTS = {name: 1.0 for name in TEMPLATES}
_TEMPLATE_WEIGHTS.update({"random": 9.0, "poll": 1.6, "survey": 1.3, "form": 1.3, "tasks": 1.2, "restaurant": 1.2})
_ACTION_PROB = {"weather": 0.3, "expense": 0.9, "flight": 0.5, "restaurant": 0.7, "poll": 0.95, "form": 0.95,
                "activity": 0.9, "product": 0.7, "gallery": 0.4, "news": 0.6, "reminder": 0.9, "survey": 0.95,
                "profile": 0.7, "tasks": 0.6, "random": 0.55}
_ACTION_TITLES = {"expense": [["Approve", "Reject"], ["Approve", "Reject", "View report"], ["View details"]],
                  "poll": [["Submit"], ["Vote"], ["Submit vote"], ["Submit", "View results"]],
                  "form": [["Submit"], ["Submit", "Cancel"], ["Save", "Cancel"], ["Send"]],
                  "activity": [["Set due date", "Comment", "View"], ["Open", "Comment"], ["View in app"]],
                  "reminder": [["Snooze", "Dismiss"], ["Join meeting", "Snooze"], ["Accept", "Tentative", "Decline"]],
                  "survey": [["Submit"], ["Send feedback"], ["Submit", "Not now"]],
                  "restaurant": [["More info", "Book a table"], ["Directions"], ["Order now", "Menu"]],
                  "product": [["Add to cart"], ["Buy now", "Details"], ["View product"]]}


# ============================================================================================
# card composition


def _shadow_layer(size: Tuple[int, int], card_box: Tuple[int, int, int, int], radius: int, strength: float, spread: int) -> Image.Image:
    """Alpha layer of a soft drop shadow (computed at 1/4 resolution for speed)."""
    w, h = size
    q = 4
    small = Image.new("L", (max(1, w // q), max(1, h // q)), 0)
    x0, y0, x1, y1 = card_box
    ImageDraw.Draw(small).rounded_rectangle([x0 / q, y0 / q, x1 / q, y1 / q], radius=max(0, radius / q), fill=int(255 * strength))
    small = small.filter(ImageFilter.GaussianBlur(max(0.6, spread / q)))
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _render_raw(seed: int, min_width: int, max_width: int, template: Optional[str], rescale: bool,
                max_side: Optional[int]) -> Tuple[Image.Image, List[Dict[str, Any]], int]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF)
    width = rng.randint(min_width, max_width) if rng.random() < 0.7 else int(min_width + (max_width - min_width) * rng.random() ** 2)
    ctx = _Ctx(rng, nrng, width)
    name = template or _weighted(rng, _TEMPLATE_WEIGHTS)
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose from {sorted(TEMPLATES)}")
    body = TEMPLATES[name](ctx)
    if rng.random() < _ACTION_PROB.get(name, 0.5):
        titles = rng.choice(_ACTION_TITLES[name]) if name in _ACTION_TITLES and rng.random() < 0.7 else _actions(ctx, 1, 3)
        body.append(ActionSet(titles, vertical=rng.random() < 0.12, stretch=rng.random() < 0.2,
                              align=rng.choice(["left"] * 5 + ["center", "right"])).at(rng.choice(["default", "medium", "large"])))
    if rng.random() < 0.12 and name not in ("news",):  # coloured header band
        head = body[0]
        band = Container([head], bg=ctx.theme.accent if rng.random() < 0.5 else ctx.theme.emphasis_bg, padding=12)
        if band.bg == ctx.theme.accent and isinstance(head, TextBlock):
            head.color = "light"
        body[0] = band
        band_bleed = True
    else:
        band_bleed = False

    t = ctx.theme
    pad = ctx.pad
    # full-bleed hero image on top of the card
    hero = isinstance(body[0], ImageEl) and body[0].stretch and rng.random() < 0.6
    if hero:
        body[0].bleed = pad
    if band_bleed:
        body[0].bleed = pad
    root = Container(body, padding=0)
    inner_w = width - 2 * pad
    content_h = root.measure(ctx, inner_w)
    top_pad = 0 if (hero or band_bleed) else pad
    height = content_h + top_pad + pad

    card = Image.new("RGB", (width, height), t.card_bg)
    ctx.img = card
    root.draw(ctx, pad, top_pad, inner_w)

    # page around the card
    tight = rng.random() < 0.3
    margins = [0, 0, 0, 0] if tight else [rng.randint(4, 40) for _ in range(4)]
    W, H = width + margins[0] + margins[2], height + margins[1] + margins[3]
    page = Image.new("RGB", (W, H), t.page_bg)
    if not tight and rng.random() < 0.2:  # gently shaded page, as in chat / mail clients
        other = _mix(t.page_bg, (0, 0, 0) if sum(t.page_bg) > 384 else (255, 255, 255), rng.uniform(0.03, 0.1))
        ramp = Image.linear_gradient("L").resize((W, H), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            ramp = ramp.transpose(Image.Transpose.ROTATE_90).resize((W, H), Image.Resampling.BILINEAR)
        page.paste(other, (0, 0, W, H), ramp)
    ox, oy = margins[0], margins[1]
    radius = 0 if (tight and rng.random() < 0.5) else ctx.px(t.radius) if t.radius else 0
    if t.shadow > 0 and not tight:
        layer = _shadow_layer((W, H), (ox, oy + ctx.px(1), ox + width, oy + height + ctx.px(2)), radius, t.shadow, ctx.px(rng.choice([2, 4, 6])))
        page.paste((0, 0, 0), (0, 0, W, H), layer)
    page.paste(card, (ox, oy), _rrect_mask(width, height, radius))
    if t.border is not None:
        page.paste(t.border, (ox, oy, ox + width, oy + height), _rring_mask(width, height, radius, 1))

    labels = [(x0 + ox, y0 + oy, x1 + ox, y1 + oy, c) for x0, y0, x1, y1, c in ctx.labels]
    img = page
    blur = rng.uniform(0.3, 0.7) if rng.random() < 0.08 else 0.0
    if rescale and blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    factor = 1.0
    if rescale and rng.random() < 0.75:
        factor = rng.uniform(0.6, 1.3)
    if max_side and max(W, H) * factor > max_side:
        factor = max_side / max(W, H)
    if abs(factor - 1.0) > 1e-6:
        nw, nh = max(8, int(round(W * factor))), max(8, int(round(H * factor)))
        method = rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS, Image.Resampling.BOX])
        img = img.resize((nw, nh), method)
        sx, sy = nw / W, nh / H
        labels = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy, c) for x0, y0, x1, y1, c in labels]
    else:
        rng.random()  # keep the stream aligned with the rescaled branch
    quality = int(round(40 + 55 * rng.random() ** 0.6))
    iw, ih = img.size
    out: List[Dict[str, Any]] = []
    for x0, y0, x1, y1, c in labels:
        x0, y0 = min(max(x0, 0.0), iw), min(max(y0, 0.0), ih)
        x1, y1 = min(max(x1, 0.0), iw), min(max(y1, 0.0), ih)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        out.append({"bbox": [round(x0, 3), round(y0, 3), round(x1, 3), round(y1, 3)], "category_id": int(c), "category": CLASS_NAMES[c]})
    return img, out, quality


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(quality))
    return buf.getvalue()


def render_card(
    seed: int,
    *,
    min_width: int = 280,
    max_width: int = 700,
    template: Optional[str] = None,
    jpeg: bool = True,
    rescale: bool = True,
    max_side: Optional[int] = None,
) -> Tuple[Image.Image, List[Dict[str, Any]]]:
    """Render one synthetic card.

    Returns ``(image, labels)``: an RGB ``PIL.Image`` and a list of
    ``{"bbox": [x0, y0, x1, y1], "category_id": class index 0..5, "category": name}`` with float
    pixel-edge coordinates (``x1``/``y1`` exclusive) inside the image, each side at least 2 px.

    * ``seed``: everything (layout, text, colours, pictures, scaling, JPEG quality) derives from it;
      the same seed gives byte-identical output.
    * ``min_width``/``max_width``: card width range in pixels before the final rescale.
    * ``template``: one of :data:`TEMPLATES` (default: random, ~60 % templates, ~40 % free compositions).
    * ``jpeg``: apply the seed's JPEG compression (quality 40-95) and return the decoded image;
      ``False`` returns the clean rendering (same labels).
    * ``rescale``: apply the seed's random resampling degradations (final rescale x0.6-1.3 with a
      random filter, occasional slight blur); ``False`` keeps the card at its rendered size and
      sharpness, so boxes are whole pixels and shapes end exactly at their box edges.
    * ``max_side``: downscale so that the longer side is at most this many pixels.
    """
    if min_width < 120 or max_width < min_width:
        raise ValueError(f"need 120 <= min_width <= max_width, got {min_width}, {max_width}")
    img, labels, quality = _render_raw(int(seed), int(min_width), int(max_width), template, rescale, max_side)
    if jpeg:
        with Image.open(io.BytesIO(_jpeg_bytes(img, quality))) as decoded:
            img = decoded.convert("RGB")
    return img, labels


def _image_seed(seed: int, index: int) -> int:
    return int(seed) * 1_000_003 + int(index)


def generate_dataset(
    out_dir: Union[str, os.PathLike],
    num_images: int,
    seed: int,
    *,
    formats: Sequence[str] = ("coco", "voc"),
    max_side: Optional[int] = None,
    progress: bool = True,
    min_width: int = 280,
    max_width: int = 700,
) -> Path:
    """Write ``num_images`` synthetic cards with labels to ``out_dir``; returns ``out_dir`` as a Path.

    Layout::

        out_dir/images/card_00000.jpg      image i rendered with seed ``seed * 1_000_003 + i``
        out_dir/images/card_00000.xml      Pascal VOC (labelImg layout), if "voc" in formats
        out_dir/annotations.json           COCO, if "coco" in formats

    The JPEG files are exactly the bytes :func:`render_card` decodes, so reading ``card_i.jpg``
    gives the same pixels as ``render_card(seed * 1_000_003 + i, max_side=max_side)``.

    COCO ``file_name`` entries are relative to ``out_dir`` (``"images/card_00000.jpg"``), image ids
    are ``i + 1``, and **COCO ``category_id`` = model class index + 1**: ids 1..6 stand for
    ``CLASS_NAMES[0..5]`` (``textbox`` = 1 ... ``rating`` = 6); COCO bboxes are ``[x, y, w, h]``.
    :func:`detr_deploy.data.annotations.read_coco` converts back to 0-based labels and xyxy boxes.
    """
    formats = tuple(formats)
    unknown = [f for f in formats if f not in ("coco", "voc")]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from 'coco', 'voc'")
    if num_images < 0:
        raise ValueError("num_images must be >= 0")
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    indices: Any = range(num_images)
    if progress:
        try:
            from tqdm import tqdm

            indices = tqdm(indices, desc="cards", unit="img")
        except ImportError:  # pragma: no cover
            pass
    records = []
    for i in indices:
        img, labels, quality = _render_raw(_image_seed(seed, i), min_width, max_width, None, True, max_side)
        name = f"card_{i:05d}"
        image_path = images_dir / f"{name}.jpg"
        image_path.write_bytes(_jpeg_bytes(img, quality))
        boxes = np.asarray([a["bbox"] for a in labels], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray([a["category_id"] for a in labels], dtype=np.int64)
        if "voc" in formats:
            write_voc(images_dir / f"{name}.xml", image_path.resolve(), img.width, img.height, boxes, classes, CLASS_NAMES)
        records.append({"id": i + 1, "file_name": f"images/{name}.jpg", "width": img.width, "height": img.height,
                        "boxes": boxes, "labels": classes})
    if "coco" in formats:
        write_coco(out / "annotations.json", records, CLASS_NAMES)
    return out


# ============================================================================================
# visual inspection


def draw_labels(
    image: Image.Image,
    labels_or_boxes: Any,
    class_names: Sequence[str] = CLASS_NAMES,
    *,
    scores: Optional[Sequence[float]] = None,
    width: int = 2,
) -> Image.Image:
    """Return a copy of ``image`` with boxes and class names drawn, one colour per class.

    ``labels_or_boxes`` is either a list of ``{"bbox": [x0, y0, x1, y1], "category_id": int}``
    dicts (as from :func:`render_card`) or a ``(boxes [N, 4] xyxy, labels [N])`` pair (numpy arrays,
    tensors converted with ``numpy.asarray``, or lists). ``scores`` (optional) are printed after
    the class name. Colours come from :data:`CLASS_COLORS` (cycled for larger class lists).
    """
    if isinstance(labels_or_boxes, tuple) and len(labels_or_boxes) == 2 and not isinstance(labels_or_boxes[0], dict):
        boxes = np.asarray(labels_or_boxes[0], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(labels_or_boxes[1]).reshape(-1).astype(np.int64)
    else:
        items = list(labels_or_boxes)
        boxes = np.asarray([a["bbox"] for a in items], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray([a["category_id"] for a in items], dtype=np.int64)
    if len(boxes) != len(classes):
        raise ValueError(f"{len(boxes)} boxes but {len(classes)} labels")
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    families = _font_families()
    family = next((f for f in families if f.name == "DejaVu Sans"), families[0])
    font = _font(family.bold, 11)
    for i, ((x0, y0, x1, y1), c) in enumerate(zip(boxes.tolist(), classes.tolist())):
        colour = CLASS_COLORS[int(c) % len(CLASS_COLORS)]
        name = class_names[int(c)] if 0 <= int(c) < len(class_names) else str(int(c))
        if scores is not None:
            name = f"{name} {float(scores[i]):.2f}"
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=colour, width=width)
        tw = draw.textlength(name, font=font)
        ty = y0 - 13 if y0 >= 13 else y0
        draw.rectangle([x0, ty, x0 + tw + 4, ty + 13], fill=colour)
        draw.text((x0 + 2, ty + 1), name, font=font, fill=(255, 255, 255))
    return out


# ============================================================================================
# command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.data.cards",
        description="Generate synthetic Adaptive Card images with box labels for pic2card's classes "
        f"({', '.join(CLASS_NAMES)}). Writes OUT_DIR/images/card_NNNNN.jpg, OUT_DIR/annotations.json "
        "(COCO, category_id = class index + 1) and a Pascal VOC XML beside each image.",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="output directory (created if missing)")
    parser.add_argument("--num-images", "-n", type=int, required=True, help="number of cards to render")
    parser.add_argument("--seed", "-s", type=int, default=0, help="dataset seed; image i uses seed*1000003+i (default 0)")
    parser.add_argument("--formats", nargs="+", choices=("coco", "voc"), default=["coco", "voc"],
                        help="label formats to write (default: coco voc)")
    parser.add_argument("--max-side", type=int, default=None, help="downscale images so the longer side is at most this")
    parser.add_argument("--min-width", type=int, default=280, help="minimum card width in px before rescaling (default 280)")
    parser.add_argument("--max-width", type=int, default=700, help="maximum card width in px before rescaling (default 700)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    args = parser.parse_args(argv)
    if args.num_images < 0:
        parser.error("--num-images must be >= 0")
    out = generate_dataset(args.out_dir, args.num_images, args.seed, formats=tuple(args.formats), max_side=args.max_side,
                           progress=not args.no_progress, min_width=args.min_width, max_width=args.max_width)
    print(f"wrote {args.num_images} cards to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
