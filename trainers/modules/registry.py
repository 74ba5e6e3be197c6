"""Builders keyed by kind name: the trainers' half of each kind.

Each module file defines its module and registers its builder under the name of the
kind's spec in ``search_space.kinds``:

    @builder("attention", "sliding_window")
    def build_sliding(cfg: AttentionConfig, d_model: int, causal: bool) -> nn.Module:
        return SlidingWindowAttention(d_model, cfg.heads, cfg.window, causal=causal)

Families and builder signatures:

- ``attention``: ``(cfg: AttentionConfig, d_model, causal) -> module | None``; a module
  maps (B, T, D) -> ((B, T, D), aux dict); None means no token mixer at all (the
  block then has no attention sub-layer, as for ``identity``).
- ``ffn``: ``(cfg: FFNConfig, d_model) -> module``, (B, T, D) -> (B, T, D) or ``MoEOutput``.
- ``expert``: ``(experts, d_model, hidden) -> module``, a group of E experts of that
  FFN kind: ``forward(x (S, D) sorted by expert, counts) -> (S, D)``.
- ``router``: ``(cfg: RouterConfig, d_model, experts, aux_losses, bias_balance) -> module``
  returning ``RouterOutput``.

- ``tokens``: ``(shape: TaskShape) -> module``, (B, T, I) -> (B, T', I').
- ``stem``: ``(input_dim, d_model, vocab_size) -> module`` embedding the tokens.
- ``norm``: ``(d_model) -> (post: bool, final norm module)``.
- ``head``: ``(d_model, tokens, classes, per_token) -> modules.ends.Head``.
- ``positions``: ``(layers: ModuleList of blocks, tokens, d_model) -> Parameter | None``:
  attaches relative positions to the blocks' attention, returns an absolute table.

``trainers.model.build_model`` looks builders up here (``BUILDERS[family].get(kind)``); it
is the only wiring point.
"""
from __future__ import annotations

from typing import Callable

from dynas.search_space.registry import Registry

FAMILIES = ("attention", "ffn", "expert", "router", "tokens", "stem", "norm", "head", "positions")
# one registry per family (the signatures above), each keyed by the kinds' own names
BUILDERS: dict[str, Registry[Callable]] = {
    family: Registry(f"{family} builder", key=f"{family}.kind") for family in FAMILIES}


def builder(family: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator: register the builder of kind ``name`` in ``family``; a second builder
    for a name is refused."""

    def add(fn: Callable) -> Callable:
        return BUILDERS[family].register(name, fn)

    return add
