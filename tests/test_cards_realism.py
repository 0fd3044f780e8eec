"""Tests for the generator's wider realism (detr_deploy.data.cards.realism, the ``wide`` variant)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from detr_deploy.data.cards import realism, render_card
from detr_deploy.data.cards.variants import variant_renderer


def test_wide_variant_differs_and_leaves_the_base_generator_unchanged():
    seeds = range(6)
    before = [render_card(seed) for seed in seeds]
    wide = [variant_renderer("wide")(seed) for seed in seeds]
    after = [render_card(seed) for seed in seeds]
    assert not realism.enabled()
    for (image, labels), (image_after, labels_after) in zip(before, after, strict=True):
        assert labels == labels_after and np.array_equal(np.asarray(image), np.asarray(image_after))
    differing = sum(
        labels != wide_labels
        or image.size != wide_image.size
        or not np.array_equal(np.asarray(image), np.asarray(wide_image))
        for (image, labels), (wide_image, wide_labels) in zip(before, wide, strict=True)
    )
    assert differing >= 4, differing


def test_wider_realism_is_restored_after_an_error():
    with pytest.raises(RuntimeError):
        with realism.wider_realism():
            assert realism.enabled()
            raise RuntimeError("inside")
    assert not realism.enabled()


def test_choice_glyphs_span_a_wide_range_of_sizes():
    rng = random.Random(0)
    factors = np.array([realism.glyph_factor(rng) for _ in range(4000)])
    assert factors.min() >= 0.7 and factors.max() <= 3.0
    widened = factors != 1.15
    assert abs(widened.mean() - realism.WIDE_GLYPH_SHARE) < 0.03
    assert (factors[widened] > 2.0).mean() > 0.15  # glyphs twice the text size and more, as on real forms


def test_template_text_replaces_a_share_of_texts_with_expressions():
    rng = random.Random(0)
    texts = [realism.template_text(rng, "Quarterly budget review") for _ in range(4000)]
    changed = [text for text in texts if text != "Quarterly budget review"]
    assert abs(len(changed) / len(texts) - realism.TEMPLATE_TEXT_SHARE) < 0.015
    assert all("{" in text and text.count("{") == text.count("}") for text in changed)


def test_wide_choice_boxes_hold_their_glyph_and_label_text():
    """pic2card's convention holds for large, small and pale glyphs too: the choice's box holds all the
    ink of its row (glyph and label text), with background around it."""
    checked, clear = 0, 0
    with realism.wider_realism():
        cards = [render_card(seed, jpeg=False, rescale=False) for seed in range(60)]
    for image, labels in cards:
        arr = np.asarray(image).astype(np.int16)
        for label in labels:
            if label["category"] not in ("radiobutton", "checkbox"):
                continue
            x0, y0, x1, y1 = (int(v) for v in label["bbox"])
            inside = arr[y0:y1, x0:x1]
            edge = np.concatenate([inside[0], inside[-1], inside[:, 0], inside[:, -1]])
            colours, counts = np.unique(edge.reshape(-1, 3), axis=0, return_counts=True)
            ink = np.abs(inside - colours[counts.argmax()]).max(axis=2) > 20
            rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
            assert len(rows), label
            assert cols[-1] - cols[0] > 1.5 * (rows[-1] - rows[0]), label  # a glyph and a word or more of text
            clear += rows[0] > 0 and cols[0] > 0 and rows[-1] < ink.shape[0] - 1 and cols[-1] < ink.shape[1] - 1
            checked += 1
    assert checked >= 20, checked
    # the next row's large glyph may reach into a margin now and then; almost every box has clear margins
    assert clear >= 0.85 * checked, (clear, checked)


def test_perspective_warp_moves_the_boxes_with_the_pixels():
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    ImageDraw.Draw(image).rectangle([100, 60, 179, 119], fill=(0, 0, 0))  # pixels 100..179 x 60..119
    corners = [(12.0, 5.0), (290.0, 14.0), (280.0, 196.0), (4.0, 185.0)]
    warped, (box,) = realism.warp_perspective(image, [(100.0, 60.0, 180.0, 120.0, 0)], corners, (255, 255, 255))
    dark = np.asarray(warped.convert("L")) < 128
    rows, cols = np.flatnonzero(dark.any(axis=1)), np.flatnonzero(dark.any(axis=0))
    ink_box = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    assert box[4] == 0
    assert np.allclose(box[:4], ink_box, atol=1.5), (box, ink_box)
    assert warped.size == image.size


def test_photo_and_sketch_looks_keep_the_card_readable():
    image, labels = render_card(3, jpeg=False, rescale=False)
    boxes = [(*label["bbox"], label["category_id"]) for label in labels]
    photo, moved = realism.photo_look(image, boxes, random.Random(1), np.random.default_rng(1))
    assert photo.size == image.size and len(moved) == len(boxes)
    for (x0, _, x1, _, c), (mx0, my0, mx1, my1, mc) in zip(boxes, moved, strict=True):
        assert mc == c and mx1 > mx0 and my1 > my0
        assert abs((mx1 - mx0) - (x1 - x0)) < 0.2 * image.width  # a tilt, not a different box
    sketch = np.asarray(realism.sketch_look(image, random.Random(2), np.random.default_rng(2))).astype(np.int16)
    assert sketch.shape == np.asarray(image).shape
    paper = np.median(sketch.reshape(-1, 3), axis=0)
    assert paper.min() > 200  # mostly paper
    text = [label["bbox"] for label in labels if label["category"] == "textbox"]
    darkest = [sketch[int(y0) : int(y1), int(x0) : int(x1)].sum(axis=2).min() for x0, y0, x1, y1 in text]
    assert np.mean(np.array(darkest) < paper.sum() - 150) > 0.9  # the text is drawn as strokes
