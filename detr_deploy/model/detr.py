"""A compact DETR (Carion et al., 2020, "End-to-End Object Detection with Transformers").

Written for this repository. The module tree is laid out so that ``state_dict()`` has
exactly the key names and tensor shapes of the official facebookresearch/detr
checkpoints, e.g.::

    backbone.0.body.layer1.0.conv1.weight          [64, 64, 1, 1]
    transformer.decoder.layers.0.multihead_attn.in_proj_weight   [768, 256]
    query_embed.weight                            [100, 256]
    class_embed.weight                            [92, 256]
    bbox_embed.layers.2.weight                    [4, 256]

so an official checkpoint loads with :func:`detr_deploy.model.checkpoint.load_checkpoint`.

Conventions (the same as the official code):

* images are float tensors ``[B, 3, H, W]`` normalised with ImageNet mean/std;
* ``mask`` is a bool tensor ``[B, H, W]``, ``True`` on padding pixels;
* ``pred_logits`` ``[B, Q, num_classes + 1]``, the last class being "no object";
* ``pred_boxes`` ``[B, Q, 4]`` as normalised ``(cx, cy, w, h)`` in ``[0, 1]`` relative to
  the unpadded image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

__all__ = [
    "DETRConfig",
    "DETR",
    "build_detr",
    "detr_resnet50",
    "detr_resnet50_dc5",
    "detr_resnet101",
    "detr_resnet101_dc5",
    "detr_small",
    "ARCHITECTURES",
    "COCO_CLASSES",
    "count_parameters",
]


# Index i is COCO category id i; "N/A" marks ids COCO 2017 does not use. The official
# checkpoints predict 92 logits: these 91 ids plus "no object" at index 91.
COCO_CLASSES: Tuple[str, ...] = (
    "N/A",
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "N/A",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "N/A",
    "backpack",
    "umbrella",
    "N/A",
    "N/A",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "N/A",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "N/A",
    "dining table",
    "N/A",
    "N/A",
    "toilet",
    "N/A",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "N/A",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)


@dataclass
class DETRConfig:
    """Everything needed to rebuild a DETR; stored in checkpoints and artefact metadata."""

    backbone: str = "resnet50"  # resnet18 | resnet34 | resnet50 | resnet101
    dilation: bool = False  # DC5: dilate the last stage instead of striding it
    backbone_last_stage: int = 4  # 3 stops after layer3 (stride 16, cheaper)
    batch_norm: str = "frozen"  # "frozen" (official) or "trainable" (training from scratch)
    d_model: int = 256
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    num_queries: int = 100
    num_classes: int = 91  # logits = num_classes + 1 ("no object")
    aux_loss: bool = True
    class_names: List[str] = field(default_factory=lambda: list(COCO_CLASSES))

    def __post_init__(self) -> None:
        if self.backbone not in _RESNETS:
            raise ValueError(f"backbone must be one of {sorted(_RESNETS)}, got {self.backbone!r}")
        if self.backbone_last_stage not in (3, 4):
            raise ValueError(f"backbone_last_stage must be 3 or 4, got {self.backbone_last_stage}")
        if self.dilation and self.backbone_last_stage != 4:
            raise ValueError("dilation (DC5) applies to layer4, so it needs backbone_last_stage=4")
        if self.batch_norm not in ("frozen", "trainable"):
            raise ValueError(f"batch_norm must be 'frozen' or 'trainable', got {self.batch_norm!r}")
        if self.d_model % self.nhead or self.d_model % 2:
            raise ValueError(f"d_model={self.d_model} must be even and divisible by nhead={self.nhead}")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} entries but num_classes={self.num_classes}")

    def to_dict(self) -> dict:
        return asdict(self)


_RESNETS = {
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
    "resnet101": (torchvision.models.resnet101, 2048),
}


class ResNetBody(nn.Module):
    """ResNet trunk without avgpool/fc; attribute names match torchvision's so keys match."""

    def __init__(self, name: str, dilation: bool, last_stage: int, batch_norm: str) -> None:
        super().__init__()
        constructor, _ = _RESNETS[name]
        norm_layer = FrozenBatchNorm2d if batch_norm == "frozen" else nn.BatchNorm2d
        kwargs = {"weights": None, "norm_layer": norm_layer}
        if dilation:
            kwargs["replace_stride_with_dilation"] = [False, False, True]
        resnet = constructor(**kwargs)
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4 if last_stage == 4 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Backbone(nn.Module):
    """Holds ``body`` so keys read ``backbone.0.body.*`` as in the official code."""

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.body = ResNetBody(config.backbone, config.dilation, config.backbone_last_stage, config.batch_norm)
        _, layer4_channels = _RESNETS[config.backbone]
        self.num_channels = layer4_channels if config.backbone_last_stage == 4 else layer4_channels // 2
        self.stride = 16 if (config.dilation or config.backbone_last_stage == 3) else 32

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images)


