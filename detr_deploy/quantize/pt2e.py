"""Post-training static int8 quantization with PT2E, compiled by AOTInductor into a ``.pt2``.

The steps (chapter 02c shows each one):

1. :func:`fuse_for_int8`: a copy of the DETR whose ResNet blocks have their batch norms folded
   into the convolutions and one ReLU module per call (the quantizer groups the nodes of a
   module called twice into one "partition" with two outputs and stops on it), and whose
   attention layers compute their projections with ``nn.Linear`` modules (the quantizer skips
   the functional projections inside ``nn.MultiheadAttention``).
2. :func:`quantize_network`: ``torch.export`` of the network alone (normalised pixels in, logits
   and boxes out, height and width dynamic), ``prepare_pt2e`` with torchao's
   ``X86InductorQuantizer`` (observers at every quantizable op), calibration on rendered
   synthetic cards (:func:`calibration_images`), ``convert_pt2e`` (int8 weights,
   quantize/dequantize pairs around each op).
3. :func:`int8_pipeline`: the converted network inside the same :class:`DetectionPipeline`, so
   resize, normalisation and post-processing stay in float32, in the graph.
4. :func:`export_int8_aoti`: :func:`detr_deploy.export.aoti.export_aoti` on that pipeline. With
   ``freezing`` on, Inductor's int8 passes (registered when torchao's quantizer is imported)
   replace each dequantize -> conv/linear -> quantize group by one oneDNN int8 kernel. The
   package's metadata says ``precision: int8`` and counts the int8 kernels in the compiled code;
   the C++ ``detr_cpp.Detector`` runs it unchanged.

PT2E lives in the ``torchao`` package in this torch release (``torch.ao.quantization`` no longer
has ``quantize_pt2e``); it is an optional extra (``requirements-runtimes.txt``).
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detr_deploy.export import aoti
from detr_deploy.export.artefact import METADATA_FILE, make_pipeline, write_sidecar
from detr_deploy.export.program import DEFAULT_EXAMPLE_SIZE, PIPELINE_DEFAULTS
from detr_deploy.model.pipeline import DetectionPipeline
from detr_deploy.paths import BUILD_DIR, MODELS_DIR, relative

__all__ = [
    "CALIBRATION_SEED",
    "HELDOUT_SEED",
    "SCOPES",
    "calibration_images",
    "calibration_record",
    "fuse_for_int8",
    "quantize_network",
    "int8_pipeline",
    "export_int8_aoti",
    "cached_int8_aoti",
    "demo_int8_aoti",
    "kernel_counts",
    "read_package_metadata",
]

# Synthetic cards only: seed 1 trains the demo model, seed 2 chose its threshold, seed 3 is the
# held-out set the accuracy table reports; calibration draws from its own stream.
CALIBRATION_SEED = 7
CALIBRATION_SOURCE = "synthetic cards (detr_deploy.data.cards)"
HELDOUT_SEED = 3
CACHE_DIR = BUILD_DIR / "quantize"

# What gets int8: "backbone" = every convolution (ResNet and input_proj); "all" = that plus
# every linear layer: the attention projections (fuse_for_int8 makes them nn.Linear modules),
# the feed-forward layers and the class and box heads. The attention itself (softmax of
# query-key products) stays float32.
SCOPES = ("backbone", "all")


def _torchao():
    try:
        import torchao.quantization.pt2e.quantize_pt2e as quantize_pt2e
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "int8 quantization needs torchao (PT2E moved there from torch.ao.quantization): "
            "pip install -r requirements-runtimes.txt"
        ) from error
    return quantize_pt2e, x86


# ------------------------------------------------------------------------------ 1. fuse


def _fold(conv: nn.Conv2d, norm: nn.Module) -> nn.Conv2d:
    """A new convolution computing ``norm(conv(x))`` in eval mode (BatchNorm2d or FrozenBatchNorm2d)."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    )
    with torch.no_grad():
        bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
        folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        folded.bias.copy_(norm.bias + (bias - norm.running_mean) * scale)
    return folded.eval()


