"""The built-in attention kinds: fields, checks, cost and labels, one spec each.

Cost signature: ``cost(cfg: AttentionConfig, d_model, seq_len, causal) -> Part`` for
one sample, the qkv/output projections included, the pre-norm not (the block adds
it when ``spec.norm``). FLOPs conventions (what FlopCounterMode counts):

- ``full``: dense T x T scores and mixing; a causal mask is *not* halved, because
  SDPA's math/efficient kernels and FlopCounterMode's formula do the dense work.
- ``sliding_window`` (w): the sequence is padded to blocks of w; each query block
  attends to its own and the previous block, i.e. 2w keys per query. If T <= w it is
  plain full attention over T.
- ``dynamic_span`` (S): query blocks of c = ``span_query_block(S)`` tokens, each
  scoring the slab of keys any of its queries reaches: S + c - 1 keys causal,
  2S + c - 2 bidirectional, rounded up to 16 (``span_keys``); one block of all T
  keys if the blocks would score as many pairs as T x T (``span_blocked``; always
  when T <= S).
  Training computes the whole window whatever the learned span; evaluation crops it
  to ``cropped_span`` (the effective cost: the same formula with S = the crop).
  The count is the pairs computed, as FlopCounterMode counts them; the pairs used
  are T x S (causal) or T x (2S - 1): the slab's overhang is about c keys per query.
- ``linear``: elu+1 features with a ones column appended to V (Dv = Dh + 1).
  Bidirectional: phi(K)^T V then phi(Q) S. Causal: chunks of
  ``LINEAR_ATTENTION_CHUNK``: a masked intra-chunk quadratic part plus a carried state.
- ``identity``: no token mixing at all (NAS-Bench-201's skip): the layer is its FFN.

KV floats: 2 * T_kv * D with T_kv = T (full), min(T, 2w) (sliding window), min(T, S)
(dynamic span); linear attention keeps its state, H * Dh * (Dh + 1) floats.
"""
from __future__ import annotations

import math

from ..arch import AttentionConfig
from ..choices import Field, as_int, at_least
from ..errors import ConfigError
from .base import KindSpec, Part, linear, make_config
from .registries import register_attention

LINEAR_ATTENTION_CHUNK = 64   # causal linear attention processes chunks of this many tokens
SPAN_BLOCK = 8                # an evaluated span is rounded up to a multiple of this
SPAN_QUERY_BLOCK = 32         # fewest queries per dynamic_span block (``span_query_block``)
KEY_ALIGN = 16                # dynamic_span key slabs are whole multiples of this (``span_keys``)
POSITIVE = at_least(1)
HEADS = ("heads", Field(as_int, POSITIVE))


