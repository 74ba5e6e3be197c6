"""The built-in FFN kinds: ``dense`` (GELU MLP), ``glu`` (SwiGLU) and ``moe``.

Cost signature: ``cost(cfg: FFNConfig, d_model, seq_len) -> Part`` for one sample,
hidden width ``expansion * d_model``. A plain kind declares ``token_cost(d, hidden)``
(params, FLOPs per token, activation floats per token) and its cost follows from it;
the same numbers cost it as a mixture of experts' expert (``expert: glu``).

MoE: the router matmul, the shared expert on every token and the routed experts only
on the token slots they receive: the router kind's expected k per token; with a
capacity factor cf < 1 at most cf * T * k slots are kept. The effective cost passes
the realised mean k of a trained router instead (``cost(cfg, d, t, k=...)``).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..arch import FFNConfig, RouterConfig
from ..choices import Field, as_float, as_int, as_str, at_least, one_of
from ..errors import ConfigError
from .base import KindSpec, Part, default_of, linear
from .registries import FFN, ROUTER, expert_kinds, register_ffn
from .routers import TOP_K, TOP_P, router_uses

BALANCE_KINDS = ("aux_loss", "z_loss", "bias", "none")
DEFAULT_EXPERT = default_of(FFNConfig, "expert")
EXPANSION = ("expansion", Field(as_int, at_least(1), default_of(FFNConfig, "expansion")))


def plain_cost(cfg: FFNConfig, d: int, t: int) -> Part:
    """One instance of a plain kind on all ``t`` tokens, from its ``token_cost``."""
    params, flops, floats = FFN.get(cfg.kind).token_cost(d, cfg.expansion * d)
    return Part(params, params, t * flops, floats=t * floats)


def _dense_token(d: int, f: int) -> tuple[int, float, float]:
    return 2 * d * f + f + d, 4.0 * d * f, 2.0 * f      # two biased linears, pre/post GELU


def _glu_token(d: int, f: int) -> tuple[int, float, float]:
    return 3 * d * f, 6.0 * d * f, 3.0 * f               # W1, W3 (D -> F), W2 (F -> D), no bias


def _plain(kind: str, token_cost) -> KindSpec:
    return KindSpec(kind, lambda v: FFNConfig(kind, expansion=v["expansion"]), plain_cost,
                    label=lambda f: f"{kind}(x{f.expansion})",
                    short=lambda f: f"{kind} x{f.expansion}",
                    fields=(EXPANSION,), token_cost=token_cost, slices=True)


# --- moe -----------------------------------------------------------------------------
def _moe_cost(cfg: FFNConfig, d: int, t: int, k: float | None = None) -> Part:
    """``k``: experts per token measured on a trained model (the effective cost);
    None costs the router kind's expected k."""
    e, f, r = cfg.experts, cfg.expansion * d, cfg.router
    k = ROUTER.get(r.kind).cost(r, e) if k is None else k
    router = linear(d, e, t, bias=False) + Part(1, 1, floats=t * e)   # + log-temperature
    p, flops, floats = FFN.get(cfg.expert).token_cost(d, f)
    slots = t * k if cfg.capacity_factor <= 0 else t * k * min(1.0, cfg.capacity_factor)
    part = router + Part(e * p, k * p, slots * flops, floats=slots * floats)
    if cfg.shared_experts:
        shared = FFNConfig(cfg.expert, expansion=cfg.shared_experts * cfg.expansion)
        part = part + FFN.get(cfg.expert).cost(shared, d, t)
    return part


def _moe_validate(cfg: FFNConfig, key: str) -> None:
    if cfg.experts < 1:
        raise ConfigError(f"{key}.experts", f"moe needs experts >= 1, got {cfg.experts}")
    if cfg.router is None:
        raise ConfigError(f"{key}.router", "moe needs a router")
    ROUTER.get(cfg.router.kind, f"{key}.router.kind")
    if cfg.router.top_k > cfg.experts:
        raise ConfigError(f"{key}.top_k", f"{cfg.router.top_k} exceeds experts={cfg.experts}")
    if cfg.shared_experts < 0:
        raise ConfigError(f"{key}.shared_experts", "must be >= 0")
    if cfg.capacity_factor < 0:
        raise ConfigError(f"{key}.capacity_factor", "must be >= 0 (0 = dropless)")
    for name, allowed in (("balance", BALANCE_KINDS), ("expert", expert_kinds())):
        problem = one_of(*allowed)(getattr(cfg, name))
        if problem:
            raise ConfigError(f"{key}.{name}", problem)


def _moe_option_check(values: Mapping[str, tuple], key: str) -> None:
    top_k, experts = max(values["top_k"]), min(values["experts"])
    if top_k > experts:
        raise ConfigError(f"{key}.top_k", f"{top_k} exceeds experts={experts}")


def _moe_make(v: dict[str, Any]) -> FFNConfig:
    router: RouterConfig = ROUTER.get(v["router"]).make(v)
    return FFNConfig("moe", expansion=v["expansion"], experts=v["experts"], router=router,
                     shared_experts=v["shared_experts"], capacity_factor=v["capacity_factor"],
                     balance=v["balance"], expert=v["expert"])


def _moe_label(f: FFNConfig) -> str:
    expert = f",{f.expert}" if f.expert != DEFAULT_EXPERT else ""
    return (f"moe(E={f.experts},{ROUTER.get(f.router.kind).label(f.router)},"
            f"shared={f.shared_experts},cf={f.capacity_factor},{f.balance},x{f.expansion}{expert})")


def _moe_short(f: FFNConfig) -> str:
    expert = f"-{f.expert}" if f.expert != DEFAULT_EXPERT else ""
    return f"moe{f.experts}{ROUTER.get(f.router.kind).short(f.router)}{expert}"


def _expert_check(v: str) -> str | None:
    return None if v in expert_kinds() else f"{v!r} is not one of {', '.join(expert_kinds())}"


_MOE_FIELDS = (
    ("experts", Field(as_int, at_least(1))),
    TOP_K,
    ("router", Field(as_str, ROUTER.one_of(), default_of(RouterConfig, "kind"))),
    TOP_P,
    ("shared_experts", Field(as_int, at_least(0), default_of(FFNConfig, "shared_experts"))),
    ("capacity_factor", Field(as_float, at_least(0), default_of(FFNConfig, "capacity_factor"))),
    ("balance", Field(as_str, one_of(*BALANCE_KINDS), default_of(FFNConfig, "balance"))),
    EXPANSION,
    ("expert", Field(as_str, _expert_check, DEFAULT_EXPERT)),
)

register_ffn(_plain("dense", _dense_token))
register_ffn(_plain("glu", _glu_token))
register_ffn(KindSpec(
    "moe", _moe_make, _moe_cost, label=_moe_label, short=_moe_short, fields=_MOE_FIELDS,
    validate=_moe_validate, check_option=_moe_option_check,
    conditions={"top_p": ("router", router_uses("top_p"))}, slices=True))   # every router uses top_k
