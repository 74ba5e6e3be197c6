"""One test-case entry per registered kind: the contract suites iterate these, and
``test_kinds.py`` asserts the cases cover exactly the registered kinds, so a kind
registered without a case fails the suite.

Cases are dropless (capacity 0) and use ``top_p = 1`` for the dynamic router (a fresh
``relu`` router uses its cap by construction), so the cost model's k is exact and FLOPs can be compared with FlopCounterMode.
"""
from __future__ import annotations

from dynas.search_space.arch import AttentionConfig, FFNConfig, RouterConfig

ATTENTION_CASES: dict[str, list[AttentionConfig]] = {
    "full": [AttentionConfig("full", 2), AttentionConfig("full", 4)],
    "sliding_window": [AttentionConfig("sliding_window", 2, window=4),
                       AttentionConfig("sliding_window", 4, window=16)],
    "dynamic_span": [AttentionConfig("dynamic_span", 2, max_span=5),
                     AttentionConfig("dynamic_span", 4, max_span=32)],
    "linear": [AttentionConfig("linear", 2), AttentionConfig("linear", 4)],
    "identity": [AttentionConfig("identity", 1)],
}
# The router of a MoE case; top_p = 1 always takes the cap, so k is known exactly.
ROUTER_CASES: dict[str, RouterConfig] = {
    "topk": RouterConfig("topk", 2),
    "dynamic": RouterConfig("dynamic", 3, 1.0),
    "relu": RouterConfig("relu", 3),          # a fresh relu router uses its cap
}
FFN_CASES: dict[str, list[FFNConfig]] = {
    "dense": [FFNConfig("dense", 1), FFNConfig("dense", 4)],
    "glu": [FFNConfig("glu", 2)],
    "moe": [
        FFNConfig("moe", 2, 4, RouterConfig("topk", 1), 0, 0.0, "aux_loss"),
        FFNConfig("moe", 1, 6, RouterConfig("topk", 2), 1, 0.0, "z_loss"),
        FFNConfig("moe", 2, 4, RouterConfig("topk", 4), 2, 0.0, "bias"),
        FFNConfig("moe", 2, 4, RouterConfig("dynamic", 3, 1.0), 0, 0.0, "none"),
        FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 0.0, "aux_loss", expert="glu"),
    ],
}


def moe_with_router(kind: str) -> FFNConfig:
    """A dropless MoE (with a shared expert) routed by the case of router ``kind``."""
    return FFNConfig("moe", 2, 4, ROUTER_CASES[kind], 1, 0.0, "aux_loss")


def moe_with_expert(kind: str) -> FFNConfig:
    """A dropless MoE whose routed and shared experts are of FFN kind ``kind``."""
    return FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 0.0, "aux_loss", expert=kind)


def all_attentions() -> list[AttentionConfig]:
    return [cfg for cases in ATTENTION_CASES.values() for cfg in cases]


def all_ffns() -> list[FFNConfig]:
    return [cfg for cases in FFN_CASES.values() for cfg in cases]


# Whole-model kinds (ArchConfig.tokens / stem / norm / head / positions): each case is the kind's
# name; the contract suites build one model per case on an image-patch task.
MODEL_KIND_CASES: dict[str, tuple[str, ...]] = {
    "tokens": ("task", "rows", "patch2", "patch4", "whole"),
    "stem": ("linear", "mlp"),
    "norm": ("pre", "post"),
    "head": ("mean", "cls", "flatten"),
    "positions": ("learned", "rope", "alibi", "none"),
}


def all_model_kinds() -> list[tuple[str, str]]:
    """(family, kind) for every whole-model kind case."""
    return [(family, kind) for family, kinds in MODEL_KIND_CASES.items() for kind in kinds]
