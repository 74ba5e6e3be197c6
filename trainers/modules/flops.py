"""Measured forward FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on CPU, so it would count attention as
zero there; we add the same dense formula it uses for the CUDA kernels. The experts'
padded ``dynas::grouped_mm`` (``grouped.py``) counts its useful rows only: padding is a
runtime cost, not a model cost.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from . import grouped  # noqa: F401  (defines torch.ops.dynas.grouped_mm)

_aten = torch.ops.aten


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None,
                     **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _grouped_flops(x_shape, weight_shape, bias_shape, slots_shape, *args, out_shape=None,
                   **kwargs) -> int:
    """S useful rows of x (E, C, K) @ their expert's (K, M): 2 * S * K * M."""
    return 2 * slots_shape[0] * x_shape[2] * weight_shape[2]


def _custom_mapping() -> dict:
    mapping = {torch.ops.dynas.grouped_mm: _grouped_flops}
    op = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None:  # older torch decomposes SDPA into counted bmm
        mapping[op] = _cpu_flash_flops   # FlopCounterMode passes shapes to custom formulas
    return mapping


def measured_flops(model: nn.Module, *inputs: Tensor) -> int:
    """Total FLOPs of one forward of ``model(*inputs)`` (matmuls and attention only)."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with torch.no_grad(), counter:
        model(*inputs)
    return counter.get_total_flops()
