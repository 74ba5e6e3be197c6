"""The three kind registries and the functions that add to them (plugins too)."""
from __future__ import annotations

from .base import KindSpec, Registry

ATTENTION = Registry("attention", "cost(cfg: AttentionConfig, d_model, seq_len, causal) -> Part")
FFN = Registry("ffn", "cost(cfg: FFNConfig, d_model, seq_len) -> Part")
ROUTER = Registry("router", "cost(cfg: RouterConfig, experts) -> expected experts per token")
TOKENS = Registry("tokens", "cost(shape: TaskShape) -> (seq_len, input_dim) the stem receives")
STEM = Registry("stem", "cost(input_dim, d_model, seq_len, vocab_size) -> Part")
NORM = Registry("norm", "cost(d_model) -> Part of the final norm")
HEAD = Registry("head", "cost(d_model, seq_len, classes, per_token) -> (block tokens, Part)")
# model-level families: one kind per architecture (ArchConfig.<family>), not per layer
MODEL_FAMILIES = {"tokens": TOKENS, "stem": STEM, "norm": NORM, "head": HEAD}
REGISTRIES = {"attention": ATTENTION, "ffn": FFN, "router": ROUTER, **MODEL_FAMILIES}


def register_attention(spec: KindSpec) -> KindSpec:
    return ATTENTION.register(spec)


def register_ffn(spec: KindSpec) -> KindSpec:
    return FFN.register(spec)


def register_router(spec: KindSpec) -> KindSpec:
    return ROUTER.register(spec)


def register_model_kind(family: str, spec: KindSpec) -> KindSpec:
    """Add a tokens / stem / norm / head kind (``MODEL_FAMILIES``)."""
    return MODEL_FAMILIES[family].register(spec)


def expert_kinds() -> tuple[str, ...]:
    """FFN kinds that can serve as a mixture of experts' experts (they have a
    ``token_cost``), in registration order."""
    return tuple(n for n in FFN if FFN.get(n).token_cost is not None)
