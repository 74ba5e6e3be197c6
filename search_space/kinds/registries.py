"""The three kind registries and the functions that add to them (plugins too)."""
from __future__ import annotations

from .base import KindSpec, Registry

ATTENTION = Registry("attention", "cost(cfg: AttentionConfig, d_model, seq_len, causal) -> Part")
FFN = Registry("ffn", "cost(cfg: FFNConfig, d_model, seq_len) -> Part")
ROUTER = Registry("router", "cost(cfg: RouterConfig, experts) -> expected experts per token")
REGISTRIES = {"attention": ATTENTION, "ffn": FFN, "router": ROUTER}


def register_attention(spec: KindSpec) -> KindSpec:
    return ATTENTION.register(spec)


def register_ffn(spec: KindSpec) -> KindSpec:
    return FFN.register(spec)


def register_router(spec: KindSpec) -> KindSpec:
    return ROUTER.register(spec)


def expert_kinds() -> tuple[str, ...]:
    """FFN kinds that can serve as a mixture of experts' experts (they have a
    ``token_cost``), in registration order."""
    return tuple(n for n in FFN if FFN.get(n).token_cost is not None)
