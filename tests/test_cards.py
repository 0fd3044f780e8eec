"""Tests for the synthetic card generator (detr_deploy.data.cards) and the label files (data.annotations)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detr_deploy.data import classes
from detr_deploy.data.annotations import read_coco, read_voc, write_coco, write_voc
from detr_deploy.data.cards import CLASS_COLORS, CLASS_NAMES, TEMPLATES, draw_labels, generate_dataset, render_card

REPO = Path(__file__).resolve().parents[1]
SEEDS = range(50)


@pytest.fixture(scope="module")
def rendered():
    """50 cards as they come out of render_card (rescaled, JPEG-compressed)."""
    return {seed: render_card(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def clean():
    """Cards without the final rescale and JPEG step: whole-pixel boxes, exact colours."""
    return {seed: render_card(seed, jpeg=False, rescale=False) for seed in range(60)}


def _box_ints(box):
    x0, y0, x1, y1 = box
    assert all(float(v).is_integer() for v in box), box
    return int(x0), int(y0), int(x1), int(y1)


# --------------------------------------------------------------------------------------------
# basic contract


def test_class_names_and_colors():
    assert CLASS_NAMES == ("textbox", "radiobutton", "checkbox", "actionset", "image", "rating")
    assert len(CLASS_COLORS) == len(CLASS_NAMES)
    assert len(set(CLASS_COLORS)) == len(CLASS_COLORS)
    assert len(TEMPLATES) >= 9  # at least 8 designed layouts plus free compositions


def test_classes_have_one_home():
    assert CLASS_NAMES is classes.CLASS_NAMES and CLASS_COLORS is classes.CLASS_COLORS
    indices = (classes.TEXTBOX, classes.RADIO, classes.CHECKBOX, classes.ACTIONSET, classes.IMAGE, classes.RATING)
    assert [CLASS_NAMES[i] for i in indices] == list(CLASS_NAMES)
    assert classes.card_seed(3, 2) == 3 * 1_000_003 + 2 and classes.card_seed(0, 5) == 5


def test_classes_module_loads_neither_pil_nor_torch():
    code = "import sys, detr_deploy.data.classes; print(sorted({'PIL', 'torch'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_determinism_same_seed_identical():
    for seed in (0, 7, 123456):
        image_a, labels_a = render_card(seed)
        image_b, labels_b = render_card(seed)
        assert image_a.mode == "RGB"
        assert image_a.size == image_b.size
        assert image_a.tobytes() == image_b.tobytes()
        assert labels_a == labels_b


def test_different_seeds_differ():
    images = [render_card(seed)[0] for seed in range(5)]
    keys = {(im.size, im.tobytes()) for im in images}
    assert len(keys) == 5
    label_sets = [json.dumps(render_card(seed)[1]) for seed in range(5)]
    assert len(set(label_sets)) == 5


def test_no_global_random_state_used():
    import random

    random.seed(1)
    np.random.seed(1)
    image_a, labels_a = render_card(42)
    random.seed(2)
    np.random.seed(2)
    image_b, labels_b = render_card(42)
    assert image_a.tobytes() == image_b.tobytes() and labels_a == labels_b


def test_labels_valid_over_many_seeds(rendered):
    seen = Counter()
    for seed, (image, labels) in rendered.items():
        assert isinstance(image, Image.Image) and image.mode == "RGB"
        w, h = image.size
        assert 100 <= w and 50 <= h
        assert labels, f"seed {seed} has no labels"
        for label in labels:
            assert set(label) == {"bbox", "category_id", "category"}
            x0, y0, x1, y1 = label["bbox"]
            assert all(isinstance(v, float) for v in label["bbox"])
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (seed, label, image.size)
            assert x1 - x0 >= 2 and y1 - y0 >= 2, (seed, label)
            assert label["category_id"] in range(len(CLASS_NAMES))
            assert CLASS_NAMES[label["category_id"]] == label["category"]
            seen[label["category"]] += 1
    assert set(seen) == set(CLASS_NAMES), seen


def test_every_template_renders_labelled_elements():
    expected = {
        "weather": {"textbox", "image"},
        "poll": {"textbox", "radiobutton"},
        "form": {"textbox"},
        "restaurant": {"textbox", "rating"},
        "tasks": {"textbox", "checkbox"},
        "gallery": {"textbox", "image"},
        "survey": {"textbox", "rating"},
        "activity": {"textbox", "image"},
    }
    for name in TEMPLATES:
        for seed in range(3):
            image, labels = render_card(seed, template=name)
            found = {label["category"] for label in labels}
            assert expected.get(name, {"textbox"}) <= found, (name, seed, found)
    with pytest.raises(ValueError):
        render_card(0, template="no-such-template")


def test_size_options():
    image, labels = render_card(3, min_width=300, max_width=300, rescale=False, jpeg=False)
    assert 300 <= image.width <= 300 + 80  # card width plus page margins
    image, labels = render_card(3, max_side=256)
    assert max(image.size) <= 256
    assert all(label["bbox"][2] <= image.width and label["bbox"][3] <= image.height for label in labels)


def test_clean_rendering_shares_labels_with_jpeg_rendering():
    _, labels_jpeg = render_card(11, rescale=False)
    _, labels_clean = render_card(11, rescale=False, jpeg=False)
    assert labels_jpeg == labels_clean


# --------------------------------------------------------------------------------------------
# boxes cover ink


def _band(arr: np.ndarray, box, width: int = 2) -> np.ndarray:
    """Pixels of the ``width``-px ring just outside ``box`` (clipped to the image)."""
    x0, y0, x1, y1 = box
    h, w = arr.shape[:2]
    X0, Y0, X1, Y1 = max(0, x0 - width), max(0, y0 - width), min(w, x1 + width), min(h, y1 + width)
    mask = np.zeros((h, w), bool)
    mask[Y0:Y1, X0:X1] = True
    mask[y0:y1, x0:x1] = False
    return arr[mask]


def _ink_margins(arr: np.ndarray, box, contrast: int):
    """Margins (left, top, right, bottom) between a box's edges and the ink inside it, and the ink's
    height; the background is the commonest colour on the box's own 1-px border."""
    x0, y0, x1, y1 = box
    inside = arr[y0:y1, x0:x1]
    border = np.concatenate([inside[0], inside[-1], inside[:, 0], inside[:, -1]])
    colours, counts = np.unique(border.reshape(-1, 3), axis=0, return_counts=True)
    ink = np.abs(inside - colours[counts.argmax()]).max(axis=2) > contrast
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        return None
    margins = (cols[0], rows[0], ink.shape[1] - 1 - cols[-1], ink.shape[0] - 1 - rows[-1])
    return margins, rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _inside(inner, outer) -> bool:
    return inner[0] >= outer[0] and inner[1] >= outer[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


def test_choice_boxes_hold_glyph_and_text_with_a_margin(clean):
    """pic2card's convention: a radio button / checkbox box encloses the glyph and its label text,
    with a margin of clear background around the ink (measured here from the pixels)."""
    margins, wide, count = [], 0, Counter()
    for seed, (image, labels) in clean.items():
        arr = np.asarray(image).astype(np.int16)
        for label in labels:
            if label["category"] not in ("radiobutton", "checkbox"):
                continue
            measured = _ink_margins(arr, _box_ints(label["bbox"]), contrast=20)
            assert measured is not None, (seed, label)
            (left, top, right, bottom), ink_h, ink_w = measured
            margins.append((left / ink_h, top / ink_h, right / ink_h, bottom / ink_h))
            wide += ink_w > 2 * ink_h  # glyph plus a word or more of text
            count[label["category"]] += 1
    assert count["radiobutton"] >= 5 and count["checkbox"] >= 5, count
    assert wide >= 0.9 * sum(count.values()), (wide, count)
    median = np.median(np.array(margins), axis=0)
    # every side has a margin, larger on the right, as on the real cards (about 0.25-0.35 of the
    # ink height left/top/bottom, about 0.7 right)
    assert (median[[0, 1, 3]] > 0.1).all() and (median[[0, 1, 3]] < 0.6).all(), median
    assert median[2] > median[0], median


def test_text_boxes_have_a_margin_and_buttons_are_textboxes(clean):
    """A textbox is one text block with a margin; each action button is a textbox inside its action set."""
    margins, checked, buttons = [], 0, 0
    for image, labels in clean.values():
        arr = np.asarray(image).astype(np.int16)
        actionsets = [label["bbox"] for label in labels if label["category"] == "actionset"]
        for label in labels:
            if label["category"] != "textbox":
                continue
            if any(_inside(label["bbox"], a) for a in actionsets):
                buttons += 1
                continue
            measured = _ink_margins(arr, _box_ints(label["bbox"]), contrast=8)
            if measured is None:  # clipped away at the card's edge
                continue
            (left, top, right, bottom), ink_h, _ = measured
            margins.append(min(left, top, right, bottom) > 0)
            checked += 1
    assert checked > 200 and buttons > 10, (checked, buttons)
    # neighbours' ink may reach into a margin now and then; almost every box has clear margins
    assert np.mean(margins) > 0.9, np.mean(margins)


def test_rating_boxes_are_tight(clean):
    checked = 0
    for seed, (image, labels) in clean.items():
        arr = np.asarray(image).astype(np.int16)
        for label in labels:
            if label["category"] != "rating":
                continue
            x0, y0, x1, y1 = _box_ints(label["bbox"])
            band = _band(arr, (x0, y0, x1, y1), width=1)
            colours, counts = np.unique(band.reshape(-1, 3), axis=0, return_counts=True)
            diff = np.abs(arr[y0:y1, x0:x1] - colours[counts.argmax()]).max(axis=2)
            for edge in (diff[0, :], diff[-1, :], diff[:, 0], diff[:, -1]):
                assert edge.max() > 3, (seed, label)  # light-grey empty stars have little contrast
            checked += 1
    assert checked >= 3, checked


def test_image_boxes_differ_from_background(clean):
    count = 0
    for seed, (image, labels) in clean.items():
        arr = np.asarray(image).astype(np.int16)
        for label in labels:
            if label["category"] != "image":
                continue
            x0, y0, x1, y1 = _box_ints(label["bbox"])
            inside = arr[y0:y1, x0:x1].reshape(-1, 3)
            assert inside.std(axis=0).max() > 3, (seed, label)  # not a flat patch
            count += 1
    assert count > 20


def test_actionset_is_one_box_around_all_buttons():
    found = 0
    for seed in range(80):
        image, labels = render_card(seed, jpeg=False, rescale=False)
        actionsets = [label["bbox"] for label in labels if label["category"] == "actionset"]
        texts = [label["bbox"] for label in labels if label["category"] == "textbox"]
        for a in actionsets:
            # its buttons are textboxes that reach its edges: the action set is their union
            # (link-style captions carry a text margin, so they may stick out by a few pixels)
            inside = [t for t in texts if _inside(t, (a[0] - 12, a[1] - 12, a[2] + 12, a[3] + 12))]
            assert inside, (seed, a)
            union = (
                min(t[0] for t in inside),
                min(t[1] for t in inside),
                max(t[2] for t in inside),
                max(t[3] for t in inside),
            )
            assert _inside(a, union), (seed, a, union)
            found += 1
    assert found > 10


# --------------------------------------------------------------------------------------------
# COCO / VOC


def test_coco_roundtrip(tmp_path):
    records = []
    originals = []
    for i, seed in enumerate((1, 2, 3)):
        image, labels = render_card(seed)
        name = f"images/card_{i:05d}.jpg"
        records.append({"file_name": name, "width": image.width, "height": image.height, "annotations": labels})
        originals.append((name, image.size, labels))
    path = write_coco(tmp_path / "ann.json", records, CLASS_NAMES)

    # independent parse
    try:
        from pycocotools.coco import COCO  # type: ignore

        coco = COCO(str(path))
        for image_id, (name, size, labels) in zip(sorted(coco.imgs), originals, strict=True):
            info = coco.imgs[image_id]
            assert info["file_name"] == name and (info["width"], info["height"]) == size
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
            got = sorted((a["category_id"], *a["bbox"]) for a in anns)
            want = sorted(
                (
                    label["category_id"] + 1,
                    label["bbox"][0],
                    label["bbox"][1],
                    label["bbox"][2] - label["bbox"][0],
                    label["bbox"][3] - label["bbox"][1],
                )
                for label in labels
            )
            assert len(got) == len(want)
            np.testing.assert_allclose(np.array(got), np.array(want), atol=2e-3)
        assert [coco.cats[i]["name"] for i in sorted(coco.cats)] == list(CLASS_NAMES)
    except ImportError:
        pass
    document = json.loads(path.read_text())
    assert {c["id"]: c["name"] for c in document["categories"]} == {i + 1: n for i, n in enumerate(CLASS_NAMES)}
    assert all(a["iscrowd"] == 0 and a["area"] >= 0 for a in document["annotations"])

    # our reader
    parsed = read_coco(path)
    assert len(parsed) == 3
    for (image_path, width, height, boxes, labels), (name, size, original) in zip(parsed, originals, strict=True):
        assert image_path == tmp_path / name
        assert (width, height) == size
        assert boxes.dtype == np.float32 and boxes.shape == (len(original), 4)
        assert labels.dtype == np.int64
        np.testing.assert_allclose(boxes, np.array([label["bbox"] for label in original]), atol=2e-3)
        np.testing.assert_array_equal(labels, [label["category_id"] for label in original])
    # matching by name gives the same answer
    by_name = read_coco(path, CLASS_NAMES)
    for a, b in zip(parsed, by_name, strict=True):
        np.testing.assert_array_equal(a[4], b[4])


ONE_IMAGE = (
    '{"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], '
    '"categories": [{"id": 1, "name": "textbox"}],'
)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "top level"),
        ('{"images": [], "annotations": []}', "categories"),
        (
            ONE_IMAGE + ' "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
            "unknown image",
        ),
        (
            ONE_IMAGE + ' "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]}',
            "unknown category",
        ),
        (
            ONE_IMAGE + ' "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, "x", 1]}]}',
            "bbox",
        ),
        ('{"images": [{"id": 1, "file_name": "a.jpg", "width": 10}], "categories": [], "annotations": []}', "height"),
    ],
)
def test_read_coco_rejects_malformed(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        read_coco(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_voc_roundtrip(tmp_path):
    image, labels = render_card(5)
    image_path = tmp_path / "card.jpg"
    image.save(image_path)
    boxes = np.array([label["bbox"] for label in labels])
    classes = np.array([label["category_id"] for label in labels])
    xml_path = write_voc(tmp_path / "card.xml", image_path, image.width, image.height, boxes, classes, CLASS_NAMES)

    # independent parse with ElementTree
    root = ET.parse(xml_path).getroot()
    assert root.tag == "annotation"
    assert root.findtext("filename") == "card.jpg"
    assert root.findtext("folder") == tmp_path.name
    assert int(root.findtext("size/width")) == image.width and int(root.findtext("size/height")) == image.height
    assert root.findtext("size/depth") == "3" and root.findtext("segmented") == "0"
    objects = root.findall("object")
    assert len(objects) == len(labels)
    for obj, label in zip(objects, labels, strict=True):
        assert obj.findtext("name") == label["category"]
        assert obj.findtext("pose") == "Unspecified" and obj.findtext("difficult") == "0"
        got = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        x0, y0, x1, y1 = label["bbox"]
        want = [int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))]
        assert got == want
        assert 0 <= got[0] < got[2] <= image.width and 0 <= got[1] < got[3] <= image.height

    # our reader, with an unknown class name thrown in
    first = root.find("object/name")
    first.text = "spinner"
    ET.ElementTree(root).write(xml_path)
    path, width, height, got_boxes, got_labels, unknown = read_voc(xml_path, CLASS_NAMES)
    assert path == image_path and (width, height) == image.size
    assert unknown == ["spinner"]
    assert got_boxes.dtype == np.float32 and got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_labels, classes[1:])
    np.testing.assert_array_equal(
        got_boxes,
        np.stack([np.floor(boxes[1:, 0]), np.floor(boxes[1:, 1]), np.ceil(boxes[1:, 2]), np.ceil(boxes[1:, 3])], 1),
    )