class SinePositionalEncoding(nn.Module):
    """2-D sine/cosine encoding of pixel positions, normalised to [0, 2*pi] per image.

    Positions come from a cumulative sum over the valid (unpadded) pixels, so padded
    images get the same encoding as unpadded ones, and the computation is made of
    tensor ops only (it traces correctly at any input size).
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.scale = 2 * math.pi
        self.eps = 1e-6

    def forward(self, valid: Tensor) -> Tensor:
        """valid: bool [B, h, w] (True on image pixels) -> float [B, 2*num_pos_feats, h, w]."""
        valid_f = valid.to(torch.float32)
        y = valid_f.cumsum(1)
        x = valid_f.cumsum(2)
        y = y / (y[:, -1:, :] + self.eps) * self.scale
        x = x / (x[:, :, -1:] + self.eps) * self.scale
        exponent = torch.arange(self.num_pos_feats, dtype=torch.float32, device=valid.device)
        frequencies = self.temperature ** (2 * torch.div(exponent, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x[:, :, :, None] / frequencies
        pos_y = y[:, :, :, None] / frequencies
        # even channels take sin, odd channels cos, interleaved
        pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class Joiner(nn.Sequential):
    """``backbone.0`` is the CNN, ``backbone.1`` the (parameter-free) positional encoding."""

    def __init__(self, backbone: Backbone, position_encoding: SinePositionalEncoding) -> None:
        super().__init__(backbone, position_encoding)

    def forward(self, images: Tensor, mask: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        """Returns feature map [B, C, h, w], its padding mask [B, h, w] and positions."""
        features = self[0](images)
        if mask is None:
            mask = torch.zeros_like(features[:, 0], dtype=torch.bool)
        else:
            mask = F.interpolate(mask[:, None].to(torch.float32), size=features.shape[-2:]).to(torch.bool)[:, 0]
        pos = self[1](~mask).to(features.dtype)
        return features, mask, pos


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: self-attention then feed-forward, each with residual + LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor, padding_mask: Tensor) -> Tensor:
        query = src + pos  # positions go into queries and keys, not values
        attended = self.self_attn(query, query, src, key_padding_mask=padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(hidden))


class DecoderLayer(nn.Module):
    """Post-norm decoder layer: query self-attention, cross-attention to memory, feed-forward."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        memory_padding_mask: Tensor,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        query = tgt + query_pos
        attended = self.self_attn(query, query, tgt, attn_mask=self_attn_mask, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        attended = self.multihead_attn(
            tgt + query_pos, memory + pos, memory, key_padding_mask=memory_padding_mask, need_weights=False
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        hidden = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(hidden))


class Encoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)])

    def forward(self, src: Tensor, pos: Tensor, padding_mask: Tensor) -> Tensor:
        for layer in self.layers:
            src = layer(src, pos, padding_mask)
        return src


