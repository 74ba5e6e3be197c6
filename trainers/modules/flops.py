"""Measured forward FLOPs, counted by ``torch.utils.flop_counter.FlopCounterMode``.

FlopCounterMode has no formula for the CPU flash-attention kernel that
``scaled_dot_product_attention`` dispatches to on CPU, so it would count attention as
zero there; we add the same dense formula it uses for the CUDA kernels.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_aten = torch.ops.aten


def _cpu_flash_flops(query_shape, key_shape, value_shape, *args, out_shape=None,
                     **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _custom_mapping() -> dict:
    op = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is None:  # pragma: no cover - older torch decomposes SDPA into counted bmm
        return {}
    return {op: _cpu_flash_flops}   # FlopCounterMode passes shapes to custom formulas


def measured_flops(model: nn.Module, *inputs: Tensor) -> int:
    """Total FLOPs of one forward of ``model(*inputs)`` (matmuls and attention only)."""
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping())
    with torch.no_grad(), counter:
        model(*inputs)
    return counter.get_total_flops()
