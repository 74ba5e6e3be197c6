"""The built-in router kinds: how a mixture of experts' tokens pick experts.

Cost signature: ``cost(cfg: RouterConfig, experts) -> int``, the experts a token
uses in the cost model. ``topk``: k. ``dynamic`` (top-p): the k a near-uniform
(freshly initialised) router picks, ``min(top_k, ceil(top_p * E))`` -- an upper bound
once the router sharpens. ``relu`` (ReMoE): the cap ``top_k``, which a fresh router
uses (its scores start positive) -- an upper bound once the L1 penalty prunes.
A trained model's realised k replaces the estimate in the effective cost. The
router's own gate (a bias-free D x E linear and a log-temperature) is the same for every kind and costed by the ``moe`` FFN.

A router's ``fields`` are the ``RouterConfig`` fields it uses; a MoE option's
router fields are asked only when its picked router uses them.
"""
from __future__ import annotations

import math

from ..arch import RouterConfig
from ..choices import Field, as_float, as_int, at_least
from .base import KindSpec, default_of
from .registries import ROUTER, register_router


def _top_p_check(v: float) -> str | None:
    return None if 0.0 < v <= 1.0 else f"must be in (0, 1], got {v}"


TOP_K = ("top_k", Field(as_int, at_least(1), default_of(RouterConfig, "top_k")))
TOP_P = ("top_p", Field(as_float, _top_p_check, default_of(RouterConfig, "top_p")))
ROUTER_FIELDS = (TOP_K, TOP_P)   # every RouterConfig field a router kind may use


def router_uses(field: str):
    """active(router kind) for a MoE option's router field."""
    return lambda kind: kind in ROUTER and field in ROUTER.get(kind).field_names


def _make(kind: str):
    return lambda v: RouterConfig(kind, v["top_k"], v.get("top_p", TOP_P[1].default))


def _dynamic_k(r: RouterConfig, experts: int) -> int:
    return min(r.top_k, max(1, math.ceil(r.top_p * experts - 1e-9)))


register_router(KindSpec(
    "topk", _make("topk"), cost=lambda r, experts: r.top_k,
    label=lambda r: f"topk,k={r.top_k}", short=lambda r: f"k{r.top_k}", fields=(TOP_K,), slices=True))
register_router(KindSpec(
    "dynamic", _make("dynamic"), cost=_dynamic_k,
    label=lambda r: f"dynamic,k={r.top_k},p={r.top_p}", short=lambda r: f"k{r.top_k}dyn",
    fields=(TOP_K, TOP_P), slices=True))
register_router(KindSpec(
    "relu", _make("relu"), cost=lambda r, experts: r.top_k,
    label=lambda r: f"relu,k<={r.top_k}", short=lambda r: f"k{r.top_k}relu", fields=(TOP_K,), slices=True))
