"""Hungarian matching between DETR's predictions and the ground-truth boxes of each image.

DETR predicts a fixed set of ``Q`` boxes; training first decides which prediction answers
which ground-truth object by solving a linear assignment problem per image
(``scipy.optimize.linear_sum_assignment``) on the cost

    C[q, t] = w_class * (-p_q(label_t)) + w_bbox * |b_q - b_t|_1 + w_giou * (-GIoU(b_q, b_t))

with ``p_q`` the softmax class probabilities of prediction ``q`` and boxes as normalised
``(cx, cy, w, h)``. Unmatched predictions are trained to say "no object".

``repeats > 1`` gives a one-to-many assignment (H-DETR's hybrid branch): every target is
offered ``repeats`` times, so up to ``repeats`` predictions are matched to it. It is only
used for training-only query groups; the deployed queries always use one-to-one matching.

Targets are dicts ``{"labels": int64 [N], "boxes": float [N, 4] cxcywh normalised}``.
For speed, :meth:`HungarianMatcher.match_blocks` matches several sets of queries (decoder
layers, query groups) in one go: the costs of every image against its own targets only
(padded to the batch's largest target count) are computed in one batched GPU pass and
copied to the CPU once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from detr_deploy.model.box_ops import box_cxcywh_to_xyxy, generalized_box_iou

__all__ = ["HungarianMatcher", "TargetBatch", "matching_cost", "batched_matching_cost", "elementwise_giou", "Match"]

Match = Tuple[Tensor, Tensor]  # (prediction indices int64 [M], target indices int64 [M])


def elementwise_giou(boxes_a: Tensor, boxes_b: Tensor, eps: float = 1e-9) -> Tensor:
    """Generalised IoU of xyxy boxes ``[..., 4]``, broadcasting the leading dimensions."""
    area_a = (boxes_a[..., 2] - boxes_a[..., 0]).clamp(min=0) * (boxes_a[..., 3] - boxes_a[..., 1]).clamp(min=0)
    area_b = (boxes_b[..., 2] - boxes_b[..., 0]).clamp(min=0) * (boxes_b[..., 3] - boxes_b[..., 1]).clamp(min=0)
    wh = (torch.min(boxes_a[..., 2:], boxes_b[..., 2:]) - torch.max(boxes_a[..., :2], boxes_b[..., :2])).clamp(min=0)
    intersection = wh[..., 0] * wh[..., 1]
    union = area_a + area_b - intersection
    iou = intersection / union.clamp(min=eps)
    outer = (torch.max(boxes_a[..., 2:], boxes_b[..., 2:]) - torch.min(boxes_a[..., :2], boxes_b[..., :2])).clamp(min=0)
    enclosing = (outer[..., 0] * outer[..., 1]).clamp(min=eps)
    return iou - (enclosing - union) / enclosing


@dataclass
class TargetBatch:
    """A batch's targets, flat and padded, built once per step and shared by the matcher,
    the criterion and the denoising queries."""

    labels: Tensor  # int64 [T], every image's labels one after the other
    boxes: Tensor  # float32 [T, 4] cxcywh
    sizes: List[int]  # targets per image
    offsets: List[int]  # start of each image in the flat tensors, len B + 1
    padded_labels: Tensor  # int64 [B, M] (M = max(sizes, 1)), 0 on padding
    padded_boxes: Tensor  # float32 [B, M, 4], a harmless box on padding
    valid: Tensor  # bool [B, M]

    @classmethod
    def from_targets(cls, targets: Sequence[Dict[str, Tensor]], device=None) -> "TargetBatch":
        device = (
            torch.device(device)
            if device is not None
            else (targets[0]["labels"].device if len(targets) else torch.device("cpu"))
        )
        sizes = [int(t["labels"].shape[0]) for t in targets]
        offsets = [0]
        for size in sizes:
            offsets.append(offsets[-1] + size)
        batch, width = len(targets), max(sizes + [1])
        if offsets[-1]:
            labels = torch.cat([t["labels"] for t in targets]).to(device, torch.int64)
            boxes = torch.cat([t["boxes"] for t in targets]).to(device, torch.float32)
        else:
            labels = torch.zeros(0, dtype=torch.int64, device=device)
            boxes = torch.zeros((0, 4), dtype=torch.float32, device=device)
        positions = torch.as_tensor(
            np.concatenate([np.arange(size) + b * width for b, size in enumerate(sizes)] + [np.zeros(0, np.int64)]),
            dtype=torch.int64,
        ).to(device)
        padded_labels = torch.zeros(batch * width, dtype=torch.int64, device=device)
        padded_boxes = torch.tensor([0.5, 0.5, 1.0, 1.0], device=device).repeat(batch * width, 1)
        valid = torch.zeros(batch * width, dtype=torch.bool, device=device)
        padded_labels[positions] = labels
        padded_boxes[positions] = boxes
        valid[positions] = True
        return cls(
            labels,
            boxes,
            sizes,
            offsets,
            padded_labels.view(batch, width),
            padded_boxes.view(batch, width, 4),
            valid.view(batch, width),
        )


def matching_cost(
    logits: Tensor,
    boxes: Tensor,
    target_labels: Tensor,
    target_boxes: Tensor,
    cost_class: float = 2.0,
    cost_bbox: float = 5.0,
    cost_giou: float = 2.0,
) -> Tensor:
    """Cost matrix [P, T] between P predictions (logits [P, K+1], boxes [P, 4] cxcywh)
    and T targets (labels [T], boxes [T, 4] cxcywh). Computed in float32."""
    probabilities = logits.float().softmax(-1)
    boxes, target_boxes = boxes.float(), target_boxes.float()
    cost = -cost_class * probabilities[:, target_labels]
    cost = cost + cost_bbox * torch.cdist(boxes, target_boxes, p=1)
    giou = generalized_box_iou(box_cxcywh_to_xyxy(boxes), box_cxcywh_to_xyxy(target_boxes))
    return cost - cost_giou * giou


def batched_matching_cost(
    logits: Tensor, boxes: Tensor, batch: TargetBatch, cost_class: float, cost_bbox: float, cost_giou: float
) -> Tensor:
    """Costs of N sets of queries against each image's own (padded) targets.

    logits [N, B, Q, K+1], boxes [N, B, Q, 4] -> [N, B, Q, M]; columns ``>= sizes[b]`` are padding.
    """
    n, b, q, _ = logits.shape
    width = batch.padded_labels.shape[1]
    probabilities = logits.float().softmax(-1)
    index = batch.padded_labels.view(1, b, 1, width).expand(n, b, q, width)
    cost = -cost_class * probabilities.gather(3, index)
    predicted = boxes.float().unsqueeze(3)  # [N, B, Q, 1, 4]
    wanted = batch.padded_boxes.view(1, b, 1, width, 4)
    cost = cost + cost_bbox * (predicted - wanted).abs().sum(-1)
    giou = elementwise_giou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(wanted))
    return cost - cost_giou * giou


def _assign(block: np.ndarray, size: int, repeats: int, num_queries: int) -> Tuple[np.ndarray, np.ndarray]:
    """Solve one image's assignment; -> (prediction indices, target indices), sorted by prediction."""
    copies = max(1, min(repeats, num_queries // size)) if size <= num_queries else 1
    if copies > 1:
        block = np.tile(block, (1, copies))
    if not np.isfinite(block).all():
        raise ValueError("matching cost is not finite (NaN/inf in predictions?)")
    rows, cols = linear_sum_assignment(block)
    order = np.argsort(rows, kind="stable")
    return rows[order].astype(np.int64), (cols[order] % size).astype(np.int64)


class HungarianMatcher:
    """One-to-one (or ``repeats``-to-one) assignment of predictions to targets, per image."""

    def __init__(self, cost_class: float = 2.0, cost_bbox: float = 5.0, cost_giou: float = 2.0) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("at least one matching cost weight must be non-zero")
        self.cost_class = cost_class
        self.cost_bbox = cost_bbox
        self.cost_giou = cost_giou

    def __repr__(self) -> str:
        return f"HungarianMatcher(cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou})"

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, boxes: Tensor, targets: Sequence[Dict[str, Tensor]], repeats: int = 1
    ) -> List[Match]:
        """logits [B, Q, K+1], boxes [B, Q, 4] -> one (pred_idx, tgt_idx) pair per image.

        Indices are int64 CPU tensors, sorted by prediction index; ``len`` is
        ``min(Q, repeats * N_i)``. With ``repeats > 1`` a target index appears up to
        ``repeats`` times (never more than ``Q`` predictions are matched in total).
        """
        if len(targets) != logits.shape[0]:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {logits.shape[0]}")
        batch = TargetBatch.from_targets(targets, logits.device)
        (result,) = self.match_blocks(logits[None], boxes[None], batch, [repeats])
        return [(torch.as_tensor(p), torch.as_tensor(t)) for p, t in result]

    @torch.no_grad()
    def match_blocks(
        self, logits: Tensor, boxes: Tensor, batch: TargetBatch, repeats: Sequence[int]
    ) -> List[List[Tuple[np.ndarray, np.ndarray]]]:
        """Match N sets of queries at once: logits [N, B, Q, K+1], boxes [N, B, Q, 4].

        Returns, for each of the N sets, one ``(pred_idx, tgt_idx)`` numpy pair per image
        (target indices local to the image). ``repeats[n]`` as in :meth:`__call__`.
        """
        n, b, q = logits.shape[:3]
        if any(r < 1 for r in repeats) or len(repeats) != n:
            raise ValueError(f"need one repeats >= 1 per block, got {list(repeats)}")
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        if sum(batch.sizes) == 0:
            return [[empty] * b for _ in range(n)]
        cost = batched_matching_cost(logits, boxes, batch, self.cost_class, self.cost_bbox, self.cost_giou)
        cost = cost.cpu().numpy()
        out: List[List[Tuple[np.ndarray, np.ndarray]]] = []
        for block in range(n):
            per_image = []
            for image, size in enumerate(batch.sizes):
                if size == 0:
                    per_image.append(empty)
                else:
                    per_image.append(_assign(cost[block, image, :, :size], size, repeats[block], q))
            out.append(per_image)
        return out
