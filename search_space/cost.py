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
* **Activation bytes**: a rough fp32 estimate of what backward keeps per sample:
  per layer ~8 T D (norms, qkv, attention output, projections, residuals), the score
  matrices H * T * keys, 2 T F per FFN slot (pre/post GELU) and T E router scores.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import names
from .arch import ArchConfig, FFNConfig, TaskShape
from .kinds import ATTENTION, FFN, MODEL_FAMILIES, ROUTER, KindSpec, Part, layer_norm, linear

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


def estimate_cost(arch: ArchConfig, shape: TaskShape) -> Cost:
    """Cost of ``build_model(arch, shape)`` for one sample of ``shape.seq_len`` tokens
    (a reference model from ``search_space.reference`` too)."""
    if not isinstance(arch, ArchConfig):
        return _as_cost(_reference_cost(arch, shape))
    d = arch.d_model
    t_in, width, t = block_tokens(arch, shape)
    total = MODEL_FAMILIES["stem"].get(arch.stem).cost(width, d, t_in, shape.vocab_size)
    total = total + Part(t * d, t * d, floats=t * d)         # learned positions
    for layer in arch.layers:
        att, ffn = ATTENTION.get(layer.attention.kind), FFN.get(layer.ffn.kind)
        total = total + _pre_norm(att, d) + att.cost(layer.attention, d, t, shape.causal)
        total = total + _pre_norm(ffn, d) + ffn.cost(layer.ffn, d, t)
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
