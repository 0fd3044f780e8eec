"""Card composition: body, page, shadow, rescale and JPEG step; writing labelled data sets (COCO, VOC)."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from detr_deploy.data.annotations import write_coco, write_voc
from detr_deploy.data.cards import realism
from detr_deploy.data.cards.controls import ActionSet
from detr_deploy.data.cards.elements import Container, ImageEl, TextBlock, _Ctx
from detr_deploy.data.cards.masks import _rrect_mask, _rring_mask
from detr_deploy.data.cards.pictures import _weighted
from detr_deploy.data.cards.presets import _actions
from detr_deploy.data.cards.templates import _ACTION_PROB, _ACTION_TITLES, _TEMPLATE_WEIGHTS, TEMPLATES
from detr_deploy.data.cards.theme import _mix
from detr_deploy.data.classes import CLASS_NAMES, card_seed


def _shadow_layer(
    size: Tuple[int, int], card_box: Tuple[int, int, int, int], radius: int, strength: float, spread: int
) -> Image.Image:
    """Alpha layer of a soft drop shadow (computed at 1/4 resolution for speed)."""
    w, h = size
    q = 4
    small = Image.new("L", (max(1, w // q), max(1, h // q)), 0)
    x0, y0, x1, y1 = card_box
    ImageDraw.Draw(small).rounded_rectangle(
        [x0 / q, y0 / q, x1 / q, y1 / q], radius=max(0, radius / q), fill=int(255 * strength)
    )
    small = small.filter(ImageFilter.GaussianBlur(max(0.6, spread / q)))
    return small.resize((w, h), Image.Resampling.BILINEAR)


def _render_raw(
    seed: int, min_width: int, max_width: int, template: Optional[str], rescale: bool, max_side: Optional[int]
) -> Tuple[Image.Image, List[Dict[str, Any]], int]:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF)
    width = (
        rng.randint(min_width, max_width)
        if rng.random() < 0.7
        else int(min_width + (max_width - min_width) * rng.random() ** 2)
    )
    ctx = _Ctx(rng, nrng, width)
    name = template or _weighted(rng, _TEMPLATE_WEIGHTS)
    if name not in TEMPLATES:
        raise ValueError(f"unknown template {name!r}; choose from {sorted(TEMPLATES)}")
    body = TEMPLATES[name](ctx)
    if rng.random() < _ACTION_PROB.get(name, 0.5):
        titles = (
            rng.choice(_ACTION_TITLES[name]) if name in _ACTION_TITLES and rng.random() < 0.7 else _actions(ctx, 1, 3)
        )
        body.append(
            ActionSet(
                titles,
                vertical=rng.random() < 0.12,
                stretch=rng.random() < 0.2,
                align=rng.choice(["left"] * 5 + ["center", "right"]),
            ).at(rng.choice(["default", "medium", "large"]))
        )
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
        layer = _shadow_layer(
            (W, H),
            (ox, oy + ctx.px(1), ox + width, oy + height + ctx.px(2)),
            radius,
            t.shadow,
            ctx.px(rng.choice([2, 4, 6])),
        )
        page.paste((0, 0, 0), (0, 0, W, H), layer)
    page.paste(card, (ox, oy), _rrect_mask(width, height, radius))
    if t.border is not None:
        page.paste(t.border, (ox, oy, ox + width, oy + height), _rring_mask(width, height, radius, 1))

    labels = [(x0 + ox, y0 + oy, x1 + ox, y1 + oy, c) for x0, y0, x1, y1, c in ctx.labels]
    img = page
    if rescale and realism.enabled():  # the photo and sketch looks are capture effects, too
        img, labels, _ = realism.capture_look(img, labels, rng, nrng)
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
        method = rng.choice(
            [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS, Image.Resampling.BOX]
        )
        img = img.resize((nw, nh), method)
        sx, sy = nw / W, nh / H
        labels = [(x0 * sx, y0 * sy, x1 * sx, y1 * sy, c) for x0, y0, x1, y1, c in labels]
    else:
        rng.random()  # keep the stream aligned with the rescaled branch
    if rescale and rng.random() < 0.1:  # sensor-like noise, as in photographed or re-encoded cards
        sigma = rng.uniform(2.0, 6.0)
        noisy = np.asarray(img, dtype=np.float32) + nrng.normal(0.0, sigma, (img.height, img.width, 1))
        img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    quality = int(round(40 + 55 * rng.random() ** 0.6))
    iw, ih = img.size
    out: List[Dict[str, Any]] = []
    for x0, y0, x1, y1, c in labels:
        x0, y0 = min(max(x0, 0.0), iw), min(max(y0, 0.0), ih)
        x1, y1 = min(max(x1, 0.0), iw), min(max(y1, 0.0), ih)
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        out.append(
            {
                "bbox": [round(x0, 3), round(y0, 3), round(x1, 3), round(y1, 3)],
                "category_id": int(c),
                "category": CLASS_NAMES[c],
            }
        )
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

        out_dir/images/card_00000.jpg      image i rendered with seed ``card_seed(seed, i)``
        out_dir/images/card_00000.xml      Pascal VOC (labelImg layout), if "voc" in formats
        out_dir/annotations.json           COCO, if "coco" in formats

    The JPEG files are exactly the bytes :func:`render_card` decodes, so reading ``card_i.jpg``
    gives the same pixels as ``render_card(card_seed(seed, i), max_side=max_side)``.

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
        img, labels, quality = _render_raw(card_seed(seed, i), min_width, max_width, None, True, max_side)
        name = f"card_{i:05d}"
        image_path = images_dir / f"{name}.jpg"
        image_path.write_bytes(_jpeg_bytes(img, quality))
        boxes = np.asarray([a["bbox"] for a in labels], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray([a["category_id"] for a in labels], dtype=np.int64)
        if "voc" in formats:
            write_voc(
                images_dir / f"{name}.xml",
                Path("images") / image_path.name,
                img.width,
                img.height,
                boxes,
                classes,
                CLASS_NAMES,
            )
        records.append(
            {
                "id": i + 1,
                "file_name": f"images/{name}.jpg",
                "width": img.width,
                "height": img.height,
                "boxes": boxes,
                "labels": classes,
            }
        )
    if "coco" in formats:
        write_coco(out / "annotations.json", records, CLASS_NAMES)
    return out
