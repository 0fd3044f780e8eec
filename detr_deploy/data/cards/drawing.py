"""Boxes and class names drawn onto an image, one colour per class, for looking at labels and detections."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from detr_deploy.data.cards.fonts import _font, _font_families
from detr_deploy.data.classes import CLASS_COLORS, CLASS_NAMES


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
    for i, ((x0, y0, x1, y1), c) in enumerate(zip(boxes.tolist(), classes.tolist(), strict=False)):
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
