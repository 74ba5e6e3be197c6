"""Softmax token mixers: full attention and segmented sliding-window attention.

Shape legend: B batch, T tokens, D model, H heads, Dh head dim (D / H),
N blocks (ceil(T / w)), w block size, W keys per query block (2w here).

Every attention module maps (B, T, D) -> ((B, T, D), aux dict); aux holds auxiliary
losses by name (empty for these two). The blocked helpers here are shared with
dynamic-span attention.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .positions import alibi_bias, rotate
from .registry import builder


class HeadProjection(nn.Module):
    """The qkv and output projections every attention kind shares."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"heads={heads} does not divide d_model={d_model}")
        # Dh is fixed here, not derived from D in forward, so that head pruning
        # (trainers.compress) can keep H' < H heads of the same Dh
        self.heads, self.head_dim = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rope = False          # rotary positions (``positions: rope``, set by the model)

    def split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, D) -> q, k, v each (B, H, T, Dh); q and k rotated with ``rope``."""
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        if self.rope:
            q, k = rotate(q), rotate(k)
        return q, k, v

    def merge(self, y: Tensor) -> Tensor:
        """(B, H, T, Dh) -> (B, T, D) through the output projection."""
        b, h, t, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * dh))


# --- blocked (segmented) helpers -------------------------------------------------------
def to_blocks(x: Tensor, w: int) -> Tensor:
    """(B, H, T, Dh) -> (B, H, N, w, Dh), zero-padding T up to N * w."""
    b, h, t, dh = x.shape
    n = math.ceil(t / w)
    if n * w != t:
        x = F.pad(x, (0, 0, 0, n * w - t))
    return x.view(b, h, n, w, dh)


def key_slabs(x: Tensor, step: int, before: int, width: int) -> Tensor:
    """(B, H, T, Dh) -> (B, H, N, W, Dh), N = ceil(T / step): slab n holds the ``width``
    tokens from n * step - ``before`` on (the keys of query block n); tokens outside
    [0, T) are zeros (callers mask them by position).

    One padded copy, then ``unfold``: the overlapping slabs are a strided view, and
    its backward is a single fused accumulation (no per-block cat/slice copies).
    """
    t = x.shape[2]
    n = math.ceil(t / step)
    padded = F.pad(x, (0, 0, before, (n - 1) * step + width - before - t))
    return padded.unfold(2, width, step).transpose(-1, -2)


def slab_positions(t: int, step: int, before: int, width: int,
                   device: torch.device) -> tuple[Tensor, Tensor]:
    """Absolute positions of blocked queries (N, step, 1) and of their ``key_slabs``
    (N, 1, W)."""
    starts = torch.arange(math.ceil(t / step), device=device) * step
    qpos = starts[:, None, None] + torch.arange(step, device=device)[None, :, None]
    kpos = starts[:, None, None] - before + torch.arange(width, device=device)[None, None, :]
    return qpos, kpos


def neighbour_blocks(x: Tensor, w: int, before: int = 1, after: int = 0) -> Tensor:
    """(B, H, T, Dh) -> (B, H, N, W, Dh) with W = (before + 1 + after) * w: the keys of
    each block of w queries, blocks n - before .. n + after (``key_slabs``)."""
    return key_slabs(x, w, before * w, (before + 1 + after) * w)


def block_positions(t: int, w: int, before: int, after: int,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    """Absolute positions of blocked queries (N, w, 1) and their keys (N, 1, W)."""
    return slab_positions(t, w, before * w, (before + 1 + after) * w, device)


# --- modules ---------------------------------------------------------------------------
def full_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool, alibi: bool) -> Tensor:
    """SDPA over all T keys, (B, H, T, Dh); with ``alibi`` a per-head distance bias
    (and the causal mask folded into it)."""
    if not alibi:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    pos = torch.arange(q.shape[2], device=q.device)
    dist = pos[:, None] - pos[None, :]                                 # (T, T) query - key
    bias = alibi_bias(q.shape[1], dist).to(q.dtype)                   # (H, T, T)
    if causal:
        bias = bias.masked_fill(dist < 0, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None])


class FullAttention(nn.Module):
    """Multi-head softmax attention over all T tokens (SDPA picks the kernel).
    ``alibi``: whether ``positions: alibi`` biases the scores (set by the model)."""

    def __init__(self, d_model: int, heads: int, causal: bool = False):
        super().__init__()
        self.proj = HeadProjection(d_model, heads)
        self.causal = causal
        self.alibi = False

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        q, k, v = self.proj.split(x)                          # (B, H, T, Dh)
        y = full_attention(q, k, v, self.causal, self.alibi)
        return self.proj.merge(y), {}


class SlidingWindowAttention(nn.Module):
    """Segmented local attention (Longformer/Transformer-XL style blocks).

    The sequence is cut into blocks of ``window`` tokens; each query block attends to
    its own block and the previous one (with a causal mask when ``causal``). Work and
    memory are O(T * w), never O(T^2): scores exist only per block, (N, w, 2w).
    """

    def __init__(self, d_model: int, heads: int, window: int, causal: bool = False):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.proj = HeadProjection(d_model, heads)
        self.window = window
        self.causal = causal
        self.alibi = False                          # ``positions: alibi``

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b, t, _ = x.shape
        q, k, v = self.proj.split(x)                          # (B, H, T, Dh)
        w = self.window
        if t <= w:  # one block with no predecessor: exactly full attention
            y = full_attention(q, k, v, self.causal, self.alibi)
            return self.proj.merge(y), {}
        h, dh = q.shape[1], q.shape[3]
        qb = to_blocks(q, w)                                  # (B, H, N, w, Dh)
        n = qb.shape[2]
        kb = neighbour_blocks(k, w)                           # (B, H, N, 2w, Dh)
        vb = neighbour_blocks(v, w)                           # (B, H, N, 2w, Dh)
        qpos, kpos = block_positions(t, w, 1, 0, x.device)
        allowed = (kpos >= 0) & (kpos < t)                    # (N, 1, 2w)
        if self.causal:
            allowed = allowed & (kpos <= qpos)                # (N, w, 2w)
        if self.alibi:                        # a per-head bias: heads x blocks as "heads"
            bias = torch.where(allowed, alibi_bias(h, qpos - kpos).to(q.dtype),
                               float("-inf"))                              # (H, N, w, 2w)
            y = F.scaled_dot_product_attention(
                qb.reshape(b, h * n, w, dh), kb.reshape(b, h * n, 2 * w, dh),
                vb.reshape(b, h * n, 2 * w, dh), attn_mask=bias.reshape(1, h * n, w, 2 * w))
            return self.proj.merge(y.view(b, h, n * w, dh)[:, :, :t]), {}
        # Blocks as SDPA's "heads" (B*H, N, ...) and a 4-D mask: only 4-D inputs reach
        # the fused CPU/GPU kernels; anything else falls back to the slower math path.
        y = F.scaled_dot_product_attention(
            qb.reshape(b * h, n, w, dh), kb.reshape(b * h, n, 2 * w, dh),
            vb.reshape(b * h, n, 2 * w, dh), attn_mask=allowed.expand(n, w, 2 * w)[None])
        y = y.view(b, h, n * w, dh)[:, :, :t]                 # (B, H, T, Dh)
        return self.proj.merge(y), {}


@builder("attention", "full")
def build_full(cfg, d_model: int, causal: bool) -> nn.Module:
    return FullAttention(d_model, cfg.heads, causal=causal)


@builder("attention", "sliding_window")
def build_sliding_window(cfg, d_model: int, causal: bool) -> nn.Module:
    return SlidingWindowAttention(d_model, cfg.heads, cfg.window, causal=causal)


@builder("attention", "identity")
def build_identity(cfg, d_model: int, causal: bool) -> None:
    """No token mixer: the block keeps only its FFN sub-layer (NAS-Bench-201's skip)."""
    return None