VOC_ONE_IMAGE = "<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height></size>"


@pytest.mark.parametrize(
    "content, message",
    [
        ("<annotation><filename>a.jpg", "not well-formed"),
        ("<notvoc/>", "root element"),
        ("<annotation><filename>a.jpg</filename></annotation>", "size"),
        (
            VOC_ONE_IMAGE + "<object><name>textbox</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
            "<xmax>z</xmax><ymax>3</ymax></bndbox></object></annotation>",
            "xmax",
        ),
        (
            VOC_ONE_IMAGE + "<object><name>textbox</name><bndbox><xmin>5</xmin><ymin>1</ymin>"
            "<xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>",
            "max < min",
        ),
        (
            VOC_ONE_IMAGE + "<object><name>textbox</name></object></annotation>",
            "bndbox",
        ),
    ],
)
def test_read_voc_rejects_malformed(tmp_path, content, message):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        read_voc(path, CLASS_NAMES)
    assert str(path) in str(info.value) and message in str(info.value)


def test_writers_reject_bad_labels(tmp_path):
    with pytest.raises(ValueError):
        write_voc(tmp_path / "x.xml", tmp_path / "x.jpg", 10, 10, [[0, 0, 5, 5]], [6], CLASS_NAMES)
    with pytest.raises(ValueError):
        write_coco(
            tmp_path / "x.json",
            [{"file_name": "x.jpg", "width": 10, "height": 10, "boxes": [[0, 0, 5]], "labels": [0]}],
            CLASS_NAMES,
        )


