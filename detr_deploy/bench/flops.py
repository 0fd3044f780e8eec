"""How much arithmetic a model does, and how fast this machine can do arithmetic at best.

``count_flops`` counts the floating-point operations of one forward pass with torch's
``FlopCounterMode`` (convolutions, matrix products, attention: the ops that dominate a
DETR; element-wise ops, normalisation and softmax are not counted, so results are a
slight underestimate). A multiply-add counts as 2 FLOPs, as in most papers' "FLOPs"
tables once doubled (papers often quote multiply-adds, ~half these numbers).

``gemm_peak_gflops`` times a large float32 matrix product: the best rate torch reaches on
this machine with the given thread count. ``achieved / peak`` then says how far a runtime
is from the hardware limit.
"""

from __future__ import annotations

import copy
import time
from typing import Dict, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

__all__ = ["count_flops", "conv2d_flops", "linear_flops", "gemm_peak_gflops", "detr_flops"]


def conv2d_flops(
    in_channels: int,
    out_channels: int,
    kernel: Tuple[int, int],
    out_hw: Tuple[int, int],
    batch: int = 1,
    groups: int = 1,
) -> int:
    """FLOPs of a Conv2d by hand: 2 x (output elements) x (inputs per output); bias not counted."""
    return 2 * batch * out_channels * out_hw[0] * out_hw[1] * (in_channels // groups) * kernel[0] * kernel[1]


def linear_flops(in_features: int, out_features: int, rows: int = 1) -> int:
    """FLOPs of a Linear on ``rows`` input vectors by hand: 2 x rows x in x out; bias not counted."""
    return 2 * rows * in_features * out_features


def _fused_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """q [B, H, L, E], k [B, H, S, E], v [B, H, S, Ev]: 2*B*H*L*S*E (scores) + 2*B*H*L*S*Ev (mixing)."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(module: nn.Module, *inputs, by_operator: bool = False):
    """FLOPs of ``module(*inputs)`` counted by torch's FlopCounterMode.

    Runs with autograd on (results discarded): in ``no_grad``/``inference_mode``,
    ``nn.MultiheadAttention`` takes a fused fast path whose single kernel the counter
    does not see, and its attention FLOPs would be missed.
    Returns the total, or (total, {operator name: FLOPs}) with ``by_operator``.
    """
    # CPU attention runs as one fused kernel torch's counter has no formula for (it would
    # count 0): give it the same formula as the other scaled-dot-product kernels.
    mapping = {}
    fused = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if fused is not None:
        mapping[fused] = _fused_attention_flops
    counter = FlopCounterMode(display=False, custom_mapping=mapping)
    with torch.enable_grad(), counter:
        module(*inputs)
    total = int(counter.get_total_flops())
    if not by_operator:
        return total
    per_op: Dict[str, int] = {}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        per_op[str(op).split(".")[-1]] = int(flops)
    return total, per_op


def detr_flops(model: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """FLOPs of a DETR's forward on a normalised float image batch [batch, 3, height, width].

    Counted on a copy moved to the ``meta`` device: shapes only, no arithmetic, so an
    R50 at 800x1216 takes half a second instead of ten (same count).
    """
    meta_model = copy.deepcopy(model).eval().to("meta")
    pixels = torch.zeros(batch, 3, height, width, device="meta")
    return count_flops(meta_model, pixels)


def gemm_peak_gflops(
    threads: Optional[int] = None, size: int = 2048, repeats: int = 5, min_seconds: float = 0.3
) -> float:
    """Best float32 matrix-multiply rate (GFLOP/s) of ``size x size`` matrices on ``threads``.

    Takes the fastest of ``repeats`` timed products (each repeated until ``min_seconds``
    pass): the machine's practical peak, which short model layers rarely reach.
    ``threads`` temporarily sets torch's intra-op thread count (None: leave it).
    """
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(size, size, generator=generator)
        b = torch.randn(size, size, generator=generator)
        out = torch.empty(size, size)
        torch.mm(a, b, out=out)  # warm-up: thread pool start, page faults
        flops = 2.0 * size**3
        best = float("inf")
        for _ in range(repeats):
            calls, start = 0, time.perf_counter()
            while True:
                torch.mm(a, b, out=out)
                calls += 1
                elapsed = time.perf_counter() - start
                if elapsed >= min_seconds:
                    break
            best = min(best, elapsed / calls)
        return flops / best / 1e9
    finally:
        torch.set_num_threads(previous)


def flops_table(model: nn.Module, sizes: Sequence[Tuple[int, int]]) -> Dict[Tuple[int, int], int]:
    """``{(height, width): FLOPs}`` of one image through ``model`` at each size."""
    return {(h, w): detr_flops(model, h, w) for h, w in sizes}
