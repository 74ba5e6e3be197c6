"""The dense channel mixer (also the shared expert of a mixture of experts).

Shape legend: N tokens (any leading dims), D model, F hidden.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .registry import builder


class DenseFFN(nn.Module):
    """Linear D -> F, GELU, Linear F -> D."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(d_model, hidden)
        self.down = nn.Linear(hidden, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))                # (..., D)


@builder("ffn", "dense")
def build_dense(cfg, d_model: int) -> nn.Module:
    return DenseFFN(d_model, cfg.expansion * d_model)