# --------------------------------------------------------------------------------------------
# dataset writer, CLI, visualisation


def test_generate_dataset_matches_render_card(tmp_path):
    out = generate_dataset(tmp_path / "ds", 4, seed=3, progress=False)
    assert out == tmp_path / "ds"
    parsed = read_coco(out / "annotations.json")
    assert len(parsed) == 4
    for i, (image_path, width, height, boxes, labels) in enumerate(parsed):
        assert image_path == out / "images" / f"card_{i:05d}.jpg"
        with Image.open(image_path) as stored:
            assert stored.size == (width, height)
            pixels = stored.convert("RGB").tobytes()
        image, original = render_card(3 * 1_000_003 + i)
        assert image.tobytes() == pixels  # the file is exactly what render_card decodes
        np.testing.assert_allclose(boxes, np.array([label["bbox"] for label in original]), atol=2e-3)
        voc = read_voc(image_path.with_suffix(".xml"), CLASS_NAMES)
        assert voc[0] == image_path and voc[5] == []
        np.testing.assert_array_equal(voc[4], labels)
    # a different dataset seed does not repeat images
    other = generate_dataset(tmp_path / "other", 2, seed=4, formats=("coco",), progress=False)
    assert not list((other / "images").glob("*.xml"))
    a = (out / "images" / "card_00000.jpg").read_bytes()
    b = (other / "images" / "card_00000.jpg").read_bytes()
    assert a != b
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "bad", 1, 0, formats=("yolo",), progress=False)


