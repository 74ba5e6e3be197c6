"""Gated FFN (SwiGLU, Shazeer 2020): silu(x W1) * (x W3), then W2; no biases.

Shape legend: N tokens (any leading dims), S routed slots, D model, F hidden, E experts.

``GLUFFN`` is the dense ``glu`` FFN kind (and a MoE's shared expert when
``expert: glu``); ``GLUExpertGroup`` holds E such experts batched for MoE dispatch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .grouped import grouped_mm, pad, padded_slots, unpad, use_padded
from .registry import builder


class GLUFFN(nn.Module):
    """Linear D -> F twice (gate W1, value W3), silu(gate) * value, Linear F -> D."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)     # W1
        self.up = nn.Linear(d_model, hidden, bias=False)       # W3
        self.down = nn.Linear(hidden, d_model, bias=False)     # W2

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))   # (..., D)


class GLUExpertGroup(nn.Module):
    """E SwiGLU experts, weights stored batched: (E, D, F) twice and (E, F, D);
    ``expert_weights()`` returns them by name, as ``ExpertGroup``'s does."""

    EXPERT_WEIGHTS = ("w_gate", "w_up", "w_down")

    def __init__(self, experts: int, d_model: int, hidden: int):
        super().__init__()
        self.w_gate = nn.Parameter(torch.empty(experts, d_model, hidden))
        self.w_up = nn.Parameter(torch.empty(experts, d_model, hidden))
        self.w_down = nn.Parameter(torch.empty(experts, hidden, d_model))
        for w, fan_in in ((self.w_gate, d_model), (self.w_up, d_model), (self.w_down, hidden)):
            bound = 1.0 / math.sqrt(fan_in)          # nn.Linear's default init
            nn.init.uniform_(w, -bound, bound)

    @property
    def num_experts(self) -> int:
        return self.w_up.shape[0]

    def expert_weights(self) -> dict[str, Tensor]:
        """The stacked (E, in, out) matmul weights by attribute name."""
        return {name: getattr(self, name) for name in self.EXPERT_WEIGHTS}

    def forward(self, x: Tensor, counts: list[int]) -> Tensor:
        """x (S, D) sorted by expert, ``counts[e]`` rows each -> (S, D)."""
        return (self.padded if use_padded(x, counts) else self.loop)(x, counts)

    def padded(self, x: Tensor, counts: list[int]) -> Tensor:
        """``forward`` as one padded bmm per matmul (``grouped.py``)."""
        slots, cap = padded_slots(counts, x.device)
        xp = pad(x, slots, len(counts), cap)                                  # (E, C, D)
        h = (F.silu(grouped_mm(xp, self.w_gate, None, slots))
             * grouped_mm(xp, self.w_up, None, slots))                        # (E, C, F)
        return unpad(grouped_mm(h, self.w_down, None, slots), slots)          # (S, D)

    def loop(self, x: Tensor, counts: list[int]) -> Tensor:
        """``forward`` as a loop of per-expert matmuls."""
        params = zip(self.w_gate.unbind(0), self.w_up.unbind(0), self.w_down.unbind(0))
        outs = []
        for (w_gate, w_up, w_down), chunk, n in zip(params, x.split(counts), counts):
            if n:
                h = F.silu(chunk @ w_gate) * (chunk @ w_up)           # (n, F)
                chunk = h @ w_down                                     # (n, D)
            outs.append(chunk)
        return torch.cat(outs)


@builder("ffn", "glu")
def build_glu(cfg, d_model: int) -> nn.Module:
    return GLUFFN(d_model, cfg.expansion * d_model)


@builder("expert", "glu")
def build_glu_experts(experts: int, d_model: int, hidden: int) -> nn.Module:
    return GLUExpertGroup(experts, d_model, hidden)
