"""Figures for the chapters: detections on images, decoder attention, per-class scores.

It draws only; what a figure compares (IoU, matching to ground truth) is computed by
:mod:`detr_deploy.evaluate`.

Colours come from :data:`detr_deploy.data.classes.CLASS_COLORS`, so a class has the same colour in
every figure and in the generator's label drawings.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from detr_deploy.data.classes import CLASS_COLORS

__all__ = [
    "class_color",
    "plot_detections",
    "add_class_legend",
    "decoder_cross_attention",
    "plot_per_class_ap",
    "plot_attention",
    "plot_ground_truth_comparison",
    "add_comparison_legend",
    "declutter_tags",
    "show_figure",
]

TAG_GID = "detection-tag"  # marks the text tags that declutter_tags may move or hide


def class_color(index: int) -> Tuple[float, float, float]:
    """Matplotlib RGB (0-1) colour of class ``index``."""
    red, green, blue = CLASS_COLORS[int(index) % len(CLASS_COLORS)]
    return red / 255, green / 255, blue / 255


def plot_detections(
    ax,
    image: np.ndarray,
    boxes,
    labels,
    class_names: Sequence[str],
    scores=None,
    title: Optional[str] = None,
    linewidth: float = 1.5,
    fontsize: float = 7,
):
    """Draw ``image`` (uint8 [H, W, 3]) with xyxy ``boxes`` [N, 4] in pixels, a colour per class."""
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    for index, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, labels)):
        color = class_color(label)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth))
        text = class_names[int(label)]
        if scores is not None:
            text += f" {float(np.asarray(scores).reshape(-1)[index]):.2f}"
        ax.text(
            x0,
            y0,
            text,
            fontsize=fontsize,
            color="white",
            va="bottom",
            gid=TAG_GID,
            bbox=dict(facecolor=color, edgecolor="none", pad=0.5, alpha=0.85),
        )
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def add_class_legend(fig_or_ax, class_names: Sequence[str], **kwargs):
    """A legend with one coloured patch per class."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=class_color(i), label=name) for i, name in enumerate(class_names)]
    options = dict(loc="lower center", ncol=len(class_names), frameon=False, fontsize=8)
    options.update(kwargs)
    return fig_or_ax.legend(handles=handles, **options)


@torch.no_grad()
def decoder_cross_attention(model, pixels: Tensor, layer: int = -1) -> Tuple[Tensor, Dict[str, Tensor]]:
    """Cross-attention of every object query over the image, from one decoder layer.

    ``pixels`` is a normalised batch [1, 3, h, w] (``DetectionPipeline.preprocess(image)[None]``).
    Returns (weights [Q, h', w'] averaged over heads, summing to 1 per query; model outputs).
    Works with forward hooks, as in the DETR authors' demo: the model itself is unchanged.
    """
    attention = model.transformer.decoder.layers[layer].multihead_attn
    captured: Dict[str, object] = {}

    def keep_inputs(module, args, kwargs):
        captured["args"], captured["kwargs"] = args, kwargs

    def keep_feature_size(module, args, output):
        captured["feature_size"] = tuple(output.shape[-2:])

    hooks = [
        attention.register_forward_pre_hook(keep_inputs, with_kwargs=True),
        model.backbone[0].register_forward_hook(keep_feature_size),
    ]
    try:
        outputs = model(pixels)
    finally:
        for hook in hooks:
            hook.remove()
    query, key, value = captured["args"][:3]
    kwargs = dict(captured["kwargs"], need_weights=True, average_attn_weights=True)
    weights = attention(query, key, value, **kwargs)[1]  # [1, Q, h'*w']
    height, width = captured["feature_size"]
    return weights[0].reshape(-1, height, width), outputs


