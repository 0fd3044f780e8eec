"""pic2card's six classes: names, index constants, one colour per class, and the synthetic-card seed rule.

Kept free of torch and PIL so that plotting, training and the card generator can share it cheaply.
"""

from __future__ import annotations

from typing import Tuple

__all__ = [
    "CLASS_NAMES",
    "CLASS_COLORS",
    "TEXTBOX",
    "RADIO",
    "CHECKBOX",
    "ACTIONSET",
    "IMAGE",
    "RATING",
    "Color",
    "card_seed",
]

Color = Tuple[int, int, int]

CLASS_NAMES: Tuple[str, ...] = ("textbox", "radiobutton", "checkbox", "actionset", "image", "rating")
"""pic2card's classes; the position is the model's 0-based class index (COCO id = index + 1)."""

TEXTBOX, RADIO, CHECKBOX, ACTIONSET, IMAGE, RATING = range(len(CLASS_NAMES))

CLASS_COLORS: Tuple[Color, ...] = (
    (230, 25, 75),  # textbox: red
    (60, 180, 75),  # radiobutton: green
    (0, 130, 200),  # checkbox: blue
    (245, 130, 48),  # actionset: orange
    (145, 30, 180),  # image: purple
    (240, 50, 230),  # rating: magenta
)
"""One fixed RGB colour per class index, used by ``draw_labels`` and the plots (cycled for extra classes)."""


def card_seed(seed: int, index: int) -> int:
    """Seed of card ``index`` of the synthetic stream ``seed``: ``seed * 1_000_003 + index``.

    Image ``i`` of a data set generated with ``seed`` is ``render_card(card_seed(seed, i))``; streams
    of different seeds never overlap for fewer than a million cards, so a training stream can be
    checked against a folder written by ``python -m detr_deploy.data.cards``.
    """
    return int(seed) * 1_000_003 + int(index)