def span_ramp(max_span: int) -> int:
    """Ramp length R of the soft span mask: the paper's 32 for long spans, a quarter of
    the span for short ones."""
    return max(1, min(32, max_span // 4))


def cropped_span(longest: float, max_span: int, ramp: int | None = None) -> int:
    """Keys per query distance an evaluated ``dynamic_span`` layer keeps.

    The soft mask m(d) = clamp((R + z - d) / R, 0, 1) is zero from d = z + R on, so
    the longest head span plus the ramp, rounded up to ``SPAN_BLOCK`` and capped at
    ``max_span``, drops only keys of weight zero (Sukhbaatar et al. 2019, sec. 3).
    ``ramp`` defaults to ``span_ramp(max_span)``, the one the built model uses.
    """
    ramp = span_ramp(max_span) if ramp is None else ramp
    needed = math.ceil(max(0.0, longest) + ramp - 1e-6)
    return max(1, min(max_span, math.ceil(needed / SPAN_BLOCK) * SPAN_BLOCK))


def span_query_block(span: int) -> int:
    """Queries per block of a ``dynamic_span`` layer whose window is ``span`` keys.

    Smaller blocks waste fewer keys (a block's slab overhangs by c - 1 per query) but
    run more, smaller SDPA tiles. A quarter of the span (in whole ``SPAN_BLOCK`` units),
    at least ``SPAN_QUERY_BLOCK`` or the whole span if shorter, was the fastest choice
    measured on CPU (one thread, T = 2048, spans 32-512, causal and bidirectional):
    10-36% faster than blocks of the whole span at spans of 64 and more; blocks under
    32 queries lose to per-block overhead.
    """
    return min(span, max(SPAN_QUERY_BLOCK, span // (4 * SPAN_BLOCK) * SPAN_BLOCK))


def span_keys(span: int, causal: bool) -> tuple[int, int]:
    """(queries per block c, keys per block W) of blocked ``dynamic_span``: the keys
    within distance < ``span`` of any query of the block (S + c - 1 causal,
    2S + c - 2 bidirectional), rounded up to ``KEY_ALIGN``: SDPA's CPU kernel
    vectorises over keys, and a slab of 63 keys ran 1.5x slower than one of 64."""
    c = span_query_block(span)
    needed = (span + c - 1) if causal else (2 * span + c - 2)
    return c, math.ceil(needed / KEY_ALIGN) * KEY_ALIGN


def span_blocked(seq_len: int, span: int, causal: bool) -> bool:
    """Whether ``dynamic_span`` with window ``span`` runs blocked; otherwise it is
    one block of all T keys (always when T <= span: its blocks would score more pairs)."""
    c, width = span_keys(span, causal)
    return math.ceil(seq_len / c) * c * width < seq_len ** 2


def attention_keys(att: AttentionConfig, seq_len: int, causal: bool) -> tuple[int, int]:
    """(padded query count, keys per query) the blocked attention kinds compute."""
    t = seq_len
    if att.kind == "dynamic_span":
        if not span_blocked(t, att.max_span, causal):
            return t, t
        c, width = span_keys(att.max_span, causal)
        return math.ceil(t / c) * c, width
    if att.kind != "sliding_window" or t <= att.window:
        return t, t
    return math.ceil(t / att.window) * att.window, 2 * att.window


def _softmax_cost(att: AttentionConfig, d: int, t: int, causal: bool, kv_tokens: int) -> Part:
    """Projections + blocked or full softmax attention; the span kind adds H params."""
    tq, keys = attention_keys(att, t, causal)
    core = 4.0 * tq * keys * d                          # QK^T and AV over all heads
    params = att.heads if att.kind == "dynamic_span" else 0   # one learnable span per head
    mix = Part(params, params, core, 2.0 * min(t, kv_tokens) * d,
               8.0 * t * d + att.heads * tq * keys)
    return linear(d, 3 * d, t) + linear(d, d, t) + mix


def _linear_cost(att: AttentionConfig, d: int, t: int, causal: bool) -> Part:
    h, dh = att.heads, d // att.heads
    dv = dh + 1
    if not causal:
        core = 4.0 * t * h * dh * dv                    # phi(K)^T V and phi(Q) S
        scores = 0.0
    else:
        c = min(t, LINEAR_ATTENTION_CHUNK)
        tp = math.ceil(t / c) * c
        core = 4.0 * tp * h * dh * dv + 2.0 * tp * c * h * (dh + dv)
        scores = h * t * c
    mix = Part(0, 0, core, h * dh * dv, 8.0 * t * d + scores)
    return linear(d, 3 * d, t) + linear(d, d, t) + mix


def _needs(name: str, kind: str):
    def check(cfg: AttentionConfig, key: str) -> None:
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{key}.{name}", f"{kind} needs {name} >= 1")
    return check


def _identity_check(cfg: AttentionConfig, key: str) -> None:
    if cfg.heads != 1:   # one canonical config, so equal models share an arch_id
        raise ConfigError(f"{key}.heads", f"identity has no heads; must be 1, got {cfg.heads}")


def _make(kind: str):
    return make_config(AttentionConfig, kind)


def _heads_label(a: AttentionConfig, extra: str = "") -> str:
    return f"{a.kind}(h={a.heads}{extra})"


def _register_builtins() -> None:
    register_attention(KindSpec(
        "full", _make("full"),
        cost=lambda a, d, t, causal: _softmax_cost(a, d, t, causal, t),
        label=_heads_label, short=lambda a: "full", fields=(HEADS,), slices=True))
    register_attention(KindSpec(
        "sliding_window", _make("sliding_window"),
        cost=lambda a, d, t, causal: _softmax_cost(a, d, t, causal, 2 * a.window),
        label=lambda a: _heads_label(a, f",w={a.window}"), short=lambda a: f"sw{a.window}",
        fields=(HEADS, ("window", Field(as_int, POSITIVE))),
        validate=_needs("window", "sliding_window"), slices=True))
    register_attention(KindSpec(
        "dynamic_span", _make("dynamic_span"),
        cost=lambda a, d, t, causal: _softmax_cost(a, d, t, causal, a.max_span),
        label=lambda a: _heads_label(a, f",span={a.max_span}"), short=lambda a: "span",
        fields=(HEADS, ("max_span", Field(as_int, POSITIVE))),
        validate=_needs("max_span", "dynamic_span"), slices=True))
    register_attention(KindSpec(
        "linear", _make("linear"), cost=_linear_cost,
        label=_heads_label, short=lambda a: "lin", fields=(HEADS,), slices=True))
    register_attention(KindSpec(
        "identity", lambda v: AttentionConfig("identity", heads=1),
        cost=lambda a, d, t, causal: Part(), label=lambda a: "identity",
        short=lambda a: "skip", validate=_identity_check, norm=False, slices=True))


_register_builtins()