def plot_per_class_ap(ax, per_class: Mapping[str, float], class_names: Sequence[str], title: str = "AP@0.5 per class"):
    """Horizontal bars of AP per class (classes in model order, colour per class)."""
    names = [name for name in class_names if name in per_class]
    values = [float(per_class[name]) for name in names]
    colors = [class_color(class_names.index(name)) for name in names]
    bars = ax.barh(names, values, color=colors)
    for bar, value in zip(bars, values):
        ax.text(min(value + 0.01, 0.93), bar.get_y() + bar.get_height() / 2, f"{value:.2f}", va="center", fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("average precision")
    ax.set_title(title, fontsize=10)
    return ax


# ------------------------------------------------------------------ more figures
def plot_attention(
    ax,
    image: np.ndarray,
    weights,
    box=None,
    label: Optional[int] = None,
    score: Optional[float] = None,
    class_names: Optional[Sequence[str]] = None,
    cmap: str = "inferno",
    alpha: float = 0.85,
):
    """One query's attention map ``weights`` [h', w'] (any scale) upsampled over ``image``.

    The map is stretched to the image's extent (the pipeline resizes without padding, so the
    feature grid covers the whole image) and normalised to its maximum. It is drawn as a coloured
    overlay whose opacity grows with the weight (up to ``alpha``), so the card stays readable where
    the query does not look. ``box`` (xyxy, pixels) outlines the query's prediction.
    """
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    height, width = image.shape[:2]
    heat = np.asarray(weights, dtype=np.float32)
    heat = heat / max(float(heat.max()), 1e-12)
    # bilinear upsampling of the map to the image size
    rows = np.clip((np.arange(height) + 0.5) * heat.shape[0] / height - 0.5, 0, heat.shape[0] - 1)
    cols = np.clip((np.arange(width) + 0.5) * heat.shape[1] / width - 0.5, 0, heat.shape[1] - 1)
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    r1, c1 = np.minimum(r0 + 1, heat.shape[0] - 1), np.minimum(c0 + 1, heat.shape[1] - 1)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    up = (
        heat[r0][:, c0] * (1 - fr) * (1 - fc)
        + heat[r0][:, c1] * (1 - fr) * fc
        + heat[r1][:, c0] * fr * (1 - fc)
        + heat[r1][:, c1] * fr * fc
    )
    overlay = colormaps[cmap](up)
    overlay[..., 3] = alpha * np.sqrt(up)
    ax.imshow(image)
    ax.imshow(overlay, extent=(0, width, height, 0))
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    if box is not None:
        x0, y0, x1, y1 = [float(v) for v in np.asarray(box).reshape(4)]
        color = class_color(label) if label is not None else (0.0, 0.8, 1.0)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=2.5))
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linewidth=0.8))
    if label is not None and class_names is not None:
        title = class_names[int(label)] + (f" {float(score):.2f}" if score is not None else "")
        ax.set_title(title, fontsize=9, color=class_color(label))
    ax.set_axis_off()
    return ax


