"""Position encodings, by kind (``search_space.kinds.model``: ``positions``).

Shape legend: B batch, H heads, T tokens, Dh head dim, D model.

``learned`` adds a T x D table to the embeddings (absolute positions, the model dynas
always built). ``rope`` and ``alibi`` are relative: a span or a window is a relative
notion, and these make a score depend on the query-key offset only. They live in the
attention modules: ``HeadProjection.rope`` rotates q and k (every attention kind), and
an attention module's ``alibi`` flag biases its softmax scores by
-m_h * |i - j| (``full``, ``sliding_window``, ``dynamic_span``; linear attention has no
scores to bias and gets no position). A builder attaches its kind to the model's
attention modules and returns the absolute table, or None.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .registry import builder

ROPE_BASE = 10000.0


def rotate(x: Tensor, base: float = ROPE_BASE) -> Tensor:
    """RoPE (Su et al. 2021): (B, H, T, Dh) with each pair of dims (2i, 2i+1) of the
    token at position t rotated by t * base^(-2i/Dh); an odd last dim is left as is."""
    t, dh = x.shape[-2], x.shape[-1]
    half = dh // 2
    freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) * 2 / dh)   # (Dh/2,)
    angle = torch.arange(t, device=x.device, dtype=torch.float32)[:, None] * freq           # (T, Dh/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0:2 * half:2], x[..., 1:2 * half:2]                                   # (B, H, T, Dh/2)
    turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2)
    return torch.cat([turned, x[..., 2 * half:]], dim=-1)


def alibi_slopes(heads: int, device: torch.device | str | None = None) -> Tensor:
    """(H,) ALiBi's geometric slopes 2^(-8 h / H), h = 1..H (Press et al. 2022)."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)], device=device)


def alibi_bias(heads: int, distance: Tensor) -> Tensor:
    """-m_h * |distance|, (H, *distance.shape): add to the scores before the softmax.
    The slopes are made here, on the distances' device (a model built on meta, as the
    supernet's skeletons are, holds no tensor for them)."""
    slopes = alibi_slopes(heads, distance.device)
    return -slopes.view(-1, *([1] * distance.dim())) * distance.abs()


def _attention_modules(layers: nn.ModuleList):
    for block in layers:
        attn = getattr(block, "attn", None)
        if attn is not None:
            yield attn


@builder("positions", "learned")
def build_learned(layers: nn.ModuleList, seq_len: int, d_model: int) -> nn.Parameter:
    pos = nn.Parameter(torch.zeros(seq_len, d_model))
    nn.init.normal_(pos, std=0.02)
    return pos


@builder("positions", "rope")
def build_rope(layers: nn.ModuleList, seq_len: int, d_model: int) -> None:
    for attn in _attention_modules(layers):
        attn.proj.rope = True
    return None


@builder("positions", "alibi")
def build_alibi(layers: nn.ModuleList, seq_len: int, d_model: int) -> None:
    for attn in _attention_modules(layers):
        if hasattr(attn, "alibi"):
            attn.alibi = True
    return None


@builder("positions", "none")
def build_no_positions(layers: nn.ModuleList, seq_len: int, d_model: int) -> None:
    return None

