"""Figures for the chapters: detections on images, decoder attention, per-class scores.

Colours come from :data:`detr_deploy.cards.CLASS_COLORS`, so a class has the same colour in
every figure and in the generator's label drawings.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .cards import CLASS_COLORS

__all__ = [
    "class_color",
    "plot_detections",
    "add_class_legend",
    "decoder_cross_attention",
    "plot_per_class_ap",
]


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
        ax.text(x0, y0, text, fontsize=fontsize, color="white", va="bottom",
                bbox=dict(facecolor=color, edgecolor="none", pad=0.5, alpha=0.85))
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
