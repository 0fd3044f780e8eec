"""COCO-style evaluation of a card detector: ``map`` (mAP@[.5:.95]), ``map50`` and AP@0.5 per class.

Command line (prints ONE JSON object on stdout; warnings go to stderr)::

    python -m detr_deploy.evaluate --data PATH [--model PATH] [--threshold 0.001] [--max-images N]

``--data``: a COCO JSON file, a folder holding ``annotations.json`` (+ ``images/``), or a
folder of images each with a Pascal VOC XML beside it (labelImg's layout).
``--model``: an exported artefact ``.pt`` (TorchScript, run through its
``forward(image_uint8_hwc, score_threshold)``) or a training checkpoint ``.pth``; default
``data/models/demo.pt``.

Classes are matched by name. Classes without any ground-truth box in the data set are
left out of the mean (and of ``per_class``); labels the model does not know are reported
on stderr and skipped. The metrics come from pycocotools (``COCOeval``, bbox, maxDets 100,
area "all"); :func:`coco_map` is a dependency-free re-implementation of the same rules used
for validation during training (where pycocotools may be missing) and checked against it in
the tests.

Python: ``evaluate(model_or_path, data_path, ...) -> dict``. ``model_or_path`` may be a path,
a :class:`~detr_deploy.model.detr.DETR`, a :class:`~detr_deploy.model.pipeline.DetectionPipeline`, a
TorchScript module, or any callable ``f(image uint8 [H, W, 3] tensor, score_threshold) ->
(boxes xyxy [N, 4], scores [N], labels [N])`` (pass ``class_names=`` or give it a
``class_names`` attribute).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from detr_deploy.cli import add_model_argument
from detr_deploy.paths import MODELS_DIR, relative

__all__ = ["DEFAULT_MODEL", "load_detector", "evaluate", "coco_map", "coco_eval_pycocotools", "main"]

DEFAULT_MODEL = MODELS_DIR / "demo.pt"
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)

PathLike = Union[str, os.PathLike]
# one image's ground truth / detections: boxes xyxy [N, 4], labels [N] (+ scores [N])
GroundTruth = Tuple[np.ndarray, np.ndarray]
Detections = Tuple[np.ndarray, np.ndarray, np.ndarray]


# ------------------------------------------------------------------------------ metrics
def box_iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """IoU of xyxy boxes [N, 4] x [M, 4] in pixels (COCO convention, no +1 on widths)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    wh = np.clip(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None)
    intersection = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def greedy_match(ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """COCO's matching at one IoU threshold: detections (rows, already in descending score) each
    claim the unclaimed ground-truth box (column) they overlap most, if that IoU is at least
    ``iou_threshold``; of equal IoUs the last box wins, as in pycocotools. Returns the claimed
    column per row, -1 for none."""
    claimed_by = np.full(ious.shape[0], -1, dtype=np.int64)
    taken = np.zeros(ious.shape[1], dtype=bool)
    floor = min(iou_threshold, 1 - 1e-10)
    for row in range(ious.shape[0]):
        candidates = np.where(taken, -1.0, ious[row])
        if candidates.size == 0:
            continue
        best = candidates.size - 1 - int(np.argmax(candidates[::-1]))
        if candidates[best] >= floor:
            claimed_by[row] = best
            taken[best] = True
    return claimed_by


def coco_map(
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detections],
    num_classes: int,
    max_dets: int = 100,
) -> Dict[str, object]:
    """COCO bbox AP without pycocotools (same matching, 101-point interpolation, maxDets per
    image and class, area "all", no crowd boxes).

    Returns ``{"map", "map50", "ap50_per_class": {index: AP}, "ap_per_class": {index: AP}}``
    over the classes that have ground truth (others are left out of the means).
    """
    if len(ground_truth) != len(detections):
        raise ValueError("need one detections tuple per ground-truth image")
    ap = {}  # class -> [10] AP per IoU threshold
    for cls in range(num_classes):
        num_gt = sum(int((labels == cls).sum()) for _, labels in ground_truth)
        if num_gt == 0:
            continue
        scores_all: List[np.ndarray] = []
        matched_all: List[np.ndarray] = []  # [10, n] bool per threshold
        for (gt_boxes, gt_labels), (dt_boxes, dt_scores, dt_labels) in zip(ground_truth, detections):
            gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)[np.asarray(gt_labels) == cls]
            keep = np.asarray(dt_labels) == cls
            dt = np.asarray(dt_boxes, dtype=np.float64).reshape(-1, 4)[keep]
            sc = np.asarray(dt_scores, dtype=np.float64)[keep]
            order = np.argsort(-sc, kind="mergesort")[:max_dets]
            dt, sc = dt[order], sc[order]
            ious = box_iou_matrix(dt, gt)
            matched = np.stack([greedy_match(ious, threshold) >= 0 for threshold in IOU_THRESHOLDS]).reshape(
                len(IOU_THRESHOLDS), len(dt)
            )
            scores_all.append(sc)
            matched_all.append(matched)
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        matched = np.concatenate(matched_all, axis=1) if matched_all else np.zeros((10, 0), bool)
        order = np.argsort(-scores, kind="mergesort")
        matched = matched[:, order]
        per_threshold = np.zeros(len(IOU_THRESHOLDS))
        for t in range(len(IOU_THRESHOLDS)):
            tp = np.cumsum(matched[t]).astype(np.float64)
            fp = np.cumsum(~matched[t]).astype(np.float64)
            recall = tp / num_gt
            precision = tp / np.maximum(tp + fp, np.spacing(1))
            for i in range(len(precision) - 1, 0, -1):  # precision envelope
                if precision[i] > precision[i - 1]:
                    precision[i - 1] = precision[i]
            indices = np.searchsorted(recall, RECALL_POINTS, side="left")
            sampled = np.zeros(len(RECALL_POINTS))
            valid = indices < len(precision)
            sampled[valid] = precision[indices[valid]]
            per_threshold[t] = sampled.mean()
        ap[cls] = per_threshold
    if not ap:
        return {"map": 0.0, "map50": 0.0, "ap50_per_class": {}, "ap_per_class": {}}
    return {
        "map": float(np.mean([v.mean() for v in ap.values()])),
        "map50": float(np.mean([v[0] for v in ap.values()])),
        "ap50_per_class": {c: float(v[0]) for c, v in ap.items()},
        "ap_per_class": {c: float(v.mean()) for c, v in ap.items()},
    }


