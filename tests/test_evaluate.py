"""The evaluation CLI / API on tiny data sets whose AP is known by construction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor

from detr_deploy.data.annotations import write_coco, write_voc
from detr_deploy.evaluate import coco_eval_pycocotools, coco_map, evaluate, main
from detr_deploy.export.torchscript import ARTEFACT_FORMAT, ARTEFACT_FORMAT_VERSION, save_artefact

CLASSES = ["textbox", "radiobutton", "checkbox", "actionset", "image", "rating"]

# three images of different sizes (the fake model recognises an image by its size);
# "rating" never occurs, so it must be left out of the mean
IMAGES = [
    ((60, 80), [[5, 5, 30, 15], [40, 20, 70, 50]], [0, 4]),
    ((50, 90), [[10, 10, 20, 20], [30, 10, 40, 20], [50, 30, 85, 45]], [2, 1, 3]),
    ((70, 70), [[2, 2, 60, 12]], [0]),
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """COCO (annotations.json + images/) and VOC (images/*.xml) of the same three images."""
    root = tmp_path_factory.mktemp("tiny_cards")
    (root / "images").mkdir()
    records = []
    for index, ((height, width), boxes, labels) in enumerate(IMAGES):
        path = root / "images" / f"card_{index}.png"
        Image.new("RGB", (width, height), (200 + index * 10, 220, 240)).save(path)
        records.append(
            {"file_name": f"images/{path.name}", "width": width, "height": height, "boxes": boxes, "labels": labels}
        )
        write_voc(root / "images" / f"card_{index}.xml", path, width, height, boxes, labels, CLASSES)
    write_coco(root / "annotations.json", records, CLASSES)
    return root


class FakeModel(torch.nn.Module):
    """Returns fixed detections per image size (scriptable, so it can ship as an artefact)."""

    def __init__(self, detections: List[Tuple[Tuple[int, int], list, list, list]]) -> None:
        super().__init__()
        count = max(len(d[1]) for d in detections)
        self.register_buffer("sizes", torch.tensor([list(d[0]) for d in detections]))
        self.register_buffer("counts", torch.tensor([len(d[1]) for d in detections]))
        boxes = torch.zeros(len(detections), count, 4)
        scores = torch.zeros(len(detections), count)
        labels = torch.zeros(len(detections), count, dtype=torch.int64)
        for i, (_, b, s, found_labels) in enumerate(detections):
            if b:
                boxes[i, : len(b)] = torch.tensor(b, dtype=torch.float32)
                scores[i, : len(s)] = torch.tensor(s, dtype=torch.float32)
                labels[i, : len(found_labels)] = torch.tensor(found_labels)
        self.register_buffer("boxes", boxes)
        self.register_buffer("scores", scores)
        self.register_buffer("labels", labels)
        self.class_names = CLASSES

    def forward(self, image: Tensor, score_threshold: Optional[float] = None) -> Tuple[Tensor, Tensor, Tensor]:
        for i in range(self.sizes.shape[0]):
            if int(self.sizes[i, 0]) == image.shape[0] and int(self.sizes[i, 1]) == image.shape[1]:
                n = int(self.counts[i])
                return self.boxes[i, :n], self.scores[i, :n], self.labels[i, :n]
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)


def perfect():
    return FakeModel([(size, boxes, [0.9] * len(boxes), labels) for size, boxes, labels in IMAGES])


def shifted():
    """Every box moved right by its own width (+1 px): IoU 0 with every ground truth."""
    out = []
    for size, boxes, labels in IMAGES:
        moved = [[x0 + (x1 - x0) + 1, y0, x1 + (x1 - x0) + 1, y1] for x0, y0, x1, y1 in boxes]
        out.append((size, moved, [0.9] * len(boxes), labels))
    return FakeModel(out)


def artefact(model: FakeModel, path: Path) -> Path:
    metadata = {"format": ARTEFACT_FORMAT, "format_version": ARTEFACT_FORMAT_VERSION, "class_names": CLASSES}
    save_artefact(torch.jit.script(model), path, metadata)
    return path


@pytest.mark.parametrize("backend", ["pycocotools", "numpy"])
def test_perfect_and_shifted_predictions(dataset, backend):
    result = evaluate(perfect(), dataset, backend=backend)
    assert result["map"] == pytest.approx(1.0) and result["map50"] == pytest.approx(1.0)
    assert set(result["per_class"]) == {"textbox", "radiobutton", "checkbox", "actionset", "image"}  # no rating
    assert all(v == pytest.approx(1.0) for v in result["per_class"].values())
    assert result["num_images"] == 3 and result["num_boxes"] == 6
    result = evaluate(shifted(), dataset, backend=backend)
    assert result["map"] == 0.0 and result["map50"] == 0.0
    assert all(v == 0.0 for v in result["per_class"].values())


@pytest.mark.parametrize("backend", ["pycocotools", "numpy"])
def test_half_recall_is_51_of_101_recall_points(dataset, backend):
    """Textbox has two boxes; finding one of them (precision 1 up to recall 0.5) gives 51/101
    under COCO's 101-point interpolation; the other classes stay perfect."""
    detections = [(size, boxes, [0.9] * len(boxes), labels) for size, boxes, labels in IMAGES]
    detections[2] = (IMAGES[2][0], [], [], [])  # the textbox of the third image is missed
    result = evaluate(FakeModel(detections), dataset, backend=backend)
    assert result["per_class"]["textbox"] == pytest.approx(51 / 101, abs=1e-6)
    assert result["map50"] == pytest.approx((4 + 51 / 101) / 5, abs=1e-6)


def test_cli_prints_one_json_object_for_every_layout(dataset, tmp_path, capsys):
    model_path = artefact(perfect(), tmp_path / "perfect.pt")
    for data in (dataset, dataset / "annotations.json", dataset / "images"):  # COCO folder, COCO file, VOC
        assert main(["--data", str(data), "--model", str(model_path)]) == 0
        out = capsys.readouterr().out.strip()
        assert len(out.splitlines()) == 1
        result = json.loads(out)
        assert result["map"] == pytest.approx(1.0) and result["map50"] == pytest.approx(1.0), data
        assert set(result["per_class"]) == {"textbox", "radiobutton", "checkbox", "actionset", "image"}
    assert main(["--data", str(dataset), "--model", str(artefact(shifted(), tmp_path / "shifted.pt"))]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["map"] == 0.0 and result["map50"] == 0.0


def test_unknown_labels_are_reported_and_skipped(dataset, tmp_path, capsys):
    document = json.loads((dataset / "annotations.json").read_text())
    document["categories"].append({"id": 99, "name": "dropdown"})
    document["annotations"].append(
        {"id": 1000, "image_id": 1, "category_id": 99, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}
    )
    path = dataset / "with_unknown.json"
    path.write_text(json.dumps(document))
    assert main(["--data", str(path), "--model", str(artefact(perfect(), tmp_path / "p.pt"))]) == 0
    captured = capsys.readouterr()
    assert "dropdown" in captured.err
    assert json.loads(captured.out)["map50"] == pytest.approx(1.0)


def test_missing_model_is_an_error(dataset, tmp_path, capsys):
    assert main(["--data", str(dataset), "--model", str(tmp_path / "nope.pt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_numpy_map_matches_pycocotools_on_noisy_predictions():
    rng = np.random.default_rng(0)
    ground_truth, detections, sizes = [], [], []
    for _ in range(12):
        n = int(rng.integers(1, 8))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(5, 60, (n, 2))
        gt = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 4, n)
        jitter = gt + rng.normal(0, 4, gt.shape)
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 1)
        false = rng.uniform(0, 150, (3, 2))
        boxes = np.concatenate([jitter, np.concatenate([false, false + 20], 1)])
        det_labels = np.concatenate(
            [np.where(rng.random(n) < 0.85, labels, rng.integers(0, 4, n)), rng.integers(0, 4, 3)]
        )
        ground_truth.append((gt, labels))
        detections.append((boxes, rng.random(len(boxes)), det_labels))
        sizes.append((220, 220))
    ours = coco_map(ground_truth, detections, 4)
    theirs = coco_eval_pycocotools(ground_truth, detections, CLASSES[:4], sizes)
    assert 0.05 < ours["map"] < 0.95
    assert ours["map"] == pytest.approx(theirs["map"], abs=1e-6)
    assert ours["map50"] == pytest.approx(theirs["map50"], abs=1e-6)
    for cls in theirs["ap50_per_class"]:
        assert ours["ap50_per_class"][cls] == pytest.approx(theirs["ap50_per_class"][cls], abs=1e-6)
