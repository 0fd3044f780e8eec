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

Parts (each a module of this package)

* :mod:`~detr_deploy.data.cards.text` — pseudo-English words, names, dates, money and captions;
* :mod:`~detr_deploy.data.cards.fonts` — font discovery and families;
* :mod:`~detr_deploy.data.cards.masks` — anti-aliased shape masks (rounded rectangles, rings, stars);
* :mod:`~detr_deploy.data.cards.pictures` — picture content (photo crops, procedural images, icons);
* :mod:`~detr_deploy.data.cards.theme` — light and dark colour themes;
* :mod:`~detr_deploy.data.cards.elements` — rendering context and layout elements (text, images, columns);
* :mod:`~detr_deploy.data.cards.controls` — choice sets, input fields, ratings and action sets;
* :mod:`~detr_deploy.data.cards.presets` — TextBlock presets, action captions and icon rows the layouts share;
* :mod:`~detr_deploy.data.cards.compositions` — free random compositions of elements;
* :mod:`~detr_deploy.data.cards.templates` — the 14 designed templates and the registry of all layouts;
* :mod:`~detr_deploy.data.cards.compose` — :func:`render_card` and :func:`generate_dataset`;
* :mod:`~detr_deploy.data.cards.drawing` — :func:`draw_labels`;
* :mod:`~detr_deploy.data.cards.cli` — the command line (``__main__`` runs it).

Class names, colours and the seed rule come from :mod:`detr_deploy.data.classes`.

Command line::

    python -m detr_deploy.data.cards OUT_DIR --num-images N --seed S [--formats coco voc] [--max-side M]
"""

from detr_deploy.data.cards.cli import main
from detr_deploy.data.cards.compose import generate_dataset, render_card
from detr_deploy.data.cards.drawing import draw_labels
from detr_deploy.data.cards.fonts import _font_families  # noqa: F401 (scripts/gpu_train.sh logs the fonts found)
from detr_deploy.data.cards.templates import TEMPLATES
from detr_deploy.data.classes import CLASS_COLORS, CLASS_NAMES, card_seed

__all__ = [
    "CLASS_NAMES",
    "CLASS_COLORS",
    "TEMPLATES",
    "card_seed",
    "render_card",
    "generate_dataset",
    "draw_labels",
    "main",
]
