"""A transformer block: pre-norm x + attn(norm(x)), then x + ffn(norm(x)); or
post-norm norm(x + attn(x)), then norm(x + ffn(x)).

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
    ``MoEOutput``). ``post``: normalise after each residual instead of before."""

    def __init__(self, attn: nn.Module | None, ffn: nn.Module, d_model: int, post: bool = False):
        super().__init__()
        self.post = post
        self.drop = nn.Dropout(0.0)        # on each sub-layer's output; p set by training
        self.norm_attn = nn.LayerNorm(d_model) if attn is not None else None
        self.attn = attn
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = ffn

    def forward(self, x: Tensor) -> BlockOutput:
        aux: dict[str, Tensor] = {}
        if self.attn is not None:
            x, aux = self._residual(x, self.attn, self.norm_attn)
        out = self.ffn(x if self.post else self.norm_ffn(x))
        loads = None
        if isinstance(out, MoEOutput):
            aux, loads, out = {**aux, **out.aux_losses}, out.tokens_per_expert, out.out
        out = self.drop(out)
        x = self.norm_ffn(x + out) if self.post else x + out
        return BlockOutput(x, aux, loads)

    def _residual(self, x: Tensor, attn: nn.Module, norm: nn.Module) -> tuple[Tensor, dict]:
        if self.post:
            y, aux = attn(x)
            return norm(x + self.drop(y)), aux
        y, aux = attn(norm(x))
        return x + self.drop(y), aux