class Decoder(nn.Module):
    def __init__(self, num_layers: int, d_model: int, nhead: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([DecoderLayer(d_model, nhead, dim_feedforward, dropout) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        tgt: Tensor,
        memory: Tensor,
        pos: Tensor,
        query_pos: Tensor,
        memory_padding_mask: Tensor,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Returns the normalised output of every layer, stacked: [L, B, Q, d_model]."""
        outputs: List[Tensor] = []
        for layer in self.layers:
            tgt = layer(tgt, memory, pos, query_pos, memory_padding_mask, self_attn_mask)
            outputs.append(self.norm(tgt))
        return torch.stack(outputs)


class Transformer(nn.Module):
    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        args = (config.d_model, config.nhead, config.dim_feedforward, config.dropout)
        self.encoder = Encoder(config.num_encoder_layers, *args)
        self.decoder = Decoder(config.num_decoder_layers, *args)
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)

    def forward(
        self,
        src: Tensor,
        mask: Tensor,
        query_pos: Tensor,
        pos: Tensor,
        query_content: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Tuple[Tensor, Tensor]:
        """src/pos [B, C, h, w], mask [B, h, w], query_pos [B, Q, C].

        Returns decoder states [L, B, Q, C] and the encoder memory [B, h*w, C].
        ``query_content`` (default zeros) and ``self_attn_mask`` are hooks for training-time
        extra queries (e.g. denoising); inference leaves them ``None``.
        """
        src = src.flatten(2).transpose(1, 2)
        pos = pos.flatten(2).transpose(1, 2)
        mask = mask.flatten(1)
        memory = self.encoder(src, pos, mask)
        tgt = torch.zeros_like(query_pos) if query_content is None else query_content
        states = self.decoder(tgt, memory, pos, query_pos, mask, self_attn_mask)
        return states, memory


class MLP(nn.Module):
    """Linear layers with ReLU between them (``bbox_embed.layers.{0,1,2}``)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList([nn.Linear(d_in, d_out) for d_in, d_out in zip(dims, dims[1:] + [output_dim])])

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < last:
                x = F.relu(x)
        return x


class DETR(nn.Module):
    """DETR detector. ``forward(images, mask)`` returns a dict of tensors (see module doc).

    Output keys: ``pred_logits`` [B, Q, K+1], ``pred_boxes`` [B, Q, 4] for the last decoder
    layer and, when ``config.aux_loss``, ``aux_logits`` [L-1, B, Q, K+1] and
    ``aux_boxes`` [L-1, B, Q, 4] for the earlier layers (used only by the training loss).
    """

    def __init__(self, config: DETRConfig) -> None:
        super().__init__()
        self.config = config
        backbone = Backbone(config)
        self.backbone = Joiner(backbone, SinePositionalEncoding(config.d_model // 2))
        self.input_proj = nn.Conv2d(backbone.num_channels, config.d_model, kernel_size=1)
        self.transformer = Transformer(config)
        self.query_embed = nn.Embedding(config.num_queries, config.d_model)
        self.class_embed = nn.Linear(config.d_model, config.num_classes + 1)
        self.bbox_embed = MLP(config.d_model, config.d_model, 4, 3)
        self.aux_loss = config.aux_loss

    def forward(
        self,
        images: Tensor,
        mask: Optional[Tensor] = None,
        extra_query_content: Optional[Tensor] = None,
        extra_query_pos: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
    ) -> Dict[str, Tensor]:
        """images [B, 3, H, W] normalised; mask [B, H, W] bool (True = padding) or None.

        ``extra_query_*`` [B, E, d_model] are prepended to the learned queries (training
        hooks, e.g. for denoising queries); their outputs come first along Q.
        """
        features, feature_mask, pos = self.backbone(images, mask)
        batch = images.shape[0]
        query_pos = self.query_embed.weight.unsqueeze(0).expand(batch, -1, -1)
        query_content: Optional[Tensor] = None
        if extra_query_pos is not None and extra_query_content is not None:
            query_content = torch.cat((extra_query_content, torch.zeros_like(query_pos)), dim=1)
            query_pos = torch.cat((extra_query_pos, query_pos), dim=1)
        states, _ = self.transformer(
            self.input_proj(features), feature_mask, query_pos, pos, query_content, self_attn_mask
        )
        logits = self.class_embed(states)
        boxes = self.bbox_embed(states).sigmoid()
        out = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_logits"] = logits[:-1]
            out["aux_boxes"] = boxes[:-1]
        return out


def build_detr(config: Optional[DETRConfig] = None, seed: Optional[int] = None, **overrides) -> DETR:
    """Build a DETR in eval mode; ``seed`` makes its random initial weights reproducible."""
    config = DETRConfig(**overrides) if config is None else config
    if seed is None:
        return DETR(config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DETR(config).eval()


def _with_classes(overrides: dict) -> dict:
    """Give ``class_names`` a default that fits ``num_classes`` when only the count is set."""
    if "num_classes" in overrides and "class_names" not in overrides:
        count = overrides["num_classes"]
        overrides["class_names"] = (
            list(COCO_CLASSES) if count == len(COCO_CLASSES) else [f"class_{i}" for i in range(count)]
        )
    return overrides


def detr_resnet50(seed: Optional[int] = None, **overrides) -> DETR:
    """Official DETR-R50 layout (41.3M parameters with 91 classes)."""
    return build_detr(seed=seed, **_with_classes(dict(backbone="resnet50", **overrides)))


def detr_resnet50_dc5(seed: Optional[int] = None, **overrides) -> DETR:
    """DETR-R50-DC5: the last ResNet stage dilated (stride 16): same weights, 4x the tokens."""
    return build_detr(seed=seed, **_with_classes(dict(backbone="resnet50", dilation=True, **overrides)))


def detr_resnet101(seed: Optional[int] = None, **overrides) -> DETR:
    return build_detr(seed=seed, **_with_classes(dict(backbone="resnet101", **overrides)))


def detr_resnet101_dc5(seed: Optional[int] = None, **overrides) -> DETR:
    return build_detr(seed=seed, **_with_classes(dict(backbone="resnet101", dilation=True, **overrides)))


def detr_small(seed: Optional[int] = None, **overrides) -> DETR:
    """A small DETR for CPU training and demos: ResNet-18 trunk to layer3, d_model 128, 3+3 layers."""
    defaults = dict(
        backbone="resnet18",
        backbone_last_stage=3,
        batch_norm="trainable",
        d_model=128,
        nhead=8,
        num_encoder_layers=3,
        num_decoder_layers=3,
        dim_feedforward=512,
        num_queries=25,
        num_classes=6,
    )
    defaults.update(overrides)
    return build_detr(seed=seed, **_with_classes(defaults))


ARCHITECTURES = {
    "detr_resnet50": detr_resnet50,
    "detr_resnet50_dc5": detr_resnet50_dc5,
    "detr_resnet101": detr_resnet101,
    "detr_resnet101_dc5": detr_resnet101_dc5,
    "detr_small": detr_small,
}


def count_parameters(model: nn.Module) -> int:
    """Number of learnable parameters plus frozen batch-norm affine parameters.

    FrozenBatchNorm2d keeps weight/bias as buffers (so ``parameters()`` misses them); they
    are counted here because they are learned weights stored in every checkpoint.
    """
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            total += module.weight.numel() + module.bias.numel()
    return total
