"""Picture content for Image elements: photo crops, procedural landscapes, textures, charts, logos, avatars, icons."""

from __future__ import annotations

import math
import os
import random
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from detr_deploy.data.cards.fonts import _font, _font_families
from detr_deploy.data.cards.masks import _SS
from detr_deploy.data.cards.text import _COMPANIES
from detr_deploy.data.classes import Color

if TYPE_CHECKING:
    from detr_deploy.data.cards.elements import _Ctx


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


_TERRAIN = [
    (0.0, (40, 90, 40)),
    (0.3, (90, 140, 60)),
    (0.55, (170, 160, 100)),
    (0.8, (140, 110, 80)),
    (1.0, (245, 245, 245)),
]
_OCEAN = [
    (0.0, (10, 40, 110)),
    (0.45, (40, 110, 190)),
    (0.5, (200, 190, 140)),
    (0.6, (80, 150, 70)),
    (0.85, (120, 100, 70)),
    (1.0, (250, 250, 250)),
]


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
    for name in (
        "home_large",
        "back_large",
        "forward_large",
        "filesave_large",
        "help_large",
        "move_large",
        "zoom_to_rect_large",
        "subplots_large",
        "matplotlib_large",
        "hand",
    ):
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
    if cells < 3:
        return np.interp(np.linspace(0, len(points) - 1, n), np.arange(len(points)), points).astype(np.float32)
    row = Image.fromarray(points[None, :].astype(np.float32), "F").resize((n, 1), Image.Resampling.BICUBIC)
    return np.asarray(row, np.float32)[0]


def _fbm(nrng: np.random.Generator, w: int, h: int, octaves: int = 4, base: int = 3) -> np.ndarray:
    total = np.zeros((h, w), np.float32)
    amp, norm = 1.0, 0.0
    for octave in range(octaves):
        total += amp * _smooth_noise(nrng, w, h, base * (2**octave))
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
    near = np.asarray(
        rng.choice(
            [(60, 110, 50), (90, 125, 60), (120, 95, 65), (70, 95, 125), (50, 85, 60), (140, 120, 80), (45, 60, 45)]
        ),
        np.float32,
    )
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
    stops = sorted(
        [(0.0, _vivid(rng, 0.3))]
        + [(rng.random(), _vivid(rng, rng.uniform(0.3, 0.7))) for _ in range(rng.randint(1, 3))]
        + [(1.0, _vivid(rng, 0.7))]
    )
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
        img = src.resize(
            (w, h), Image.Resampling.BILINEAR, box=(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        )
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
_PICTURE_WEIGHTS = {
    "photo": 5,
    "landscape": 4,
    "skyline": 1.2,
    "gradient": 0.8,
    "plasma": 1.2,
    "bokeh": 1,
    "product": 1.5,
    "shapes": 1,
    "chart": 0.8,
    "logo": 0.6,
}


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
            draw.line(
                [
                    (cx + math.cos(a) * r * 1.35, cy + math.sin(a) * r * 1.35),
                    (cx + math.cos(a) * r * 1.9, cy + math.sin(a) * r * 1.9),
                ],
                fill=sun,
                width=max(2, S // 18),
            )
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
            draw.text(
                (S * 0.5, S * 0.52),
                rng.choice("i!?$+"),
                font=_font(ctx.family.bold, int(S * 0.6)),
                fill=(255, 255, 255),
                anchor="mm",
            )
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
