"""Kernelised linear attention (Katharopoulos et al., 2020) with an elu+1 feature map.

Shape legend: B batch, T tokens, D model, H heads, Dh head dim, Dv = Dh + 1 (values
with a ones column, so the normaliser phi(q) . sum phi(k) comes out of the same
matmul as the numerator), N chunks, c chunk size.

Work is O(T * Dh * Dv) per head instead of O(T^2 * Dh). The causal form is chunked:
an exact masked quadratic part inside each chunk plus a state carried across chunks,
which keeps memory at O(T * c) without per-token (Dh, Dv) states.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynas.search_space.kinds.attention import LINEAR_ATTENTION_CHUNK

from .attention import HeadProjection, to_blocks
from .registry import builder


def feature_map(x: Tensor) -> Tensor:
    return F.elu(x) + 1.0


class LinearAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, causal: bool = False,
                 chunk: int = LINEAR_ATTENTION_CHUNK, eps: float = 1e-6):
        super().__init__()
        self.proj = HeadProjection(d_model, heads)
        self.causal = causal
        self.chunk = chunk
        self.eps = eps

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b, t, _ = x.shape
        q, k, v = self.proj.split(x)                                    # (B, H, T, Dh)
        q, k = feature_map(q), feature_map(k)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)        # (B, H, T, Dv)
        if self.causal:
            out = self._causal(q, k, v1, t)
        else:
            state = torch.matmul(k.transpose(-1, -2), v1)               # (B, H, Dh, Dv)
            out = torch.matmul(q, state)                                # (B, H, T, Dv)
        y = out[..., :-1] / (out[..., -1:] + self.eps)                  # (B, H, T, Dh)
        return self.proj.merge(y), {}

    def _causal(self, q: Tensor, k: Tensor, v1: Tensor, t: int) -> Tensor:
        c = min(t, self.chunk)
        # Padded keys sit after every real query, so the causal structure ignores them.
        qc, kc, vc = to_blocks(q, c), to_blocks(k, c), to_blocks(v1, c)  # (B, H, N, c, *)
        kv = torch.matmul(kc.transpose(-1, -2), vc)                     # (B, H, N, Dh, Dv)
        state = kv.cumsum(dim=2) - kv                                   # exclusive prefix
        inter = torch.matmul(qc, state)                                 # (B, H, N, c, Dv)
        scores = torch.matmul(qc, kc.transpose(-1, -2))                 # (B, H, N, c, c)
        scores = scores * torch.ones(c, c, device=q.device, dtype=q.dtype).tril()
        intra = torch.matmul(scores, vc)                                # (B, H, N, c, Dv)
        return (inter + intra).flatten(2, 3)[:, :, :t]                  # (B, H, T, Dv)


@builder("attention", "linear")
def build_linear(cfg, d_model: int, causal: bool) -> nn.Module:
    return LinearAttention(d_model, cfg.heads, causal=causal)
