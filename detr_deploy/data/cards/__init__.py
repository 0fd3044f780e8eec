"""Synthetic Adaptive Card images with exact box labels for pic2card's six classes.

The generator draws card designs the way the Adaptive Cards web / Teams / Outlook renderers show
them: a (usually rounded) container with padding holding stacked elements — TextBlocks, Images,
ColumnSets of 2-4 columns, FactSets, expanded ChoiceSets (radio buttons / checkboxes),
Input.Toggle, Input.Text boxes, star ratings and ActionSets — with separators and the renderers'
spacing scale. Roughly 60 % of the cards come from 14 hand-written templates (weather, expense
report, flight update, restaurant review, poll, form, activity update, product, gallery, news,
reminder, survey, profile, task list), the rest are random compositions of the same elements.

Labelling policy: pic2card's conventions, as its labelled real cards show them
(``data/pic2card_real_val``, chapter 03 draws both side by side)

==================  =========================================================================
class               box
==================  =========================================================================
``0 textbox``       one text block: a title, a whole wrapped paragraph, a caption, each FactSet
                    title and value, the value and count beside a rating, the placeholder or
                    value text inside an input field or drop-down (not the field's frame), and
                    each action button as a whole (a link-style action: its caption)
``1 radiobutton``   one choice of a single-select ChoiceSet: the circle *and its label text*
``2 checkbox``      one choice of a multi-select ChoiceSet or an Input.Toggle: the square and
                    its label text
``3 actionset``     the whole row (or vertical stack) of 1-4 buttons, around the buttons' boxes
                    (not labelled in pic2card's real subset; kept as its class list implies)
``4 image``         pictures, avatars and icons (not labelled in the real subset; kept)
``5 rating``        the row of five stars only (not labelled in the real subset; kept)
==================  =========================================================================

Text and choice boxes have a margin around the ink as pic2card's annotators drew them (measured
on the real cards: about a quarter of the font size on the left, top and bottom, half of it on
the right; :data:`~detr_deploy.data.cards.elements.TEXT_MARGIN`); button, image and rating boxes
are their drawn extent. Not labelled: the card background, containers, separators and the frames
of input fields.

Capture effects per seed: rescaling x0.6-1.3 with a random filter, slight blur (8 %), sensor-like
noise (10 %) and JPEG compression at quality 40-95.

Everything is deterministic per seed: ``render_card(s)`` returns byte-identical pixels and labels
on every machine with the pinned packages, since the fonts come from pip packages (matplotlib's
DejaVu, Roboto, Lato, Source Sans Pro, Hanken Grotesk), never from the system.

Parts (each a module of this package)

* :mod:`~detr_deploy.data.cards.text` — pseudo-English words, names, dates, money and captions;
* :mod:`~detr_deploy.data.cards.fonts` — the pip-installed fonts, grouped into families;
* :mod:`~detr_deploy.data.cards.masks` — anti-aliased shape masks (rounded rectangles, rings, stars);
* :mod:`~detr_deploy.data.cards.pictures` — picture content (photo crops, procedural images, icons);
* :mod:`~detr_deploy.data.cards.theme` — light and dark colour themes;
* :mod:`~detr_deploy.data.cards.elements` — rendering context and layout elements (text, images, columns);
* :mod:`~detr_deploy.data.cards.controls` — choice sets, input fields, ratings and action sets;
* :mod:`~detr_deploy.data.cards.presets` — TextBlock presets, action captions and icon rows the layouts share;
* :mod:`~detr_deploy.data.cards.compositions` — free random compositions of elements;
* :mod:`~detr_deploy.data.cards.templates` — the 14 designed templates and the registry of all layouts;
* :mod:`~detr_deploy.data.cards.compose` — :func:`render_card` and :func:`generate_dataset`;
* :mod:`~detr_deploy.data.cards.realism` — wider realism, off unless asked for: choice glyphs up to 3x the
  text size, closer lines, template expressions, photo and sketch looks;
* :mod:`~detr_deploy.data.cards.variants` — the generator's named variants (``full``, ``no_capture``,
  ``one_font``, ``wide``) for training and the realism ablation;
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