def add_comparison_legend(fig_or_ax, class_names: Sequence[str], **kwargs):
    """The class colours plus the two line styles of :func:`plot_ground_truth_comparison`."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=class_color(i), label=name) for i, name in enumerate(class_names)]
    handles += [
        Line2D([], [], color="black", linewidth=1.5, label="detection (thick, tagged: false positive)"),
        Line2D([], [], color="black", linewidth=1.5, linestyle="--", label="label (thick, tagged: missed)"),
    ]
    options = dict(loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    options.update(kwargs)
    return fig_or_ax.legend(handles=handles, **options)


def plot_ground_truth_comparison(
    ax,
    image: np.ndarray,
    boxes,
    scores,
    labels,
    gt_boxes,
    gt_labels,
    match: Mapping,
    class_names: Sequence[str],
    crop=None,
    title: Optional[str] = None,
    fontsize: float = 7,
    tags: bool = True,
):
    """Detections against ground truth on one image, colour per class.

    Ground truth: dashed outlines (thick where missed, with a "missed" tag). Detections: solid
    outlines; true positives thin and untagged, false positives thick and tagged "FP class score
    (IoU x)". ``match`` is :func:`detr_deploy.evaluate.match_to_ground_truth`'s result for these arrays. ``crop``
    (x0, y0, x1, y1) zooms into a region; ``tags=False`` draws the outlines only.
    """
    from matplotlib.patches import Rectangle

    ax.imshow(image)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    tag = dict(fontsize=fontsize, color="white", va="bottom", clip_on=True, gid=TAG_GID)
    for (x0, y0, x1, y1), label, found in zip(gt_boxes, np.asarray(gt_labels).reshape(-1), match["gt_matched"]):
        color = class_color(label)
        ax.add_patch(
            Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linestyle="--", linewidth=1.0 if found else 2.2
            )
        )
        if tags and not found:
            ax.text(
                x0,
                y1,
                f"missed {class_names[int(label)]}",
                fontsize=fontsize,
                color="white",
                va="top",
                clip_on=True,
                gid=TAG_GID,
                bbox=dict(facecolor=color, edgecolor="black", linestyle="--", pad=0.5, alpha=0.9),
            )
    for (x0, y0, x1, y1), score, label, gt, iou in zip(
        boxes, np.asarray(scores).reshape(-1), np.asarray(labels).reshape(-1), match["det_gt"], match["det_iou"]
    ):
        color = class_color(label)
        ax.add_patch(
            Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.0 if gt >= 0 else 2.2)
        )
        if tags and gt < 0:
            ax.text(
                x0,
                y0,
                f"FP {class_names[int(label)]} {score:.2f} (IoU {iou:.2f})",
                bbox=dict(facecolor=color, edgecolor="none", pad=0.5, alpha=0.9),
                **tag,
            )
    if crop is not None:
        x0, y0, x1, y1 = crop
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def declutter_tags(fig) -> int:
    """Make the figure's detection tags readable once its layout is final (call it after
    ``tight_layout``): a tag whose box lies outside the view is hidden, a tag that sticks out of its
    axes is moved inside, and a tag that would cover one drawn before it is hidden (the box outline
    stays). Returns how many tags were hidden because they overlapped."""
    renderer = fig.canvas.get_renderer()
    hidden = 0
    for ax in fig.axes:
        frame = ax.get_window_extent(renderer)
        kept = []
        for text in [t for t in ax.texts if t.get_gid() == TAG_GID and t.get_visible()]:
            anchor_x, anchor_y = ax.transData.transform(text.get_position())
            if not (frame.x0 - 1 <= anchor_x <= frame.x1 + 1 and frame.y0 - 1 <= anchor_y <= frame.y1 + 1):
                text.set_visible(False)  # its box is outside the view (a zoomed crop): pulling it in would mislead
                continue
            extent = text.get_window_extent(renderer)
            shift_x = min(0.0, frame.x1 - extent.x1) or max(0.0, frame.x0 - extent.x0)
            shift_y = min(0.0, frame.y1 - extent.y1) or max(0.0, frame.y0 - extent.y0)
            if shift_x or shift_y:  # display pixels -> data coordinates
                x, y = ax.transData.transform(text.get_position())
                text.set_position(ax.transData.inverted().transform((x + shift_x, y + shift_y)))
                extent = text.get_window_extent(renderer)
            if any(extent.overlaps(other) for other in kept):
                text.set_visible(False)
                hidden += 1
            else:
                kept.append(extent)
    return hidden


def show_figure(fig, image_format: str = "png", **savefig_kwargs) -> None:
    """Show ``fig`` in a notebook in one format and close it: PNG for line plots and charts (sharp,
    small), JPEG for figures full of card pixels (pass ``pil_kwargs={"quality": 85}``)."""
    import io

    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buffer = io.BytesIO()
    fig.savefig(buffer, format=image_format, bbox_inches="tight", **savefig_kwargs)
    plt.close(fig)
    display(Image(data=buffer.getvalue(), format=image_format))
