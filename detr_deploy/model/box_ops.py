"""Bounding-box helpers. Boxes are ``[..., 4]`` tensors; formats are named in each function."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor


def box_cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """(cx, cy, w, h) -> (x0, y0, x1, y1), any leading shape."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=-1)


def box_xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """(x0, y0, x1, y1) -> (cx, cy, w, h), any leading shape."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack(((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Area of xyxy boxes [N, 4] -> [N]."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tuple[Tensor, Tensor]:
    """Pairwise IoU of xyxy boxes [N, 4] x [M, 4] -> (iou [N, M], union [N, M])."""
    area_a, area_b = box_area(boxes_a), box_area(boxes_b)
    top_left = torch.max(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.min(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    intersection = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - intersection
    return intersection / union, union


def generalized_box_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """Pairwise generalised IoU (Rezatofighi et al., 2019) of xyxy boxes -> [N, M] in [-1, 1]."""
    if not bool((boxes_a[:, 2:] >= boxes_a[:, :2]).all()) or not bool((boxes_b[:, 2:] >= boxes_b[:, :2]).all()):
        raise ValueError("generalized_box_iou needs xyxy boxes with x1 >= x0 and y1 >= y0")
    iou, union = box_iou(boxes_a, boxes_b)
    top_left = torch.min(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.max(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing
