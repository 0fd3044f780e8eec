"""The deployable pipeline: one RGB uint8 image in, detections out, all inside the graph.

:class:`DetectionPipeline` wraps any DETR-family model (anything returning
``{"pred_logits", "pred_boxes"}``) with the pre- and post-processing a service needs, so
that an exported artefact runs from C++ with nothing but pixels::

    image uint8 [H, W, 3] RGB
      -> resize (shorter side ``min_size``, longer side at most ``max_size``)
      -> ImageNet normalisation -> DETR -> softmax, drop "no object"
      -> boxes (cx, cy, w, h) normalised -> (x0, y0, x1, y1) in input pixels
      -> score threshold, optional top-k, sorted by score
    boxes float32 [N, 4], scores float32 [N], labels int64 [N]

It is written for ``torch.jit.script`` (every input size works) and also traces (at the
traced size only: see chapter 01).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_deploy.model.box_ops import box_cxcywh_to_xyxy

__all__ = ["DetectionPipeline", "IMAGENET_MEAN", "IMAGENET_STD", "Detections"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Detections = Tuple[Tensor, Tensor, Tensor]  # boxes [N, 4] float32, scores [N], labels [N] int64


class DetectionPipeline(nn.Module):
    """DETR with its image pipeline, ready to export. See the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        min_size: int = 800,
        max_size: int = 1333,
        score_threshold: float = 0.5,
        top_k: int = 0,
        antialias: bool = True,
        max_input_side: int = 8192,
    ) -> None:
        super().__init__()
        if min_size <= 0 or max_size < min_size:
            raise ValueError(f"need 0 < min_size <= max_size, got min_size={min_size}, max_size={max_size}")
        if not 0.0 <= score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in [0, 1), got {score_threshold}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = keep all), got {top_k}")
        self.model = model
        self.num_classes = num_classes
        self.min_size = min_size
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.top_k = top_k
        self.antialias = antialias
        self.max_input_side = max_input_side
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def check_image(self, image: Tensor) -> None:
        """Raise ValueError naming the problem unless ``image`` is uint8 [H, W, 3], non-empty."""
        if image.dim() != 3:
            raise ValueError(
                "image must be a 3-D uint8 tensor [H, W, 3] (RGB), got " + str(image.dim()) + " dimensions"
            )
        if image.shape[2] != 3:
            raise ValueError(
                "image must have 3 channels (RGB) in the last dimension, got "
                + str(image.shape[2])
                + "; convert greyscale or RGBA images to RGB first"
            )
        if image.dtype != torch.uint8:
            raise ValueError("image must have dtype uint8 (0-255), got " + str(image.dtype))
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError("image is empty: " + str(image.shape[0]) + "x" + str(image.shape[1]))
        if image.shape[0] > self.max_input_side or image.shape[1] > self.max_input_side:
            raise ValueError(
                "image "
                + str(image.shape[0])
                + "x"
                + str(image.shape[1])
                + " exceeds the limit of "
                + str(self.max_input_side)
                + " pixels per side"
            )

    def resized_size(self, height: int, width: int) -> Tuple[int, int]:
        """Size after resizing: shorter side ``min_size`` unless the longer would pass ``max_size``.

        Integer arithmetic only: ``(2 * a + b) // (2 * b)`` is ``a / b`` rounded half up and
        ``a // b`` is ``int(a / b)``, exactly, without float rounding; so TorchScript, eager and
        ``torch.export`` agree on every size, and the exported graph's shapes stay integer
        expressions (float ones made AOTInductor's compile many times slower).
        """
        if torch.jit.is_scripting():
            short_side = min(height, width)
            long_side = max(height, width)
            size = min(self.min_size, (2 * self.max_size * short_side + long_side) // (2 * long_side))
            size = max(size, 1)
            return size * height // short_side, size * width // short_side
        if torch.jit.is_tracing():
            # the tracer hands the sizes over as 0-d tensors; int() freezes them into the trace
            # (which is why a traced pipeline works at its example size only: chapter 01)
            return self._resized_size_symbolic(int(height), int(width))
        return self._resized_size_symbolic(height, width)

    @torch.jit.unused
    def _resized_size_symbolic(self, height: int, width: int) -> Tuple[int, int]:
        """The same arithmetic for eager and ``torch.export``: with dynamic height and width a
        Python ``min``/``max``/``if`` on them would become a guard and specialise the export,
        so ``torch.sym_min``/``sym_max`` build the expression instead. min(min_size, round(
        max_size * short / long)) is min_size exactly when the longer side stays within max_size."""
        short_side = torch.sym_min(height, width)
        long_side = torch.sym_max(height, width)
        size = torch.sym_min(self.min_size, (2 * self.max_size * short_side + long_side) // (2 * long_side))
        size = torch.sym_max(size, 1)
        return size * height // short_side, size * width // short_side

    def preprocess(self, image: Tensor) -> Tensor:
        """uint8 [H, W, 3] -> normalised float [3, h, w] at the model's input size."""
        self.check_image(image)
        height, width = self.resized_size(image.shape[0], image.shape[1])
        pixels = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
        pixels = F.interpolate(
            pixels, size=[height, width], mode="bilinear", align_corners=False, antialias=self.antialias
        )
        return ((pixels[0] / 255.0) - self.mean) / self.std

    def postprocess(
        self,
        logits: Tensor,
        boxes: Tensor,
        height: int,
        width: int,
        score_threshold: float,
        topk_order: bool = False,
    ) -> Detections:
        """One image's logits [Q, K+1] and boxes [Q, 4] -> detections in input pixels.

        Scores come out descending, ties in query order. ``topk_order`` gets that order from
        ``topk`` instead of a stable sort, for the ONNX export (no ONNX op for a stable sort;
        ONNX's TopK breaks ties by the lower index, which is the same order).
        """
        probabilities = logits.softmax(-1)[:, :-1]
        scores, labels = probabilities.max(-1)
        keep = scores > score_threshold
        scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
        if topk_order:
            scores, order = torch.topk(scores, scores.shape[0])
        else:
            scores, order = scores.sort(descending=True, stable=True)
        if self.top_k > 0:
            scores, order = scores[: self.top_k], order[: self.top_k]
        scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
        xyxy = box_cxcywh_to_xyxy(boxes[order]) * scale
        xyxy = torch.min(xyxy.clamp(min=0.0), scale)
        return xyxy.to(torch.float32), scores.to(torch.float32), labels[order].to(torch.int64)

    def _threshold(self, score_threshold: Optional[float]) -> float:
        if score_threshold is None:
            return self.score_threshold
        if score_threshold < 0.0 or score_threshold >= 1.0:
            raise ValueError("score_threshold must be in [0, 1), got " + str(score_threshold))
        return score_threshold

    def forward(self, image: Tensor, score_threshold: Optional[float] = None) -> Detections:
        """Detect objects in one uint8 RGB image [H, W, 3]; threshold defaults to the exported one."""
        threshold = self._threshold(score_threshold)
        pixels = self.preprocess(image).unsqueeze(0)
        out = self.model(pixels)
        return self.postprocess(out["pred_logits"][0], out["pred_boxes"][0], image.shape[0], image.shape[1], threshold)

    @torch.jit.export
    def forward_batch(self, images: List[Tensor], score_threshold: Optional[float] = None) -> List[Detections]:
        """Detect in several images of different sizes at once (zero padding + mask)."""
        if len(images) == 0:
            raise ValueError("forward_batch needs at least one image")
        threshold = self._threshold(score_threshold)
        resized = [self.preprocess(image) for image in images]
        batch_height = max([r.shape[1] for r in resized])
        batch_width = max([r.shape[2] for r in resized])
        batch = resized[0].new_zeros((len(resized), 3, batch_height, batch_width))
        mask = torch.ones((len(resized), batch_height, batch_width), dtype=torch.bool, device=batch.device)
        for index, pixels in enumerate(resized):
            batch[index, :, : pixels.shape[1], : pixels.shape[2]] = pixels
            mask[index, : pixels.shape[1], : pixels.shape[2]] = False
        out = self.model(batch, mask)
        results: List[Detections] = []
        for index, image in enumerate(images):
            results.append(
                self.postprocess(
                    out["pred_logits"][index], out["pred_boxes"][index], image.shape[0], image.shape[1], threshold
                )
            )
        return results
