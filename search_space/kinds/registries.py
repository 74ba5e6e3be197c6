"""The kind registries, one per family, and the functions that add to them (plugins too).

Each is a ``search_space.registry.Registry`` of ``KindSpec`` by kind name; its
``contract`` is what the family's ``KindSpec.cost`` receives.
"""
from __future__ import annotations

from ..registry import Registry
from .base import KindSpec


def _kinds(family: str, cost: str) -> Registry[KindSpec]:
    return Registry(f"{family} kind", key=f"{family}.kind", contract=cost)


ATTENTION = _kinds("attention", "cost(cfg: AttentionConfig, d_model, seq_len, causal) -> Part")
FFN = _kinds("ffn", "cost(cfg: FFNConfig, d_model, seq_len) -> Part")
ROUTER = _kinds("router", "cost(cfg: RouterConfig, experts) -> expected experts per token")
TOKENS = _kinds("tokens", "cost(shape: TaskShape) -> (seq_len, input_dim) the stem receives")
STEM = _kinds("stem", "cost(input_dim, d_model, seq_len, vocab_size) -> Part")
NORM = _kinds("norm", "cost(d_model) -> Part of the final norm")
HEAD = _kinds("head", "cost(d_model, seq_len, classes, per_token) -> (block tokens, Part)")
POSITIONS = _kinds("positions", "cost(d_model, seq_len) -> Part of the position encoding")
# model-level families: one kind per architecture (ArchConfig.<family>), not per layer
MODEL_FAMILIES = {"tokens": TOKENS, "stem": STEM, "norm": NORM, "head": HEAD, "positions": POSITIONS}
REGISTRIES = {"attention": ATTENTION, "ffn": FFN, "router": ROUTER, **MODEL_FAMILIES}


def register_attention(spec: KindSpec) -> KindSpec:
    return ATTENTION.register(spec.name, spec)


def register_ffn(spec: KindSpec) -> KindSpec:
    return FFN.register(spec.name, spec)


def register_router(spec: KindSpec) -> KindSpec:
    return ROUTER.register(spec.name, spec)


def register_model_kind(family: str, spec: KindSpec) -> KindSpec:
    """Add a tokens / stem / norm / head / positions kind (``MODEL_FAMILIES``)."""
    return MODEL_FAMILIES[family].register(spec.name, spec)


def expert_kinds() -> tuple[str, ...]:
    """FFN kinds that can serve as a mixture of experts' experts (they have a
    ``token_cost``), in registration order."""
    return tuple(n for n, spec in FFN.items() if spec.token_cost is not None)
