"""Generator variants: the full generator with one feature taken away (the realism ablation), or one added.

Each variant renders the same seeds as :func:`render_card`; a short fine-tuning on each, scored on
the real validation cards, shows how much that feature matters (``scripts/gpu_finetune.sh``).

* ``full``: the generator as shipped;
* ``no_capture``: no capture effects (no rescaling, blur, sensor noise or JPEG compression);
* ``one_font``: every card in DejaVu Sans, matplotlib's font, instead of the five UI families;
* ``wide``: the full generator *plus* :mod:`~detr_deploy.data.cards.realism` (choice glyphs from 0.7x to
  3x the text size, pale glyphs, closer text lines, template expressions, photo and sketch looks).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Tuple

from PIL import Image

from detr_deploy.data.cards.compose import render_card
from detr_deploy.data.cards.fonts import only_font_families
from detr_deploy.data.cards.realism import wider_realism

RenderFn = Callable[[int], Tuple[Image.Image, List[Dict[str, Any]]]]

SINGLE_FONT_FAMILY = "DejaVu Sans"


def _render_one_font(seed: int) -> Tuple[Image.Image, List[Dict[str, Any]]]:
    with only_font_families([SINGLE_FONT_FAMILY]):
        return render_card(seed)


def _render_wide(seed: int) -> Tuple[Image.Image, List[Dict[str, Any]]]:
    with wider_realism():
        return render_card(seed)


_VARIANTS: Dict[str, RenderFn] = {
    "full": render_card,
    "no_capture": functools.partial(render_card, jpeg=False, rescale=False),
    "one_font": _render_one_font,
    "wide": _render_wide,
}
VARIANTS = tuple(_VARIANTS)


def variant_renderer(name: str) -> RenderFn:
    """The render function of one variant (picklable, for render processes)."""
    if name not in _VARIANTS:
        raise ValueError(f"unknown generator variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return _VARIANTS[name]
