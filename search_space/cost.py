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
  tests check the model against it within 2%. Each kind's conventions are stated
  with its cost function in ``search_space.kinds`` (attention, ffn, routers).
* **KV bytes**: fp32 keys and values a layer keeps per sample for incremental decoding
  (each attention kind's cost states its count).
* **Effective cost** (``flops_effective``, ``active_params_effective``): the same
  model fed with what training measured (``Realised``): each ``dynamic_span`` layer
  costed at its evaluation-time crop (``cropped_span`` of its longest learned head
  span) and each MoE layer at its router's realised mean k on the validation pass.
  A layer with nothing measured costs as in the static model, so for a model with no
  dynamic part the two are equal.
* **Activation bytes**: a rough fp32 estimate of what backward keeps per sample:
  per layer ~8 T D (norms, qkv, attention output, projections, residuals), the score
  matrices H * T * keys, 2 T F per FFN slot (pre/post GELU) and T E router scores.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from . import names
from .arch import ArchConfig, FFNConfig, TaskShape
from .kinds import ATTENTION, FFN, MODEL_FAMILIES, ROUTER, KindSpec, Part, layer_norm, linear
from .kinds.attention import cropped_span

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
class Realised:
    """What a trained model measured, by layer index: ``spans[i]`` the learned span of
    each head of a ``dynamic_span`` layer (tokens), ``k[i]`` the mean experts per token
    of a MoE layer's router."""

    spans: Mapping[int, tuple[float, ...]] = field(default_factory=dict)
    k: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def from_dynamics(cls, entry: Mapping[str, Any]) -> "Realised":
        """From one experience's entry of ``TrialMetrics.dynamics``
        (``{"spans": {"layers.0.attn": {"heads": [...]}}, "k": {"layers.1.ffn": {"mean": ...}}}``)."""
        spans = {layer_index(n): tuple(v["heads"]) for n, v in entry.get("spans", {}).items()}
        k = {layer_index(n): float(v["mean"]) for n, v in entry.get("k", {}).items()}
        return cls(spans, k)


def layer_index(name: str) -> int:
    """``"layers.3.ffn"`` -> 3: the module names the measurements are keyed by."""
    return int(name.split(".")[1])


def expected_k(ffn: FFNConfig) -> int:
    """Experts a token of a MoE layer uses in the cost model (its router kind's cost)."""
    return ROUTER.get(ffn.router.kind).cost(ffn.router, ffn.experts)


def _pre_norm(spec: KindSpec, d: int) -> Part:
    """The block's LayerNorm of a sub-layer (before it, or after its residual for
    ``norm: post``: the same parameters); a kind without one (identity) has none."""
    return layer_norm(d) if spec.norm else Part()


def block_tokens(arch: ArchConfig, shape: TaskShape) -> tuple[int, int, int]:
    """(tokens from the tokeniser, their width, tokens the blocks see): the task's
    tokens re-cut by ``arch.tokens``, plus a CLS token for ``head: cls``. Raises
    ``ConfigError`` when the task does not allow these kinds."""
    t, width = MODEL_FAMILIES["tokens"].get(arch.tokens, "tokens").cost(shape)
    seen, _ = MODEL_FAMILIES["head"].get(arch.head, "head").cost(
        arch.d_model, t, shape.num_classes, shape.per_token)
    return t, width, seen


def _reference_cost(ref, shape: TaskShape) -> Part:
    """A reference MLP's linear layers on the flattened input (one "token")."""
    widths = ref.widths(shape)
    total = Part()
    for n_in, n_out in zip(widths, widths[1:]):
        total = total + linear(n_in, n_out, 1) + Part(floats=n_out)
    return total


def realised_attention(att: Any, spans: tuple[float, ...] | None) -> Any:
    """The attention config an evaluated layer runs: a span layer at its crop."""
    if att.kind != "dynamic_span" or not spans:
        return att
    return dataclasses.replace(att, max_span=cropped_span(max(spans), att.max_span))


def estimate_cost(arch: ArchConfig, shape: TaskShape, realised: Realised | None = None) -> Cost:
    """Cost of ``build_model(arch, shape)`` for one sample of ``shape.seq_len`` tokens;
    with ``realised``, the effective cost of the trained model in evaluation. A
    reference model (``search_space.reference``) has only its static cost."""
    if not isinstance(arch, ArchConfig):
        return _as_cost(_reference_cost(arch, shape))
    realised = realised or Realised()
    d = arch.d_model
    t_in, width, t = block_tokens(arch, shape)
    total = MODEL_FAMILIES["stem"].get(arch.stem).cost(width, d, t_in, shape.vocab_size)
    total = total + MODEL_FAMILIES["positions"].get(arch.positions).cost(d, t)
    for i, layer in enumerate(arch.layers):
        att, ffn = ATTENTION.get(layer.attention.kind), FFN.get(layer.ffn.kind)
        att_cfg = realised_attention(layer.attention, realised.spans.get(i))
        total = total + _pre_norm(att, d) + att.cost(att_cfg, d, t, shape.causal)
        k = {"k": realised.k[i]} if i in realised.k and layer.ffn.kind == "moe" else {}
        total = total + _pre_norm(ffn, d) + ffn.cost(layer.ffn, d, t, **k)
    _, head = MODEL_FAMILIES["head"].get(arch.head).cost(d, t_in, shape.num_classes, shape.per_token)
    return _as_cost(total + MODEL_FAMILIES["norm"].get(arch.norm).cost(d) + head)


def _as_cost(total: Part) -> Cost:
    return Cost(
        params=total.params,
        active_params=total.active,
        flops=total.flops,
        kv_bytes=total.kv_floats * BYTES_PER_FLOAT,
        activation_bytes=total.floats * BYTES_PER_FLOAT,
    )


def effective_metrics(arch: ArchConfig, shape: TaskShape, realised: Realised) -> dict[str, float]:
    """``flops_effective`` and ``active_params_effective`` of the trained model."""
    cost = estimate_cost(arch, shape, realised)
    return {names.FLOPS_EFFECTIVE: cost.flops, names.ACTIVE_PARAMS_EFFECTIVE: cost.active_params}