def match_to_ground_truth(
    boxes, scores, labels, gt_boxes, gt_labels, iou_threshold: float = 0.5
) -> Dict[str, np.ndarray]:
    """Match one image's detections to its ground truth the way COCO does at one IoU threshold.

    Detections are taken in descending score; each claims the unclaimed ground-truth box of its
    class with the highest IoU, if that IoU is at least ``iou_threshold``. Returns numpy arrays:

    * ``det_gt`` [N]: index of the matched ground-truth box, -1 for a false positive;
    * ``det_iou`` [N]: best IoU of the detection with any ground-truth box of its class
      (a false positive with 0.1-0.5 sits on a real element but is mislocalised or a duplicate);
    * ``gt_matched`` [M]: whether a detection claimed the box (False: missed);
    * ``gt_best_iou`` [M]: best IoU with any detection of the same class;
    * ``gt_best_any_iou`` [M] and ``gt_best_any_label`` [M]: best IoU with a detection of *any*
      class, and that detection's label (-1 if none): a missed box found under the wrong class.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    iou = box_iou_matrix(boxes, gt_boxes)
    same_class = labels[:, None] == gt_labels[None, :]
    class_iou = np.where(same_class, iou, 0.0)
    order = np.argsort(-scores, kind="stable")
    det_gt = np.full(len(boxes), -1, dtype=np.int64)
    det_gt[order] = greedy_match(class_iou[order], iou_threshold)
    gt_matched = np.zeros(len(gt_boxes), dtype=bool)
    gt_matched[det_gt[det_gt >= 0]] = True
    empty = np.zeros(len(gt_boxes))
    return {
        "det_gt": det_gt,
        "det_iou": class_iou.max(axis=1) if len(gt_boxes) else np.zeros(len(boxes)),
        "gt_matched": gt_matched,
        "gt_best_iou": class_iou.max(axis=0) if len(boxes) else empty,
        "gt_best_any_iou": iou.max(axis=0) if len(boxes) else empty,
        "gt_best_any_label": labels[iou.argmax(axis=0)] if len(boxes) else np.full(len(gt_boxes), -1, np.int64),
    }


def precision_recall(detections, ground_truth, thresholds: Sequence[float], iou_threshold: float = 0.5) -> List[dict]:
    """Precision, recall and F1 at IoU ``iou_threshold`` for each score threshold, over a data set.

    ``detections``: per image ``(boxes, scores, labels)``, computed once at a low threshold;
    ``ground_truth``: per image ``(boxes, labels)``. Returns one dict per threshold with
    ``threshold, detections, true_positives, false_positives, missed, precision, recall, f1``.
    """
    rows = []
    total_gt = int(sum(len(np.asarray(labels).reshape(-1)) for _, labels in ground_truth))
    for threshold in thresholds:
        tp = fp = 0
        for (boxes, scores, labels), (gt_boxes, gt_labels) in zip(detections, ground_truth):
            keep = np.asarray(scores).reshape(-1) > threshold
            match = match_to_ground_truth(
                np.asarray(boxes).reshape(-1, 4)[keep],
                np.asarray(scores).reshape(-1)[keep],
                np.asarray(labels).reshape(-1)[keep],
                gt_boxes,
                gt_labels,
                iou_threshold,
            )
            tp += int((match["det_gt"] >= 0).sum())
            fp += int((match["det_gt"] < 0).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / total_gt if total_gt else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(
            {
                "threshold": float(threshold),
                "detections": tp + fp,
                "true_positives": tp,
                "false_positives": fp,
                "missed": total_gt - tp,
                "precision": precision,
                "recall": recall,
                "f1": f1,
            }
        )
    return rows


def coco_eval_pycocotools(
    ground_truth: Sequence[GroundTruth],
    detections: Sequence[Detections],
    class_names: Sequence[str],
    image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
) -> Dict[str, object]:
    """The same numbers as :func:`coco_map`, computed by pycocotools' COCOeval."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    present = sorted({int(label) for _, labels in ground_truth for label in np.asarray(labels).tolist()})
    if not present:
        return {"map": 0.0, "map50": 0.0, "ap50_per_class": {}, "ap_per_class": {}}
    images, annotations, results = [], [], []
    for index, (gt_boxes, gt_labels) in enumerate(ground_truth):
        height, width = image_sizes[index] if image_sizes is not None else (1, 1)
        images.append({"id": index + 1, "width": int(width), "height": int(height), "file_name": str(index)})
        for box, label in zip(np.asarray(gt_boxes).reshape(-1, 4).tolist(), np.asarray(gt_labels).tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    for index, (boxes, scores, labels) in enumerate(detections):
        for box, score, label in zip(
            np.asarray(boxes).reshape(-1, 4).tolist(), np.asarray(scores).tolist(), np.asarray(labels).tolist()
        ):
            if int(label) not in present:
                continue
            results.append(
                {
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": float(score),
                }
            )
    categories = [{"id": c + 1, "name": class_names[c]} for c in present]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        if not results:
            return {
                "map": 0.0,
                "map50": 0.0,
                "ap50_per_class": {c: 0.0 for c in present},
                "ap_per_class": {c: 0.0 for c in present},
            }
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.catIds = [c + 1 for c in present]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    area_all = list(evaluator.params.areaRngLbl).index("all")
    max_dets = len(evaluator.params.maxDets) - 1
    ap_per_class, ap50_per_class = {}, {}
    for k, cls in enumerate(present):
        p = precision[:, :, k, area_all, max_dets]
        per_threshold = [float(np.mean(p[t][p[t] > -1])) if (p[t] > -1).any() else 0.0 for t in range(p.shape[0])]
        ap_per_class[cls] = float(np.mean(per_threshold))
        ap50_per_class[cls] = per_threshold[0]
    return {
        "map": float(evaluator.stats[0]),
        "map50": float(evaluator.stats[1]),
        "ap50_per_class": ap50_per_class,
        "ap_per_class": ap_per_class,
    }


# ------------------------------------------------------------------------------ models
class _Detector:
    """Uniform wrapper: ``detect(uint8 [H, W, 3] ndarray) -> (boxes, scores, labels) ndarrays``."""

    def __init__(self, function: Callable, class_names: Sequence[str], description: str) -> None:
        self.function = function
        self.class_names = list(class_names)
        self.description = description

    def detect(self, image: np.ndarray, score_threshold: float) -> Detections:
        with torch.no_grad():
            boxes, scores, labels = self.function(torch.from_numpy(np.ascontiguousarray(image)), score_threshold)
        return (
            np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            np.asarray(scores, dtype=np.float64).reshape(-1),
            np.asarray(labels, dtype=np.int64).reshape(-1),
        )


def load_detector(
    model_or_path=None,
    class_names: Optional[Sequence[str]] = None,
    min_size: Optional[int] = None,
    max_size: Optional[int] = None,
) -> _Detector:
    """Wrap a path (.pt artefact / .pth checkpoint), a DETR, a pipeline or a callable."""
    from detr_deploy.export.torchscript import make_pipeline
    from detr_deploy.model.detr import DETR

    if model_or_path is None:
        model_or_path = DEFAULT_MODEL
    if isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"model not found: {path}")
        if path.suffix == ".pth":
            from detr_deploy.model.checkpoint import load_model, read_state_dict

            _, extra = read_state_dict(path)
            pipeline_settings = dict(extra.get("pipeline") or {})
            pipeline_settings.pop("score_threshold", None)
            if min_size is not None:
                pipeline_settings["min_size"] = min_size
            if max_size is not None:
                pipeline_settings["max_size"] = max_size
            model = load_model(path)
            pipeline = make_pipeline(model, **pipeline_settings)
            return _Detector(pipeline, class_names or model.config.class_names, relative(path))
        from detr_deploy.export.torchscript import load_artefact

        module, metadata = load_artefact(path)
        return _Detector(module, class_names or metadata["class_names"], relative(path))
    if isinstance(model_or_path, DETR):
        settings = {k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
        return _Detector(
            make_pipeline(model_or_path, **settings),
            class_names or model_or_path.config.class_names,
            type(model_or_path).__name__,
        )
    names = class_names or getattr(model_or_path, "class_names", None)
    if names is None and hasattr(model_or_path, "model") and hasattr(model_or_path.model, "config"):
        names = model_or_path.model.config.class_names
    if names is None:
        raise ValueError("pass class_names= for a model object that does not carry them")
    return _Detector(model_or_path, names, type(model_or_path).__name__)


# ------------------------------------------------------------------------------ evaluation
def evaluate(
    model_or_path=None,
    data_path: PathLike = "",
    score_threshold: float = 0.001,
    class_names: Optional[Sequence[str]] = None,
    max_images: Optional[int] = None,
    backend: str = "pycocotools",
    min_size: Optional[int] = None,
    max_size: Optional[int] = None,
    progress: bool = False,
) -> Dict[str, object]:
    """Evaluate on a labelled data set; returns ``{"map", "map50", "per_class", ...}``.

    ``per_class`` maps class name -> AP@0.5 for the classes with ground truth;
    ``per_class_map`` the same for AP@[.5:.95]. ``backend="numpy"`` uses :func:`coco_map`.
    """
    from detr_deploy.data.datasets import read_labelled

    detector = load_detector(model_or_path, class_names, min_size, max_size)
    names = detector.class_names
    records = read_labelled(data_path, names)
    if max_images is not None:
        records = records[:max_images]
    if not records:
        raise ValueError(f"{data_path}: no images to evaluate")
    ground_truth: List[GroundTruth] = []
    detections: List[Detections] = []
    sizes: List[Tuple[int, int]] = []
    start = time.perf_counter()
    iterator = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc="evaluate", file=sys.stderr)
    for image_path, boxes, labels in iterator:
        with Image.open(image_path) as image:
            pixels = np.array(image.convert("RGB"), dtype=np.uint8)
        detections.append(detector.detect(pixels, score_threshold))
        ground_truth.append((boxes, labels))
        sizes.append(pixels.shape[:2])
    seconds = time.perf_counter() - start
    if backend == "pycocotools":
        metrics = coco_eval_pycocotools(ground_truth, detections, names, sizes)
    elif backend == "numpy":
        metrics = coco_map(ground_truth, detections, len(names))
    else:
        raise ValueError(f"backend must be 'pycocotools' or 'numpy', got {backend!r}")
    return {
        "map": round(float(metrics["map"]), 6),
        "map50": round(float(metrics["map50"]), 6),
        "per_class": {names[c]: round(v, 6) for c, v in sorted(metrics["ap50_per_class"].items())},
        "per_class_map": {names[c]: round(v, 6) for c, v in sorted(metrics["ap_per_class"].items())},
        "num_images": len(records),
        "num_boxes": int(sum(len(labels) for _, labels in ground_truth)),
        "score_threshold": score_threshold,
        "model": detector.description,
        "data": relative(data_path) if str(data_path) else "",
        "backend": backend,
        "seconds_per_image": round(seconds / len(records), 4),
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m detr_deploy.evaluate",
        description="COCO mAP of a card detector on a labelled data set; prints one JSON object.",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="COCO .json, folder with annotations.json + images/, or folder of images + VOC .xml",
    )
    source = parser.add_mutually_exclusive_group()
    add_model_argument(source, default=None, what=f"exported artefact .pt (default: {relative(DEFAULT_MODEL)})")
    source.add_argument(
        "--checkpoint", metavar="FILE", help="weights .pth saved by detr_deploy (training's checkpoint.pth)"
    )
    parser.add_argument("--threshold", type=float, default=0.001, help="score threshold for detections (low for AP)")
    parser.add_argument("--max-images", type=int, default=None, help="evaluate only the first N images")
    parser.add_argument("--backend", choices=["pycocotools", "numpy"], default="pycocotools")
    parser.add_argument("--min-size", type=int, default=None, help="override the resize (checkpoints only)")
    parser.add_argument("--max-size", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    args = parser.parse_args(argv)
    try:
        result = evaluate(
            args.checkpoint or args.model,
            args.data,
            args.threshold,
            max_images=args.max_images,
            backend=args.backend,
            min_size=args.min_size,
            max_size=args.max_size,
            progress=args.progress,
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
