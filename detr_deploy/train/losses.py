"""DETR's set criterion, plus the training-only queries that speed its convergence up.

:class:`SetCriterion` computes, for the final decoder layer and (``aux``) every earlier one:

* classification: cross-entropy over ``K + 1`` classes, the "no object" class weighted by
  ``eos_coef`` (most queries are unmatched, so without it they dominate the loss);
  ``iou_aware=True`` replaces the one-hot target of a matched query by a soft one that puts
  ``IoU(pred, target)`` on the class and the rest on "no object", so that scores rank
  detections by localisation quality (a softmax analogue of varifocal / IoU-aware losses);
* L1 on normalised ``(cx, cy, w, h)`` and ``1 - GIoU`` of the matched boxes, summed and
  divided by the number of target boxes in the batch.

:class:`TrainingQueries` builds queries that exist only during training and are fed to
:class:`~detr_deploy.model.detr.DETR` through its ``extra_query_content`` / ``extra_query_pos`` /
``self_attn_mask`` hooks (the deployed graph never sees them):

* **denoising groups** (DN-DETR, Li et al. 2022): each ground-truth box, jittered, and its
  label, sometimes flipped, become a query that must reconstruct the clean box and label.
  No matching is involved, so the decoder and heads get a stable, dense training signal
  from the first step instead of waiting for the Hungarian assignment to settle;
* **extra query groups** (Group DETR, Chen et al. 2022; with ``extra_group_k > 1`` the
  one-to-many branch of H-DETR, Jia et al. 2023): more copies of the learned queries, each
  group matched to the targets on its own, so that the shared decoder and heads see several
  positive queries per object.

Queries are laid out along Q as ``[denoising | extra groups | the model's own queries]``
(the model prepends the extra queries). The attention mask keeps every block to itself,
except that denoising queries may look at the model's own queries (they must not see each
other's groups, and the model's queries must never see the ground truth they encode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_deploy.model.box_ops import box_cxcywh_to_xyxy, box_xyxy_to_cxcywh
from detr_deploy.train.matcher import HungarianMatcher, Match, TargetBatch, elementwise_giou

__all__ = [
    "QueryLayout",
    "SetCriterion",
    "TrainingQueries",
    "paired_giou",
    "sine_box_embedding",
]


def paired_giou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Generalised IoU of corresponding xyxy boxes [N, 4] and [N, 4] -> [N] (not pairwise)."""
    return elementwise_giou(boxes_a, boxes_b)


def paired_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """IoU of corresponding xyxy boxes -> [N]."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]).clamp(min=0) * (boxes_a[:, 3] - boxes_a[:, 1]).clamp(min=0)
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]).clamp(min=0) * (boxes_b[:, 3] - boxes_b[:, 1]).clamp(min=0)
    wh = (torch.min(boxes_a[:, 2:], boxes_b[:, 2:]) - torch.max(boxes_a[:, :2], boxes_b[:, :2])).clamp(min=0)
    intersection = wh[:, 0] * wh[:, 1]
    return intersection / (area_a + area_b - intersection).clamp(min=1e-9)


@dataclass
class QueryLayout:
    """Where each kind of query sits along Q in the model's output."""

    num_queries: int  # the model's own (deployed) queries, last along Q
    dn_groups: int = 0
    dn_size: int = 0  # queries per denoising group (the batch's largest target count)
    extra_groups: int = 0
    extra_group_k: int = 1  # targets offered k times to each extra group (1 = one-to-one)
    dn_valid: Optional[Tensor] = None  # bool [B, dn_size]: slot j of image b holds a real target

    @property
    def num_dn(self) -> int:
        return self.dn_groups * self.dn_size

    @property
    def num_extra(self) -> int:
        return self.num_dn + self.extra_groups * self.num_queries

    @property
    def total(self) -> int:
        return self.num_extra + self.num_queries

    def blocks(self) -> List[Tuple[str, int, int]]:
        """(kind, start, stop) of every block along Q, kind in {"dn", "extra", "main"}."""
        out: List[Tuple[str, int, int]] = []
        start = 0
        for _ in range(self.dn_groups if self.dn_size else 0):
            out.append(("dn", start, start + self.dn_size))
            start += self.dn_size
        for _ in range(self.extra_groups):
            out.append(("extra", start, start + self.num_queries))
            start += self.num_queries
        out.append(("main", start, start + self.num_queries))
        return out

    def attention_mask(self, device=None) -> Optional[Tensor]:
        """bool [T, T], True = blocked; None when there are no extra queries."""
        if self.num_extra == 0:
            return None
        blocked = torch.ones((self.total, self.total), dtype=torch.bool, device=device)
        main_start = self.total - self.num_queries
        for kind, start, stop in self.blocks():
            blocked[start:stop, start:stop] = False
            if kind == "dn":
                blocked[start:stop, main_start:] = False
        return blocked