class _FusedBlock(nn.Module):
    """A torchvision BasicBlock/Bottleneck with folded batch norms and one ReLU per use."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        count = 3 if hasattr(block, "conv3") else 2
        self.convs = nn.ModuleList(
            _fold(getattr(block, f"conv{i}"), getattr(block, f"bn{i}")) for i in range(1, count + 1)
        )
        self.relus = nn.ModuleList(nn.ReLU() for _ in range(count))
        downsample = block.downsample
        self.downsample = None if downsample is None else _fold(downsample[0], downsample[1])

    def forward(self, x: Tensor) -> Tensor:
        out = x
        for conv, relu in zip(self.convs[:-1], self.relus[:-1]):
            out = relu(conv(out))
        out = self.convs[-1](out)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relus[-1](out + identity)


class _SplitAttention(nn.Module):
    """``nn.MultiheadAttention`` (batch first, as DETR's) as four ``nn.Linear`` around
    ``scaled_dot_product_attention``. Inside ``nn.MultiheadAttention`` the projections are
    functional calls that the quantizer leaves in float32; as modules they become int8."""

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        if not attention.batch_first or attention.in_proj_weight is None:
            raise ValueError("expected a batch-first nn.MultiheadAttention with packed in-projection weights")
        width, self.heads = attention.embed_dim, attention.num_heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(width, width) for _ in range(3))
        with torch.no_grad():
            for index, projection in enumerate((self.q_proj, self.k_proj, self.v_proj)):
                projection.weight.copy_(attention.in_proj_weight[index * width : (index + 1) * width])
                projection.bias.copy_(attention.in_proj_bias[index * width : (index + 1) * width])
        self.out_proj = nn.Linear(width, width)
        self.out_proj.load_state_dict(attention.out_proj.state_dict())

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        attn_mask: Optional[Tensor] = None,
    ) -> Tuple[Tensor, None]:
        # contiguous inputs: on a permuted 3-D input with dynamic sizes torchao's int8 linear
        # fusion fails (TypeError: torch.Size() takes an iterable of 'int' (item 1 is 'Node'))
        query, key, value = query.contiguous(), key.contiguous(), value.contiguous()
        batch, length, width = query.shape
        allowed: Optional[Tensor] = None  # True where a query may attend (scaled_dot_product_attention's sense)
        if key_padding_mask is not None:
            allowed = ~key_padding_mask[:, None, None, :]
        mask: Optional[Tensor] = allowed
        if attn_mask is not None:
            if attn_mask.dim() == 3:  # [batch * heads, L, S]
                attn_mask = attn_mask.view(batch, self.heads, *attn_mask.shape[1:])
            if attn_mask.dtype == torch.bool:  # nn.MultiheadAttention: True = masked out
                mask = ~attn_mask if allowed is None else allowed & ~attn_mask
            else:  # additive
                mask = attn_mask if allowed is None else attn_mask.masked_fill(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value)), mask
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, width)), None


def fuse_for_int8(model: nn.Module) -> nn.Module:
    """A copy of the DETR ready for the quantizer: batch norms folded, ReLUs not shared, attention
    projections as ``nn.Linear`` modules.

    Same outputs as ``model`` up to float rounding (the tests check it)."""
    fused = copy.deepcopy(model).eval()
    body = fused.backbone[0].body
    body.conv1, body.bn1 = _fold(body.conv1, body.bn1), nn.Identity()
    for name in ("layer1", "layer2", "layer3", "layer4"):
        layer = getattr(body, name)
        if isinstance(layer, nn.Sequential):
            setattr(body, name, nn.Sequential(*(_FusedBlock(block) for block in layer)))
    for module in list(fused.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.MultiheadAttention):
                setattr(module, name, _SplitAttention(child))
    return fused


# ------------------------------------------------------------------------------ 2. calibrate + convert


def calibration_images(
    num_images: int = 32, seed: int = CALIBRATION_SEED, cache_dir=CACHE_DIR / "calibration"
) -> List[np.ndarray]:
    """``num_images`` synthetic cards of ``seed`` (``cards.generate_dataset``), rendered once under
    ``cache_dir`` and read back as uint8 RGB arrays. Never the real validation cards."""
    from detr_deploy.data.cards import generate_dataset
    from detr_deploy.images import read_image

    if seed == HELDOUT_SEED:
        raise ValueError(f"seed {HELDOUT_SEED} is the held-out evaluation set: calibrate on another seed")
    folder = Path(cache_dir) / f"cards-s{seed}-n{num_images}"
    images = sorted((folder / "images").glob("card_*.jpg"))
    if len(images) != num_images:
        generate_dataset(folder, num_images, seed, formats=("coco",), progress=False)
        images = sorted((folder / "images").glob("card_*.jpg"))
    return [read_image(path) for path in images]


def calibration_record(seed: int = CALIBRATION_SEED) -> dict:
    """Where :func:`calibration_images` come from, as the package's metadata records it."""
    return {"source": CALIBRATION_SOURCE, "seed": seed}


def _quantizer(scope: str):
    _, x86 = _torchao()
    config = x86.get_default_x86_inductor_quantization_config()  # int8, per-channel weights
    quantizer = x86.X86InductorQuantizer()
    if scope == "all":
        return quantizer.set_global(config)
    if scope == "backbone":
        return quantizer.set_module_name_qconfig("backbone", config).set_module_name_qconfig("input_proj", config)
    raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")


def quantize_network(model: nn.Module, pixels: Sequence[Tensor], scope: str = "all") -> torch.fx.GraphModule:
    """PT2E on the DETR network: export (height and width dynamic), prepare, calibrate on
    ``pixels`` (normalised [1, 3, h, w] tensors, as the pipeline feeds the network), convert.

    Returns the converted network (a GraphModule, same outputs as the DETR) carrying ``config``."""
    quantize_pt2e, _ = _torchao()
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    if not pixels:
        raise ValueError("calibration needs at least one image")
    fused = fuse_for_int8(model)
    # Dim.DYNAMIC: the export finds the sizes' range itself (the backbone needs a few pixels)
    dynamic = {"images": {2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}}
    with torch.no_grad():
        exported = torch.export.export(fused, (pixels[0],), dynamic_shapes=dynamic, strict=False)
    prepared = quantize_pt2e.prepare_pt2e(exported.module(), _quantizer(scope))
    with torch.no_grad():
        for batch in pixels:
            prepared(batch)
    converted = quantize_pt2e.convert_pt2e(prepared)
    # the pipeline calls .eval(), which an exported module refuses unless allowed
    allow_exported_model_train_eval(converted)
    converted.config = model.config  # read by the artefact's metadata
    return converted


def int8_pipeline(model: nn.Module, images: Sequence[np.ndarray], scope: str = "all", **settings) -> DetectionPipeline:
    """The DETR's pipeline (``settings``: min_size, max_size, score_threshold, ...) with the network
    quantized, calibrated on ``images`` (uint8 RGB) resized as the pipeline resizes them."""
    settings = dict(PIPELINE_DEFAULTS, **{key: value for key, value in settings.items() if value is not None})
    float_pipeline = make_pipeline(model, **settings)
    with torch.no_grad():
        pixels = [float_pipeline.preprocess(torch.from_numpy(np.ascontiguousarray(i))).unsqueeze(0) for i in images]
    network = quantize_network(model, pixels, scope)
    return DetectionPipeline(network, num_classes=model.config.num_classes, **settings).eval()


# ------------------------------------------------------------------------------ 3. compile + package

_CALL = re.compile(r"aoti_torch_cpu_(\w+)\(")


def kernel_counts(package) -> Dict[str, int]:
    """Calls in the compiled code of a ``.pt2``: int8 convolutions and linear layers (oneDNN
    ``qconv``/``qlinear``), float32 convolutions and float32 matrix products. An int8 package
    whose quantization was not lowered shows no int8 call: dequantize + float32 op instead."""
    with zipfile.ZipFile(package) as archive:
        code = "".join(
            archive.read(name).decode(errors="replace") for name in archive.namelist() if name.endswith("wrapper.cpp")
        )
    counts = {"int8_conv": 0, "int8_linear": 0, "float_conv": 0, "float_matmul": 0}
    for name in _CALL.findall(code):
        if name.startswith("_q"):
            counts["int8_conv" if "conv" in name else "int8_linear"] += 1
        elif "convolution" in name:
            counts["float_conv"] += 1
        elif "linear" in name or re.search(r"(^|_)(addmm|mm|bmm)(_|$)", name):
            counts["float_matmul"] += 1
    return counts


def read_package_metadata(package) -> dict:
    """The ``extra/metadata.json`` of a ``.pt2``."""
    with zipfile.ZipFile(package) as archive:
        name = next(n for n in archive.namelist() if n.endswith("extra/" + METADATA_FILE))
        return json.loads(archive.read(name))


def _stamp_metadata(package: Path, extra: dict) -> dict:
    """Add ``extra`` to the package's embedded metadata and to its sidecar (new sha256).

    export_aoti writes the metadata it knows; precision and calibration are added here by
    rewriting the one zip entry (every entry stored uncompressed, as torch writes them)."""
    partial = package.with_name(package.name + ".stamp.pt2")
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(partial, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("extra/" + METADATA_FILE):
                metadata = dict(json.loads(data), **extra)
                data = json.dumps(metadata, sort_keys=True).encode()
            target.writestr(item, data)
    os.replace(partial, package)
    sidecar = json.loads(package.with_suffix(".json").read_text())
    kept = {key: sidecar[key] for key in ("export_seconds", "compile_seconds", "inductor_configs") if key in sidecar}
    write_sidecar(package, metadata, **kept)
    return metadata


def export_int8_aoti(
    model: nn.Module,
    out_path,
    images: Sequence[np.ndarray],
    *,
    scope: str = "all",
    calibration: Optional[dict] = None,
    dynamic: bool = True,
    example_size: Sequence[int] = DEFAULT_EXAMPLE_SIZE,
    **settings,
) -> Path:
    """Quantize ``model`` (a DETR) calibrated on ``images`` and compile it with AOTInductor into
    ``out_path`` (``.pt2`` + sidecar), as :func:`~detr_deploy.export.aoti.export_aoti` does for
    float32 (``dynamic`` and ``example_size`` are its). The metadata adds ``precision: "int8"``,
    ``quantization`` (method, scope, ``calibration``: where the images came from) and ``kernels``
    (:func:`kernel_counts`).

    Raises RuntimeError if the compiled code has no int8 kernel: the int8 passes did not run."""
    quantize_pt2e, _ = _torchao()
    import torchao

    pipeline = int8_pipeline(model, images, scope, **settings)
    # export_aoti compiles with autograd off: Inductor freezes (and so lowers to int8 kernels)
    # only then; with it on, the compile succeeds silently with dequantize + float32 convolutions
    path = aoti.export_aoti(pipeline, out_path, dynamic=dynamic, example_size=example_size)
    kernels = kernel_counts(path)
    if kernels["int8_conv"] + kernels["int8_linear"] == 0:
        raise RuntimeError(
            f"{relative(path)}: no int8 kernel in the compiled code ({kernels}): Inductor's int8 "
            "passes did not match; import torchao's x86 quantizer before compiling, with freezing on"
        )
    _stamp_metadata(
        path,
        {
            "precision": "int8",
            "quantization": {
                "method": "PT2E static post-training quantization, X86InductorQuantizer (int8, per-channel weights)",
                "scope": scope,
                "torchao_version": torchao.__version__,
                "calibration": dict(calibration or {}, num_images=len(images)),
            },
            "kernels": kernels,
        },
    )
    return path


# this module's part of a package (with aoti's own: see cached_int8_aoti)
_INT8_STEPS = (
    _fold,
    _FusedBlock,
    _SplitAttention,
    fuse_for_int8,
    _quantizer,
    quantize_network,
    int8_pipeline,
    export_int8_aoti,
    _stamp_metadata,
    kernel_counts,
)


def _images_digest(images: Sequence[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for image in images:
        digest.update(str(image.shape).encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def cached_int8_aoti(
    model: nn.Module,
    images: Sequence[np.ndarray],
    *,
    cache_dir=CACHE_DIR,
    name: str = "model",
    scope: str = "all",
    calibration: Optional[dict] = None,
    **settings,
) -> Path:
    """:func:`export_int8_aoti` once per distinct input, kept as ``cache_dir/NAME-int8-HASH.pt2``.

    The hash covers what aoti's own cache covers (weights, settings, torch, the graph's code)
    plus the calibration images, the scope, torchao's version and this module's code."""
    _torchao()
    import torchao

    digest = hashlib.sha256()
    digest.update(aoti._hash_inputs(model, settings).encode())
    digest.update(_images_digest(images).encode())
    digest.update(json.dumps([scope, torchao.__version__, calibration], sort_keys=True, default=str).encode())
    for code in _INT8_STEPS:
        digest.update(inspect.getsource(code).encode())
    path = Path(cache_dir) / f"{name}-int8-{digest.hexdigest()[:16]}.pt2"
    if path.is_file() and path.with_suffix(".json").is_file():
        return path
    print(f"quantizing and compiling {relative(path)} with AOTInductor (minutes on 2 cores, once) ...", flush=True)
    return export_int8_aoti(model, path, images, scope=scope, calibration=calibration, **settings)


def demo_int8_aoti(num_images: int = 32, scope: str = "all", cache_dir=CACHE_DIR) -> Path:
    """The demo model (``data/models/demo_weights.pth``, its settings from ``demo.json``) as a cached
    int8 package, calibrated on ``num_images`` synthetic cards of :data:`CALIBRATION_SEED`."""
    from detr_deploy.demo_model import demo_settings
    from detr_deploy.model.checkpoint import load_model

    model = load_model(MODELS_DIR / "demo_weights.pth").eval()
    images = calibration_images(num_images)
    return cached_int8_aoti(
        model,
        images,
        cache_dir=cache_dir,
        name="demo",
        scope=scope,
        calibration=calibration_record(),
        **demo_settings(),
    )
