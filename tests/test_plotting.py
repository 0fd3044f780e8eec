"""The ground-truth matching and the figure helpers of detr_deploy.plotting, on hand-made cases."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from detr_deploy.data.classes import CLASS_NAMES
from detr_deploy.evaluate import box_iou_matrix, match_to_ground_truth, precision_recall
from detr_deploy.plotting import decoder_cross_attention, plot_attention, plot_ground_truth_comparison

GT_BOXES = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 0, 60, 10]], np.float32)
GT_LABELS = np.array([0, 1, 2])


def test_iou_matrix_known_values():
    iou = box_iou_matrix([[0, 0, 10, 10], [5, 0, 15, 10]], [[0, 0, 10, 10], [100, 100, 110, 110]])
    assert iou == pytest.approx(np.array([[1.0, 0.0], [50 / 150, 0.0]]))
    assert box_iou_matrix(np.zeros((0, 4)), GT_BOXES).shape == (0, 3)


def test_match_true_false_missed_and_wrong_class():
    boxes = np.array(
        [
            [0, 0, 10, 10],  # perfect textbox -> gt 0
            [0, 0, 10, 10],  # duplicate of gt 0, lower score -> false positive with IoU 1
            [25, 20, 45, 40],  # radiobutton shifted by 5 px: IoU 15*20 / (2*400 - 300) = 0.6 -> gt 1
            [50, 0, 60, 10],  # right box, wrong class (textbox on a checkbox) -> false positive, IoU 0
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.95, 0.7])
    labels = np.array([0, 0, 1, 0])
    match = match_to_ground_truth(boxes, scores, labels, GT_BOXES, GT_LABELS)
    assert match["det_gt"].tolist() == [0, -1, 1, -1]
    assert match["det_iou"] == pytest.approx([1.0, 1.0, 0.6, 0.0])
    assert match["gt_matched"].tolist() == [True, True, False]
    assert match["gt_best_iou"] == pytest.approx([1.0, 0.6, 0.0])
    assert match["gt_best_any_iou"][2] == pytest.approx(1.0) and match["gt_best_any_label"][2] == 0


def test_match_takes_detections_in_score_order():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32)
    # the better-placed box scores lower: the higher score claims the ground truth first
    match = match_to_ground_truth(boxes, [0.5, 0.9], [0, 0], GT_BOXES[:1], GT_LABELS[:1])
    assert match["det_gt"].tolist() == [-1, 0]


def test_match_with_nothing_on_either_side():
    none = match_to_ground_truth(np.zeros((0, 4)), [], [], GT_BOXES, GT_LABELS)
    assert none["gt_matched"].tolist() == [False] * 3 and none["gt_best_any_label"].tolist() == [-1] * 3
    empty = match_to_ground_truth(GT_BOXES, [0.9, 0.9, 0.9], GT_LABELS, np.zeros((0, 4)), [])
    assert empty["det_gt"].tolist() == [-1] * 3 and empty["det_iou"].tolist() == [0.0] * 3


def test_precision_recall_counts():
    detections = [
        (GT_BOXES, np.array([0.9, 0.6, 0.3]), GT_LABELS),
        (np.array([[0, 0, 5, 5]], np.float32), np.array([0.95]), np.array([0])),
    ]
    ground_truth = [(GT_BOXES, GT_LABELS), (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))]
    low, mid, high = precision_recall(detections, ground_truth, [0.1, 0.5, 0.99])
    assert (low["true_positives"], low["false_positives"], low["missed"]) == (3, 1, 0)
    assert low["precision"] == pytest.approx(0.75) and low["recall"] == pytest.approx(1.0)
    assert (mid["true_positives"], mid["false_positives"], mid["missed"]) == (2, 1, 1)
    assert mid["f1"] == pytest.approx(2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert high["detections"] == 0 and high["precision"] == 1.0 and high["recall"] == 0.0


def test_figures_draw():
    image = np.full((60, 80, 3), 255, np.uint8)
    match = match_to_ground_truth(GT_BOXES[:2], [0.9, 0.4], [0, 2], GT_BOXES, GT_LABELS)
    fig, axes = plt.subplots(1, 2)
    plot_ground_truth_comparison(
        axes[0],
        image,
        GT_BOXES[:2],
        [0.9, 0.4],
        [0, 2],
        GT_BOXES,
        GT_LABELS,
        match,
        CLASS_NAMES,
        crop=(0, 0, 45, 45),
        title="t",
    )
    assert axes[0].get_xlim() == (0, 45) and axes[0].get_ylim() == (45, 0)
    texts = [text.get_text() for text in axes[0].texts]
    assert (
        "missed radiobutton" in texts and "missed checkbox" in texts and any(t.startswith("FP checkbox") for t in texts)
    )
    plot_attention(
        axes[1],
        image,
        np.random.default_rng(0).random((3, 4)),
        box=GT_BOXES[0],
        label=0,
        score=0.9,
        class_names=CLASS_NAMES,
    )
    assert axes[1].get_title() == "textbox 0.90"
    plt.close(fig)


def test_decoder_cross_attention_sums_to_one():
    from detr_deploy.model.detr import detr_small

    model = detr_small(seed=0, num_queries=5, num_classes=6).eval()
    weights, outputs = decoder_cross_attention(model, torch.rand(1, 3, 64, 96))
    assert weights.shape == (5, 4, 6)  # stride 16
    assert torch.allclose(weights.sum((1, 2)), torch.ones(5), atol=1e-5)
    assert outputs["pred_logits"].shape[:2] == (1, 5)


def test_declutter_tags_hides_overlaps_and_pulls_tags_inside():
    from detr_deploy.plotting import declutter_tags, plot_detections

    image = np.full((100, 200, 3), 255, np.uint8)
    # two boxes at the same corner (their tags overlap) and one at the right edge (its tag sticks out)
    boxes = np.array([[10, 40, 60, 60], [11, 41, 61, 61], [180, 70, 199, 90]], np.float32)
    fig, ax = plt.subplots(figsize=(4, 2))
    plot_detections(ax, image, boxes, [0, 1, 2], CLASS_NAMES, scores=[0.9, 0.8, 0.7], fontsize=8)
    fig.tight_layout()
    assert declutter_tags(fig) == 1
    renderer = fig.canvas.get_renderer()
    visible = [text for text in ax.texts if text.get_visible()]
    assert [text.get_text() for text in visible] == ["textbox 0.90", "checkbox 0.70"]
    frame = ax.get_window_extent(renderer)
    for text in visible:  # independent check: every kept tag lies inside the axes, none overlap
        extent = text.get_window_extent(renderer)
        assert frame.x0 - 0.5 <= extent.x0 and extent.x1 <= frame.x1 + 0.5
    assert not visible[0].get_window_extent(renderer).overlaps(visible[1].get_window_extent(renderer))
    plt.close(fig)


def test_declutter_tags_hides_tags_of_boxes_outside_a_zoomed_view():
    from detr_deploy.plotting import declutter_tags, plot_detections

    image = np.full((100, 200, 3), 255, np.uint8)
    boxes = np.array([[10, 20, 40, 40], [150, 80, 190, 95]], np.float32)  # the second lies outside the crop
    fig, ax = plt.subplots(figsize=(3, 2))
    plot_detections(ax, image, boxes, [0, 1], CLASS_NAMES, fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_ylim(60, 0)
    fig.tight_layout()
    assert declutter_tags(fig) == 0
    assert [text.get_text() for text in ax.texts if text.get_visible()] == [CLASS_NAMES[0]]
    plt.close(fig)