def sine_box_embedding(boxes: Tensor, num_feats: int = 32, temperature: float = 10000.0) -> Tensor:
    """Sine/cosine features of normalised boxes [..., 4] -> [..., 4 * num_feats]."""
    exponent = torch.arange(num_feats, dtype=torch.float32, device=boxes.device)
    frequencies = temperature ** (2 * torch.div(exponent, 2, rounding_mode="floor") / num_feats)
    angles = boxes.float()[..., None] * (2 * math.pi) / frequencies  # [..., 4, F]
    features = torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)
    return features.flatten(-2)


class TrainingQueries(nn.Module):
    """Training-only queries (denoising groups and extra matching groups); see module doc.

    Its parameters (a label embedding, a box-position MLP, the extra groups' query
    embeddings) are trained with the model but never exported.
    """

    def __init__(
        self,
        d_model: int,
        num_classes: int,
        num_queries: int,
        dn_groups: int = 0,
        box_noise: float = 0.4,
        label_noise: float = 0.2,
        extra_groups: int = 0,
        extra_group_k: int = 1,
        max_dn_queries: int = 200,
    ) -> None:
        super().__init__()
        if dn_groups < 0 or extra_groups < 0 or extra_group_k < 1:
            raise ValueError("dn_groups and extra_groups must be >= 0 and extra_group_k >= 1")
        self.d_model = d_model
        self.num_classes = num_classes
        self.num_queries = num_queries
        self.dn_groups = dn_groups
        self.box_noise = box_noise
        self.label_noise = label_noise
        self.extra_groups = extra_groups
        self.extra_group_k = extra_group_k
        self.max_dn_queries = max_dn_queries
        if dn_groups:
            self.label_embed = nn.Embedding(num_classes, d_model)
            self.box_pos = nn.Sequential(nn.Linear(128, d_model), nn.ReLU(), nn.Linear(d_model, d_model))
        if extra_groups:
            self.group_pos = nn.Embedding(extra_groups * num_queries, d_model)

    @property
    def active(self) -> bool:
        return self.dn_groups > 0 or self.extra_groups > 0

    def forward(
        self, targets, batch: int, device: torch.device
    ) -> Tuple[Optional[Tensor], Optional[Tensor], Optional[Tensor], QueryLayout]:
        """targets: list of dicts or a :class:`TargetBatch` ->
        (extra_query_content [B, E, d], extra_query_pos [B, E, d], self_attn_mask [T, T], layout)."""
        if self.dn_groups and not isinstance(targets, TargetBatch):
            targets = TargetBatch.from_targets(targets, device)
        dn_size = max(targets.sizes + [0]) if self.dn_groups else 0
        dn_groups = self.dn_groups
        if dn_size and dn_groups * dn_size > self.max_dn_queries:  # keep the decoder cost bounded
            dn_groups = max(1, self.max_dn_queries // dn_size)
        layout = QueryLayout(
            self.num_queries, dn_groups if dn_size else 0, dn_size, self.extra_groups, self.extra_group_k
        )
        contents: List[Tensor] = []
        positions: List[Tensor] = []
        if layout.num_dn:
            labels = targets.padded_labels[:, :dn_size]
            boxes = targets.padded_boxes[:, :dn_size]
            layout.dn_valid = targets.valid[:, :dn_size]
            labels = labels.repeat(1, dn_groups)  # [B, G*N], group-major
            boxes = boxes.repeat(1, dn_groups, 1)
            if self.label_noise > 0:
                flip = torch.rand(labels.shape, device=device) < self.label_noise
                labels = torch.where(flip, torch.randint_like(labels, self.num_classes), labels)
            if self.box_noise > 0:
                xyxy = box_cxcywh_to_xyxy(boxes)
                half = boxes[..., 2:].repeat(1, 1, 2) / 2  # move each edge by up to box_noise * half size
                xyxy = xyxy + (torch.rand_like(xyxy) * 2 - 1) * half * self.box_noise
                xyxy = xyxy.clamp(0.0, 1.0)
                xyxy = torch.cat((xyxy[..., :2], torch.max(xyxy[..., 2:], xyxy[..., :2] + 1e-4)), dim=-1)
                boxes = box_xyxy_to_cxcywh(xyxy)
            contents.append(self.label_embed(labels))
            positions.append(self.box_pos(sine_box_embedding(boxes)))
        if self.extra_groups:
            pos = self.group_pos.weight.unsqueeze(0).expand(batch, -1, -1)
            positions.append(pos)
            contents.append(torch.zeros_like(pos))
        if not positions:
            return None, None, None, layout
        return torch.cat(contents, 1), torch.cat(positions, 1), layout.attention_mask(device), layout


class SetCriterion(nn.Module):
    """Hungarian-matched DETR loss (see module doc). ``forward`` returns a dict of scalars,
    ``"loss"`` being the weighted total to back-propagate."""

    def __init__(
        self,
        num_classes: int,
        matcher: Optional[HungarianMatcher] = None,
        eos_coef: float = 0.1,
        weight_class: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        weight_dn: float = 1.0,
        weight_extra: float = 1.0,
        aux: bool = True,
        iou_aware: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher()
        self.eos_coef = eos_coef
        self.weight_class = weight_class
        self.weight_bbox = weight_bbox
        self.weight_giou = weight_giou
        self.weight_dn = weight_dn
        self.weight_extra = weight_extra
        self.aux = aux
        self.iou_aware = iou_aware
        class_weight = torch.ones(num_classes + 1)
        class_weight[-1] = eos_coef
        self.register_buffer("class_weight", class_weight, persistent=False)

    # ---------------------------------------------------------------- single set of queries
    def set_losses(
        self,
        logits: Tensor,
        boxes: Tensor,
        targets: Sequence[Dict[str, Tensor]],
        matches: Sequence[Match],
        num_boxes: float,
        supervised: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """(class, L1, GIoU) losses of one block of queries given its matches.

        logits [B, Q, K+1], boxes [B, Q, 4]; ``supervised`` bool [B, Q] restricts the
        classification loss to some queries (the padded denoising slots are not trained).
        """
        logits, boxes = logits.float(), boxes.float()
        device = logits.device
        batch_index = torch.cat([torch.full_like(pred, i) for i, (pred, _) in enumerate(matches)]).to(device)
        pred_index = torch.cat([pred for pred, _ in matches]).to(device)
        matched_boxes = boxes[batch_index, pred_index]
        target_boxes = (
            torch.cat([t["boxes"][tgt.to(t["boxes"].device)] for t, (_, tgt) in zip(targets, matches)])
            .to(device)
            .float()
        )
        target_labels = torch.cat(
            [t["labels"][tgt.to(t["labels"].device)] for t, (_, tgt) in zip(targets, matches)]
        ).to(device)

        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=device)
        classes[batch_index, pred_index] = target_labels
        log_probs = logits.log_softmax(-1)
        if self.iou_aware and len(pred_index):
            soft = F.one_hot(classes, self.num_classes + 1).float()
            with torch.no_grad():
                quality = paired_iou(box_cxcywh_to_xyxy(matched_boxes), box_cxcywh_to_xyxy(target_boxes)).clamp(0, 1)
            row = torch.zeros(len(pred_index), self.num_classes + 1, device=device)
            row[torch.arange(len(pred_index), device=device), target_labels] = quality
            row[:, -1] = 1 - quality
            soft[batch_index, pred_index] = row
            per_query = -(soft * log_probs).sum(-1)
        else:
            per_query = F.nll_loss(log_probs.transpose(1, 2), classes, reduction="none")
        weights = self.class_weight[classes]
        if supervised is not None:
            weights = weights * supervised.float()
        loss_class = (per_query * weights).sum() / weights.sum().clamp(min=1e-6)

        if len(pred_index) == 0:
            zero = boxes.sum() * 0.0
            return loss_class, zero, zero
        loss_bbox = F.l1_loss(matched_boxes, target_boxes, reduction="sum") / num_boxes
        giou = paired_giou(box_cxcywh_to_xyxy(matched_boxes), box_cxcywh_to_xyxy(target_boxes))
        loss_giou = (1 - giou).sum() / num_boxes
        return loss_class, loss_bbox, loss_giou

    def _weighted(self, parts: Tuple[Tensor, Tensor, Tensor]) -> Tensor:
        return self.weight_class * parts[0] + self.weight_bbox * parts[1] + self.weight_giou * parts[2]

    # ---------------------------------------------------------------- whole output (vectorised)
    def forward(
        self,
        outputs: Dict[str, Tensor],
        targets,
        layout: Optional[QueryLayout] = None,
    ) -> Dict[str, Tensor]:
        """All losses of all decoder layers and query blocks in a few batched operations.

        ``targets`` is a list of target dicts or a :class:`~detr_deploy.train.matcher.TargetBatch`.
        Returns ``loss`` (the total to back-propagate) and, detached, ``loss_class`` /
        ``loss_bbox`` / ``loss_giou`` (final layer, deployed queries), ``loss_dn`` and
        ``loss_extra`` (all layers, weighted).
        """
        logits_all = outputs["pred_logits"].float()[None]
        boxes_all = outputs["pred_boxes"].float()[None]
        if self.aux and "aux_logits" in outputs:
            logits_all = torch.cat((outputs["aux_logits"].float(), logits_all))
            boxes_all = torch.cat((outputs["aux_boxes"].float(), boxes_all))
        levels, batch_size, total_queries, num_logits = logits_all.shape
        device = logits_all.device
        if layout is None:
            layout = QueryLayout(total_queries)
        if total_queries != layout.total:
            raise ValueError(f"outputs have {total_queries} queries, layout expects {layout.total}")
        batch = targets if isinstance(targets, TargetBatch) else TargetBatch.from_targets(targets, device)
        blocks = layout.blocks()
        num_blocks = len(blocks)
        num_boxes = float(max(sum(batch.sizes), 1))
        factor = np.array(
            [
                self.weight_dn / max(layout.dn_groups, 1)
                if kind == "dn"
                else self.weight_extra
                if kind == "extra"
                else 1.0
                for kind, _, _ in blocks
            ]
        )

        # --- matching: every (layer, main/extra block) at once, one transfer to the CPU
        matched = [(index, kind, start) for index, (kind, start, _) in enumerate(blocks) if kind != "dn"]
        q = layout.num_queries
        selected_logits = torch.stack([logits_all[:, :, s : s + q] for _, _, s in matched], 1).flatten(0, 1)
        selected_boxes = torch.stack([boxes_all[:, :, s : s + q] for _, _, s in matched], 1).flatten(0, 1)
        repeats = [layout.extra_group_k if kind == "extra" else 1 for _, kind, _ in matched] * levels
        matches = self.matcher.match_blocks(selected_logits.detach(), selected_boxes.detach(), batch, repeats)

        columns: List[np.ndarray] = []  # rows: level, image, query, target (flat), block
        weights: List[np.ndarray] = []  # box-loss weight of each pair
        offsets = np.asarray(batch.offsets[:-1], dtype=np.int64)
        for level in range(levels):
            for j, (block, kind, start) in enumerate(matched):
                per_image = matches[level * len(matched) + j]
                count = sum(len(p) for p, _ in per_image)
                if count == 0:
                    continue
                image = np.concatenate([np.full(len(p), b, np.int64) for b, (p, _) in enumerate(per_image)])
                query = np.concatenate([p for p, _ in per_image]) + start
                target = np.concatenate([t for _, t in per_image]) + offsets[image]
                columns.append(np.stack([np.full(count, level), image, query, target, np.full(count, block)]))
                normaliser = count if kind == "extra" else num_boxes
                weights.append(np.full(count, factor[block] / normaliser))
        if layout.num_dn and sum(batch.sizes):
            image = np.concatenate([np.full(n, b, np.int64) for b, n in enumerate(batch.sizes)])
            slot = np.concatenate([np.arange(n, dtype=np.int64) for n in batch.sizes])
            target = slot + offsets[image]
            for block, (kind, start, _) in enumerate(blocks):
                if kind != "dn":
                    continue
                for level in range(levels):
                    columns.append(
                        np.stack([np.full(len(slot), level), image, slot + start, target, np.full(len(slot), block)])
                    )
                    weights.append(np.full(len(slot), factor[block] / num_boxes))
        if columns:
            pairs = torch.from_numpy(np.concatenate(columns, 1)).to(device)
            pair_weight = torch.from_numpy(np.concatenate(weights)).float().to(device)
        else:
            pairs = torch.zeros((5, 0), dtype=torch.int64, device=device)
            pair_weight = torch.zeros(0, device=device)
        level_i, image_i, query_i, target_i, block_i = pairs.unbind(0)

        # --- box losses of the matched pairs
        predicted = boxes_all[level_i, image_i, query_i]
        wanted = batch.boxes[target_i]
        l1 = (predicted - wanted).abs().sum(-1)
        giou = elementwise_giou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(wanted))
        slot_index = level_i * num_blocks + block_i
        zeros = torch.zeros(levels * num_blocks, device=device)
        l1_block = zeros.index_add(0, slot_index, l1 * pair_weight).view(levels, num_blocks)
        giou_block = zeros.index_add(0, slot_index, (1 - giou) * pair_weight).view(levels, num_blocks)

        # --- classification: every query of every layer; the weighted mean is taken per block
        classes = torch.full((levels, batch_size, total_queries), self.num_classes, dtype=torch.int64, device=device)
        labels = batch.labels[target_i]
        classes[level_i, image_i, query_i] = labels
        log_probs = logits_all.log_softmax(-1)
        per_query = -log_probs.gather(-1, classes.unsqueeze(-1)).squeeze(-1)
        if self.iou_aware and len(labels):
            with torch.no_grad():
                quality = paired_iou(box_cxcywh_to_xyxy(predicted), box_cxcywh_to_xyxy(wanted)).clamp(0, 1)
            chosen = log_probs[level_i, image_i, query_i]
            soft = -(quality * chosen.gather(-1, labels[:, None])[:, 0] + (1 - quality) * chosen[:, -1])
            per_query = per_query.index_put((level_i, image_i, query_i), soft)
        query_weight = self.class_weight[classes]
        if layout.num_dn:
            supervised = torch.ones((batch_size, total_queries), device=device)
            valid = layout.dn_valid.float()
            for kind, start, stop in blocks:
                if kind == "dn":
                    supervised[:, start:stop] = valid
            query_weight = query_weight * supervised
        block_of_query = torch.as_tensor(
            np.concatenate([np.full(stop - start, b) for b, (_, start, stop) in enumerate(blocks)]), device=device
        )
        numerator = torch.zeros((levels, num_blocks), device=device).index_add(
            1, block_of_query, (per_query * query_weight).sum(1)
        )
        denominator = torch.zeros((levels, num_blocks), device=device).index_add(1, block_of_query, query_weight.sum(1))
        block_factor = torch.as_tensor(factor, dtype=torch.float32, device=device)
        class_block = numerator / denominator.clamp(min=1e-6) * block_factor

        per_block = self.weight_class * class_block + self.weight_bbox * l1_block + self.weight_giou * giou_block
        main = num_blocks - 1
        kinds = [kind for kind, _, _ in blocks]
        dn_cols = [b for b, k in enumerate(kinds) if k == "dn"]
        extra_cols = [b for b, k in enumerate(kinds) if k == "extra"]
        detached = per_block.detach()
        return {
            "loss": per_block.sum(),
            "loss_class": class_block[-1, main].detach(),
            "loss_bbox": l1_block[-1, main].detach(),
            "loss_giou": giou_block[-1, main].detach(),
            "loss_dn": detached[:, dn_cols].sum() if dn_cols else torch.zeros((), device=device),
            "loss_extra": detached[:, extra_cols].sum() if extra_cols else torch.zeros((), device=device),
        }

    # ---------------------------------------------------------------- reference (slow, simple)
    def forward_reference(
        self, outputs: Dict[str, Tensor], targets: Sequence[Dict[str, Tensor]], layout: Optional[QueryLayout] = None
    ) -> Dict[str, Tensor]:
        """The same losses as :meth:`forward`, one block of queries and one layer at a time
        (a plain transcription of the definitions, kept to test the fast version against)."""
        logits_all = [outputs["pred_logits"]]
        boxes_all = [outputs["pred_boxes"]]
        if self.aux and "aux_logits" in outputs:
            logits_all = list(outputs["aux_logits"].unbind(0)) + logits_all
            boxes_all = list(outputs["aux_boxes"].unbind(0)) + boxes_all
        if layout is None:
            layout = QueryLayout(outputs["pred_logits"].shape[1])
        if outputs["pred_logits"].shape[1] != layout.total:
            raise ValueError(f"outputs have {outputs['pred_logits'].shape[1]} queries, layout expects {layout.total}")
        num_boxes = float(max(sum(int(t["labels"].shape[0]) for t in targets), 1))
        device = outputs["pred_logits"].device

        totals = {
            name: torch.zeros((), device=device)
            for name in ("loss_class", "loss_bbox", "loss_giou", "loss_dn", "loss_extra")
        }
        total = torch.zeros((), device=device)
        last = len(logits_all) - 1
        for level, (logits, boxes) in enumerate(zip(logits_all, boxes_all)):
            for kind, start, stop in layout.blocks():
                block_logits, block_boxes = logits[:, start:stop], boxes[:, start:stop]
                if kind == "main":
                    matches = self.matcher(block_logits, block_boxes, targets)
                    parts = self.set_losses(block_logits, block_boxes, targets, matches, num_boxes)
                    loss = self._weighted(parts)
                    if level == last:
                        totals["loss_class"] = parts[0].detach()
                        totals["loss_bbox"] = parts[1].detach()
                        totals["loss_giou"] = parts[2].detach()
                elif kind == "extra":
                    matches = self.matcher(block_logits, block_boxes, targets, repeats=layout.extra_group_k)
                    copies = [len(pred) for pred, _ in matches]
                    parts = self.set_losses(block_logits, block_boxes, targets, matches, float(max(sum(copies), 1)))
                    loss = self.weight_extra * self._weighted(parts)
                    totals["loss_extra"] = totals["loss_extra"] + loss.detach()
                else:  # denoising: slot j of the group answers target j, no matching
                    matches = []
                    for target in targets:
                        count = int(target["labels"].shape[0])
                        slots = torch.arange(count, dtype=torch.int64)
                        matches.append((slots, slots))
                    parts = self.set_losses(
                        block_logits, block_boxes, targets, matches, num_boxes, supervised=layout.dn_valid
                    )
                    loss = self.weight_dn * self._weighted(parts) / max(layout.dn_groups, 1)
                    totals["loss_dn"] = totals["loss_dn"] + loss.detach()
                total = total + loss
        totals["loss"] = total
        return totals