def test_cli_writes_files(tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "detr_deploy.data.cards",
            str(out),
            "--num-images",
            "3",
            "--seed",
            "7",
            "--max-side",
            "400",
            "--no-progress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    images = sorted((out / "images").glob("*.jpg"))
    assert [p.name for p in images] == ["card_00000.jpg", "card_00001.jpg", "card_00002.jpg"]
    assert len(list((out / "images").glob("*.xml"))) == 3
    document = json.loads((out / "annotations.json").read_text())
    assert len(document["images"]) == 3 and document["annotations"]
    for index, path in enumerate(images):
        with Image.open(path) as im:
            assert max(im.size) <= 400
            assert im.convert("RGB").tobytes() == render_card(classes.card_seed(7, index), max_side=400)[0].tobytes()

    helped = subprocess.run(
        [sys.executable, "-m", "detr_deploy.data.cards", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert helped.returncode == 0 and "--num-images" in helped.stdout and "--max-side" in helped.stdout


def test_draw_labels_marks_boxes_in_class_colours():
    image = Image.new("RGB", (200, 120), (255, 255, 255))
    labels = [
        {"bbox": [20.0, 30.0, 80.0, 90.0], "category_id": 4, "category": "image"},
        {"bbox": [100.0, 40.0, 180.0, 100.0], "category_id": 3, "category": "actionset"},
    ]
    drawn = draw_labels(image, labels, CLASS_NAMES)
    assert drawn is not image and image.getpixel((20, 60)) == (255, 255, 255)
    assert drawn.getpixel((20, 60)) == CLASS_COLORS[4]
    assert drawn.getpixel((179, 70)) == CLASS_COLORS[3]
    # the (boxes, labels) form gives the same picture
    same = draw_labels(image, (np.array([label["bbox"] for label in labels]), np.array([4, 3])), CLASS_NAMES)
    assert same.tobytes() == drawn.tobytes()


def test_labelled_elements_overlap_only_by_their_margins(clean):
    """Distinct elements share at most the margins of their boxes; an action set holds its buttons."""
    worst = 0.0
    for seed, (_, labels) in clean.items():
        kept = [label for label in labels if label["category"] != "actionset"]
        boxes = np.array([label["bbox"] for label in kept]).reshape(-1, 4)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for i in range(len(boxes)):
            ix = np.minimum(boxes[i, 2], boxes[i + 1 :, 2]) - np.maximum(boxes[i, 0], boxes[i + 1 :, 0])
            iy = np.minimum(boxes[i, 3], boxes[i + 1 :, 3]) - np.maximum(boxes[i, 1], boxes[i + 1 :, 1])
            shared = np.clip(ix, 0, None) * np.clip(iy, 0, None) / np.minimum(areas[i], areas[i + 1 :])
            if shared.size:
                k = int(shared.argmax())
                assert shared[k] < 0.35, (seed, kept[i], kept[i + 1 + k])
                worst = max(worst, float(shared[k]))
    assert worst > 0  # margins do touch neighbours now and then, as on pic2card's real labels


def test_generated_voc_files_name_their_image_relatively(tmp_path):
    out = generate_dataset(tmp_path / "set", 1, 4, formats=("voc",), progress=False)
    xml = out / "images" / "card_00000.xml"
    recorded = ET.parse(xml).getroot().findtext("path")
    assert recorded == "images/card_00000.jpg" and not Path(recorded).is_absolute()
    image_path, *_ = read_voc(xml, CLASS_NAMES)
    assert image_path == out / "images" / "card_00000.jpg" and image_path.is_file()
    # the shipped samples carry no machine's absolute path either
    for sample in sorted((REPO / "data" / "samples" / "images").glob("*.xml")):
        assert not Path(ET.parse(sample).getroot().findtext("path")).is_absolute(), sample


def test_single_font_variant_draws_with_dejavu_only_and_leaves_the_generator_unchanged():
    from detr_deploy.data.cards import fonts
    from detr_deploy.data.cards.variants import SINGLE_FONT_FAMILY, variant_renderer

    everything = {family.name for family in fonts._font_families()}
    assert {"Roboto", "Lato", "Source Sans Pro", "Hanken Grotesk", SINGLE_FONT_FAMILY} <= everything
    seen = []
    original = fonts._families_for

    def spy(only):
        families = original(only)
        seen.append({family.name for family in families})
        return families

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(fonts, "_families_for", spy)
        image, labels = variant_renderer("one_font")(11)
    assert seen and all(names == {SINGLE_FONT_FAMILY} for names in seen)
    assert labels and image.size[0] > 0
    assert {family.name for family in fonts._font_families()} == everything  # restored after the card


def test_unknown_font_family_or_variant_is_refused():
    from detr_deploy.data.cards import fonts
    from detr_deploy.data.cards.variants import variant_renderer

    before = fonts._font_families()
    with pytest.raises(ValueError, match="Comic Sans"):
        with fonts.only_font_families(["Comic Sans"]):
            pass
    assert fonts._font_families() == before
    with pytest.raises(ValueError, match="no_fonts.*full, no_capture, one_font"):
        variant_renderer("no_fonts")


def test_no_capture_variant_is_the_clean_rendering():
    from detr_deploy.data.cards.variants import variant_renderer

    clean_image, clean_labels = render_card(5, jpeg=False, rescale=False)
    captured_image, _ = render_card(5)
    image, labels = variant_renderer("no_capture")(5)
    assert labels == clean_labels
    assert np.array_equal(np.asarray(image), np.asarray(clean_image))
    assert image.size != captured_image.size or not np.array_equal(np.asarray(image), np.asarray(captured_image))
