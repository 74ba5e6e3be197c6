"""A pre-norm transformer block: x + attn(norm(x)), then x + ffn(norm(x)).

Shape legend: B batch, T tokens, D model, E experts.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .moe import MoEOutput


@dataclass
class BlockOutput:
    x: Tensor                             # (B, T, D)
    aux_losses: dict[str, Tensor]         # by name, from attention and FFN
    tokens_per_expert: Tensor | None      # (E,) for an MoE FFN, else None


class Block(nn.Module):
    """Receives its parts: any attention (x -> (y, aux)) or None (no attention
    sub-layer, no norm: the ``identity`` kind), and any FFN (dense tensor or
    ``MoEOutput``)."""

    def __init__(self, attn: nn.Module | None, ffn: nn.Module, d_model: int):
        super().__init__()
        self.norm_attn = nn.LayerNorm(d_model) if attn is not None else None
        self.attn = attn
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = ffn

    def forward(self, x: Tensor) -> BlockOutput:
        aux: dict[str, Tensor] = {}
        if self.attn is not None:
            y, aux = self.attn(self.norm_attn(x))
            x = x + y
        out = self.ffn(self.norm_ffn(x))
        if isinstance(out, MoEOutput):
            aux = {**aux, **out.aux_losses}
            return BlockOutput(x + out.out, aux, out.tokens_per_expert)
        return BlockOutput(x + out, aux, None)
