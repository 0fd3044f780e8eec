"""COCO JSON and Pascal VOC XML writers and readers for detection labels.

Conventions used throughout this module (and by :mod:`detr_deploy.data.cards`):

* Boxes are ``[x0, y0, x1, y1]`` in pixel-edge coordinates: ``(0, 0)`` is the top-left corner of
  the top-left pixel, ``x1``/``y1`` are exclusive (a box covering exactly pixel column 3 is
  ``x0=3, x1=4``).
* Labels are **0-based class indices** into ``class_names`` (the model's class index).
* In COCO files the ``category_id`` is **class index + 1** (COCO reserves no id 0 by convention;
  ids 1..K for the K classes, in the order of ``class_names``). Bounding boxes are COCO
  ``[x, y, width, height]`` with the same pixel-edge origin, ``area = width * height`` and
  ``iscrowd = 0``.
* In Pascal VOC files (the layout labelImg writes) ``xmin/ymin/xmax/ymax`` are integers in the
  same pixel-edge coordinates, rounded outwards (``floor`` for the minimum, ``ceil`` for the
  maximum) and clamped to the image, so ``xmax``/``ymax`` are exclusive like the float boxes.

Every reader raises :class:`ValueError` naming the offending file when the input is malformed.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "write_coco",
    "read_coco",
    "write_voc",
    "read_voc",
    "coco_category_id",
    "class_index_from_coco",
]

PathLike = Union[str, os.PathLike]


def coco_category_id(class_index: int) -> int:
    """Model class index (0-based) -> COCO ``category_id`` (1-based) as written by :func:`write_coco`."""
    return int(class_index) + 1


def class_index_from_coco(category_id: int) -> int:
    """COCO ``category_id`` written by :func:`write_coco` -> model class index (0-based)."""
    return int(category_id) - 1


# --------------------------------------------------------------------------------------------
# helpers


def _as_boxes(boxes: Any, where: str) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{where}: boxes must have shape [N, 4], got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: boxes contain non-finite values")
    return array


def _as_labels(labels: Any, count: int, num_classes: int, where: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.size == 0:
        array = np.zeros((0,), dtype=np.int64)
    if array.ndim != 1 or array.shape[0] != count:
        raise ValueError(f"{where}: labels must have shape [{count}], got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{where}: labels must be integers")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ValueError(f"{where}: labels must be in [0, {num_classes}), got {array.min()}..{array.max()}")
    return array


def _record_boxes_labels(record: Mapping[str, Any], class_names: Sequence[str], where: str):
    """Boxes/labels of one record: either ``boxes`` + ``labels`` or ``annotations`` (render_card dicts)."""
    if "annotations" in record and "boxes" not in record:
        anns = record["annotations"]
        boxes = [a["bbox"] for a in anns]
        labels = []
        for a in anns:
            if "category_id" in a:
                labels.append(int(a["category_id"]))
            elif "category" in a:
                labels.append(list(class_names).index(a["category"]))
            else:
                raise ValueError(f"{where}: annotation without category_id/category")
    else:
        boxes = record.get("boxes", [])
        labels = record.get("labels", [])
    box_array = _as_boxes(boxes, where)
    label_array = _as_labels(labels, box_array.shape[0], len(class_names), where)
    return box_array, label_array


# --------------------------------------------------------------------------------------------
# COCO


def write_coco(
    path: PathLike,
    records: Iterable[Mapping[str, Any]],
    class_names: Sequence[str],
    *,
    indent: Optional[int] = None,
) -> Path:
    """Write a COCO detection JSON file.

    ``records`` is an iterable of dicts, one per image, with keys

    * ``file_name``: the image path as it should appear in the file (written relative to the JSON
      file's directory by convention, e.g. ``"images/card_00000.jpg"``),
    * ``width``, ``height``: image size in pixels,
    * either ``boxes`` (``[N, 4]`` xyxy floats) and ``labels`` (``[N]`` 0-based class indices), or
      ``annotations``: a list of ``{"bbox": [x0, y0, x1, y1], "category_id": 0-based index, ...}``
      as returned by :func:`detr_deploy.data.cards.render_card`,
    * optionally ``id`` (image id; default: 1-based position).

    Categories are written with ``id = class index + 1`` (see the module docstring). Returns the path.
    """
    path = Path(path)
    class_names = list(class_names)
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    ann_id = 1
    used_ids = set()
    for position, record in enumerate(records):
        where = f"{path} (record {position})"
        for key in ("file_name", "width", "height"):
            if key not in record:
                raise ValueError(f"{where}: missing key {key!r}")
        image_id = int(record.get("id", position + 1))
        if image_id in used_ids:
            raise ValueError(f"{where}: duplicate image id {image_id}")
        used_ids.add(image_id)
        width, height = int(record["width"]), int(record["height"])
        images.append({"id": image_id, "file_name": str(record["file_name"]), "width": width, "height": height})
        boxes, labels = _record_boxes_labels(record, class_names, where)
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            w, h = max(0.0, x1 - x0), max(0.0, y1 - y0)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": coco_category_id(label),
                    "bbox": [round(x0, 3), round(y0, 3), round(w, 3), round(h, 3)],
                    "area": round(w * h, 3),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    categories = [
        {"id": coco_category_id(i), "name": name, "supercategory": "card_element"} for i, name in enumerate(class_names)
    ]
    document = {
        "info": {"description": "pic2card detection labels", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=indent)
    return path


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def read_coco(
    path: PathLike,
    class_names: Optional[Sequence[str]] = None,
    *,
    image_root: Optional[PathLike] = None,
) -> List[Tuple[Path, int, int, np.ndarray, np.ndarray]]:
    """Read a COCO detection JSON file.

    Returns one tuple per image, in file order:
    ``(image_path, width, height, boxes_xyxy float32 [N, 4], labels int64 [N])``.

    ``image_path`` is ``image_root / file_name`` (``image_root`` defaults to the directory holding
    the JSON file). Labels are 0-based: if ``class_names`` is given, categories are matched **by
    name** (a category whose name is not in ``class_names`` is an error); otherwise category ids are
    mapped to their rank among the sorted category ids (for files written by :func:`write_coco`
    that is ``category_id - 1``). Crowd annotations (``iscrowd=1``) are skipped.
    Raises ``ValueError`` naming the file on malformed input.
    """
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        with open(path, "r", encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise ValueError(f"{path}: top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise ValueError(f"{path}: missing or non-list {key!r}")

    category_map: Dict[int, int] = {}
    cat_ids = []
    for cat in document["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise ValueError(f"{path}: category entries need 'id' and 'name', got {cat!r}")
        if isinstance(cat["id"], bool) or not isinstance(cat["id"], int):
            raise ValueError(f"{path}: category id must be an integer, got {cat['id']!r}")
        cat_ids.append((int(cat["id"]), str(cat["name"])))
    if len({cid for cid, _ in cat_ids}) != len(cat_ids):
        raise ValueError(f"{path}: duplicate category ids")
    if class_names is not None:
        names = list(class_names)
        for cid, name in cat_ids:
            if name not in names:
                raise ValueError(f"{path}: category {name!r} (id {cid}) is not one of {names}")
            category_map[cid] = names.index(name)
    else:
        for rank, (cid, _) in enumerate(sorted(cat_ids)):
            category_map[cid] = rank

    order: List[int] = []
    info: Dict[int, Tuple[Path, int, int]] = {}
    for image in document["images"]:
        if not isinstance(image, dict):
            raise ValueError(f"{path}: image entries must be objects, got {image!r}")
        for key in ("id", "file_name", "width", "height"):
            if key not in image:
                raise ValueError(f"{path}: image entry missing {key!r}: {image!r}")
        image_id = image["id"]
        if image_id in info:
            raise ValueError(f"{path}: duplicate image id {image_id!r}")
        width = _number(image["width"], str(path), "image width")
        height = _number(image["height"], str(path), "image height")
        if width <= 0 or height <= 0 or width != int(width) or height != int(height):
            raise ValueError(f"{path}: image {image_id!r} has invalid size {image['width']}x{image['height']}")
        info[image_id] = (root / str(image["file_name"]), int(width), int(height))
        order.append(image_id)

    boxes: Dict[int, List[List[float]]] = {image_id: [] for image_id in order}
    labels: Dict[int, List[int]] = {image_id: [] for image_id in order}
    for ann in document["annotations"]:
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: annotation entries must be objects, got {ann!r}")
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise ValueError(f"{path}: annotation missing {key!r}: {ann!r}")
        if ann["image_id"] not in info:
            raise ValueError(f"{path}: annotation {ann.get('id')!r} refers to unknown image id {ann['image_id']!r}")
        if ann["category_id"] not in category_map:
            raise ValueError(f"{path}: annotation {ann.get('id')!r} has unknown category id {ann['category_id']!r}")
        bbox = ann["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise ValueError(f"{path}: annotation {ann.get('id')!r} bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (_number(v, str(path), "bbox value") for v in bbox)
        if w < 0 or h < 0:
            raise ValueError(f"{path}: annotation {ann.get('id')!r} has negative box size {bbox!r}")
        if ann.get("iscrowd", 0):
            continue
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(category_map[ann["category_id"]])

    result = []
    for image_id in order:
        image_path, width, height = info[image_id]
        box_array = np.asarray(boxes[image_id], dtype=np.float32).reshape(-1, 4)
        label_array = np.asarray(labels[image_id], dtype=np.int64).reshape(-1)
        result.append((image_path, width, height, box_array, label_array))
    return result


# --------------------------------------------------------------------------------------------
# Pascal VOC


def _voc_int_box(box: Sequence[float], width: int, height: int) -> Tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    xmin = int(min(max(math.floor(x0), 0), width))
    ymin = int(min(max(math.floor(y0), 0), height))
    xmax = int(min(max(math.ceil(x1), 0), width))
    ymax = int(min(max(math.ceil(y1), 0), height))
    return xmin, ymin, xmax, ymax


def write_voc(
    path: PathLike,
    image_path: PathLike,
    width: int,
    height: int,
    boxes: Any,
    labels: Any,
    class_names: Sequence[str],
    *,
    depth: int = 3,
) -> Path:
    """Write one Pascal VOC XML file in labelImg's layout.

    ``annotation/{folder, filename, path, source/database, size/{width,height,depth}, segmented,
    object*/{name, pose, truncated, difficult, bndbox/{xmin,ymin,xmax,ymax}}}``. Box coordinates
    are integers (min rounded down, max rounded up, clamped to the image; see module docstring);
    ``truncated`` is 1 when a box touches the image border. Returns the path.
    """
    path = Path(path)
    image_path = Path(image_path)
    width, height = int(width), int(height)
    where = str(path)
    box_array = _as_boxes(boxes, where)
    label_array = _as_labels(labels, box_array.shape[0], len(class_names), where)

    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = image_path.parent.name
    ET.SubElement(root, "filename").text = image_path.name
    ET.SubElement(root, "path").text = str(image_path)
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "Unknown"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = str(int(depth))
    ET.SubElement(root, "segmented").text = "0"
    for box, label in zip(box_array.tolist(), label_array.tolist()):
        xmin, ymin, xmax, ymax = _voc_int_box(box, width, height)
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(class_names[label])
        ET.SubElement(obj, "pose").text = "Unspecified"
        touches = xmin <= 0 or ymin <= 0 or xmax >= width or ymax >= height
        ET.SubElement(obj, "truncated").text = "1" if touches else "0"
        ET.SubElement(obj, "difficult").text = "0"
        bndbox = ET.SubElement(obj, "bndbox")
        ET.SubElement(bndbox, "xmin").text = str(xmin)
        ET.SubElement(bndbox, "ymin").text = str(ymin)
        ET.SubElement(bndbox, "xmax").text = str(xmax)
        ET.SubElement(bndbox, "ymax").text = str(ymax)
    ET.indent(root, space="\t")
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)
    return path


def _child_text(parent: ET.Element, tag: str, where: str) -> str:
    child = parent.find(tag)
    if child is None or child.text is None or not child.text.strip():
        raise ValueError(f"{where}: missing <{tag}> in <{parent.tag}>")
    return child.text.strip()


def _child_number(parent: ET.Element, tag: str, where: str) -> float:
    text = _child_text(parent, tag, where)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: <{tag}> is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: <{tag}> is not finite: {text!r}")
    return value


def read_voc(path: PathLike, class_names: Sequence[str]) -> Tuple[Path, int, int, np.ndarray, np.ndarray, List[str]]:
    """Read one Pascal VOC XML file.

    Returns ``(image_path, width, height, boxes float32 [N, 4] xyxy, labels int64 [N] 0-based,
    unknown_names)``. Objects whose ``<name>`` is not in ``class_names`` are skipped and their
    names listed in ``unknown_names`` (in file order, with repeats).

    ``image_path`` is the first existing one of: ``<xml dir>/<filename>``, ``<path>``,
    ``<xml dir>/../JPEGImages/<filename>``; if none exists, ``<xml dir>/<filename>``.
    Raises ``ValueError`` naming the file on malformed XML, missing fields, non-numeric
    coordinates or boxes with ``xmax < xmin`` / ``ymax < ymin``.
    """
    path = Path(path)
    where = str(path)
    names = list(class_names)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise ValueError(f"{where}: not well-formed XML ({error})") from error
    if root.tag != "annotation":
        raise ValueError(f"{where}: root element must be <annotation>, got <{root.tag}>")
    filename = _child_text(root, "filename", where)
    size = root.find("size")
    if size is None:
        raise ValueError(f"{where}: missing <size>")
    width_f = _child_number(size, "width", where)
    height_f = _child_number(size, "height", where)
    if width_f <= 0 or height_f <= 0 or width_f != int(width_f) or height_f != int(height_f):
        raise ValueError(f"{where}: invalid image size {width_f}x{height_f}")
    width, height = int(width_f), int(height_f)

    candidates = [path.parent / filename]
    path_el = root.find("path")
    if path_el is not None and path_el.text and path_el.text.strip():
        candidates.append(Path(path_el.text.strip()))
    candidates.append(path.parent.parent / "JPEGImages" / filename)
    image_path = next((c for c in candidates if c.is_file()), candidates[0])

    boxes: List[List[float]] = []
    labels: List[int] = []
    unknown: List[str] = []
    for index, obj in enumerate(root.findall("object")):
        obj_where = f"{where} (object {index})"
        name = _child_text(obj, "name", obj_where)
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{obj_where}: missing <bndbox>")
        xmin, ymin, xmax, ymax = (_child_number(bndbox, tag, obj_where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"{obj_where}: box has max < min: {(xmin, ymin, xmax, ymax)}")
        if name not in names:
            unknown.append(name)
            continue
        boxes.append([xmin, ymin, xmax, ymax])
        labels.append(names.index(name))
    return (
        image_path,
        width,
        height,
        np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(labels, dtype=np.int64).reshape(-1),
        unknown,
    )
