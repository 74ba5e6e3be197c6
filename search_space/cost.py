"""Analytic cost of an architecture on a task shape, without torch.

The numbers mirror ``trainers.model.build_model`` exactly where exactness is possible
(parameters) and as the model computes them where it is not (FLOPs):

* **Parameters** equal ``sum(p.numel() for p in model.parameters())``. Buffers (the
  DeepSeek-V3 router bias) are not parameters and are not counted.
* **Active parameters** are those one token uses: everything except the experts it
  was not routed to (router + shared experts + ``k`` experts).
* **FLOPs** are forward FLOPs for one sample at ``shape.seq_len``, 2 per multiply-add,
  matmuls only: this is what ``torch.utils.flop_counter.FlopCounterMode`` counts
  (elementwise ops, softmax, norms and bias additions are not counted), and the
  tests check the model against it within 2%. Conventions:

  - ``full``: dense T x T scores and mixing; a causal mask is *not* halved, because
    SDPA's math/efficient kernels and FlopCounterMode's formula do the dense work.
  - ``sliding_window`` (w): the sequence is padded to blocks of w; each query block
    attends to its own and the previous block, i.e. 2w keys per query. If T <= w it is
    plain full attention over T.
  - ``dynamic_span`` (S): blocks of S; causal queries see the previous and own block
    (2S keys), bidirectional ones also the next (3S keys); one block if T <= S.
    Computed over the whole window whatever the learned span (the soft mask zeroes
    weights, it does not skip work).
  - ``linear``: elu+1 features with a ones column appended to V (so the normaliser
    rides in the same matmul, Dv = Dh + 1). Bidirectional: phi(K)^T V then phi(Q) S.
    Causal: chunks of ``LINEAR_ATTENTION_CHUNK``: a masked intra-chunk quadratic part
    plus a carried state.
  - MoE: the router matmul, the shared expert on every token and the routed experts
    only on the token slots they receive: k per token (``topk``), or for ``dynamic``
    the k a near-uniform (freshly initialised) router picks, ``min(top_k,
    ceil(top_p * E))`` -- an upper bound once the router sharpens. With a capacity
    factor cf < 1 at most cf * T * k slots are kept.
* **KV bytes**: fp32 keys and values a layer keeps per sample for incremental decoding:
  2 * T_kv * D * 4 with T_kv = T (full), min(T, 2w) (sliding window), min(T, S)
  (dynamic span); linear attention keeps its state, H * Dh * (Dh + 1) floats.
* **Activation bytes**: a rough fp32 estimate of what backward keeps per sample:
  per layer ~8 T D (norms, qkv, attention output, projections, residuals), the score
  matrices H * T * keys, 2 T F per FFN slot (pre/post GELU) and T E router scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import names
from .arch import ArchConfig, AttentionConfig, FFNConfig, TaskShape

LINEAR_ATTENTION_CHUNK = 64   # causal linear attention processes chunks of this many tokens
BYTES_PER_FLOAT = 4


@dataclass(frozen=True)
class Cost:
    params: int
    active_params: int
    flops: float
    kv_bytes: float
    activation_bytes: float

    def as_metrics(self) -> dict[str, float]:
        return {
            names.PARAMS: self.params,
            names.ACTIVE_PARAMS: self.active_params,
            names.FLOPS: self.flops,
            names.KV_BYTES: self.kv_bytes,
            names.ACTIVATION_BYTES: self.activation_bytes,
        }


@dataclass(frozen=True)
class _Part:
    """Cost of one component; ``floats`` are activation floats kept for backward."""

    params: int = 0
    active: int = 0
    flops: float = 0.0
    kv_floats: float = 0.0
    floats: float = 0.0

    def __add__(self, other: "_Part") -> "_Part":
        return _Part(self.params + other.params, self.active + other.active,
                     self.flops + other.flops, self.kv_floats + other.kv_floats,
                     self.floats + other.floats)


def _linear(n_in: int, n_out: int, tokens: int, bias: bool = True) -> _Part:
    p = n_in * n_out + (n_out if bias else 0)
    return _Part(p, p, 2.0 * tokens * n_in * n_out)


def expected_k(ffn: FFNConfig) -> int:
    """Experts a token uses: top_k, or for ``dynamic`` what a near-uniform router picks."""
    r = ffn.router
    if r.kind == "dynamic":
        return min(r.top_k, max(1, math.ceil(r.top_p * ffn.experts - 1e-9)))
    return r.top_k


def attention_keys(att: AttentionConfig, seq_len: int, causal: bool) -> tuple[int, int]:
    """(padded query count, keys per query) the blocked attention kinds compute."""
    t = seq_len
    if att.kind == "full" or att.kind == "linear":
        return t, t
    block = att.window if att.kind == "sliding_window" else att.max_span
    if t <= block:
        return t, t
    blocks = math.ceil(t / block)
    width = 2 if (att.kind == "sliding_window" or causal) else 3
    return blocks * block, width * block


def _attention(att: AttentionConfig, d: int, t: int, causal: bool) -> _Part:
    h, dh = att.heads, d // att.heads
    part = _linear(d, 3 * d, t) + _linear(d, d, t)          # qkv and output projections
    if att.kind == "linear":
        dv = dh + 1
        if not causal:
            core = 4.0 * t * h * dh * dv                    # phi(K)^T V and phi(Q) S
        else:
            c = min(t, LINEAR_ATTENTION_CHUNK)
            tp = math.ceil(t / c) * c
            core = 4.0 * tp * h * dh * dv + 2.0 * tp * c * h * (dh + dv)
        kv = h * dh * dv
        scores = 0.0 if not causal else h * t * min(t, LINEAR_ATTENTION_CHUNK)
    else:
        tq, keys = attention_keys(att, t, causal)
        core = 4.0 * tq * keys * d                          # QK^T and AV over all heads
        window = {"full": t, "sliding_window": 2 * att.window, "dynamic_span": att.max_span}
        kv = 2.0 * min(t, window[att.kind]) * d
        scores = h * tq * keys
    params = h if att.kind == "dynamic_span" else 0          # one learnable span per head
    return part + _Part(params, params, core, kv, 8.0 * t * d + scores)


def _ffn(ffn: FFNConfig, d: int, t: int) -> _Part:
    f = ffn.expansion * d
    if ffn.kind == "dense":
        return _linear(d, f, t) + _linear(f, d, t) + _Part(floats=2.0 * t * f)
    e, k = ffn.experts, expected_k(ffn)
    router = _linear(d, e, t, bias=False) + _Part(1, 1, floats=t * e)   # + log-temperature
    expert_params = 2 * d * f + f + d
    slots = t * k if ffn.capacity_factor <= 0 else t * k * min(1.0, ffn.capacity_factor)
    experts = _Part(e * expert_params, k * expert_params, 4.0 * slots * d * f,
                    floats=2.0 * slots * f)
    part = router + experts
    if ffn.shared_experts:
        fs = ffn.shared_experts * f
        part = part + _linear(d, fs, t) + _linear(fs, d, t) + _Part(floats=2.0 * t * fs)
    return part


def _layer_norm(d: int) -> _Part:
    return _Part(2 * d, 2 * d)


def estimate_cost(arch: ArchConfig, shape: TaskShape) -> Cost:
    """Cost of ``build_model(arch, shape)`` for one sample of ``shape.seq_len`` tokens."""
    d, t = arch.d_model, shape.seq_len
    if shape.input_dim:
        total = _linear(shape.input_dim, d, t)
    else:
        total = _Part(shape.vocab_size * d, shape.vocab_size * d)
    total = total + _Part(t * d, t * d, floats=t * d)        # learned positions
    for layer in arch.layers:
        total = total + _layer_norm(d) + _attention(layer.attention, d, t, shape.causal)
        total = total + _layer_norm(d) + _ffn(layer.ffn, d, t)
    head_tokens = t if shape.per_token else 1                 # classification mean-pools
    total = total + _layer_norm(d) + _linear(d, shape.num_classes, head_tokens)
    return Cost(
        params=total.params,
        active_params=total.active,
        flops=total.flops,
        kv_bytes=total.kv_floats * BYTES_PER_FLOAT,
        activation_bytes=total.floats * BYTES_PER_FLOAT,
    )
