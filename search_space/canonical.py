"""One identity per function: architectures that train to the same model share it.

``arch_id`` hashes what was written; two architectures can differ there and still be
the same model. ``canonical(arch, shape)`` rewrites the choices that cannot change
the model into one representative, and ``function_id`` hashes that, so a search that
trains each architecture from scratch (``search.evaluation: standalone``) never
trains the same model twice (``controllers.dedup`` keys on it). Records keep their
``arch_id``: nothing saved before changes.

"The same model" here means all of: the same function of the input, the same
parameters (count, shapes and initialisation from one seed, so the same trained
weights), the same auxiliary losses, and the same figures from the cost model. Only
rewrites that keep all of these are made, each proven by ``tests/trainers/
test_canonical.py``, which builds both models from one seed and asserts equal
parameters and bitwise-equal outputs:

- ``head: flatten`` over one token (``tokens: whole``) is ``head: mean``: both are one
  ``nn.Linear(D, C)``; flattening (B, 1, D) and averaging over its one token give
  the same (B, D).
- ``sliding_window`` whose ``window`` is at least the tokens the blocks see is ``full``
  attention with the same heads: the module takes the very same path (one block with
  no predecessor is a plain ``scaled_dot_product_attention``) over the same
  projections, and the cost model counts it as full attention.

Not rewritten, because one of the above differs: ``linear`` attention over one token
(its normaliser adds an epsilon), ``dynamic_span`` with a span past the sequence (its
span parameters, their penalty and their scale by ``max_span``), head counts over one
token (the score activations the cost model counts), and anything under a weight-sharing
supernet (each kind has its own shared weights there, so two kinds are two models).

The tokens the blocks see come from ``shape``; without it only what holds for every
task is used (``tokens: whole`` gives one token on any image task).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .arch import ArchConfig, AttentionConfig, TaskShape
from .errors import ConfigError
from .kinds import MODEL_FAMILIES


def _tokens(arch: ArchConfig, shape: TaskShape | None) -> tuple[int, int] | None:
    """(tokens the tokeniser gives, tokens the blocks see), or None when unknown."""
    if shape is not None:
        from .cost import block_tokens

        try:
            t_in, _, seen = block_tokens(arch, shape)
        except ConfigError:             # kinds this task does not allow: nothing to rewrite
            return None
        return t_in, seen
    if arch.tokens != "whole":
        return None
    seen, _ = MODEL_FAMILIES["head"].get(arch.head, "head").cost(arch.d_model, 1, 1, False)
    return 1, seen


def _attention(att: AttentionConfig, seen: int) -> AttentionConfig:
    if att.kind == "sliding_window" and att.window >= seen:
        return AttentionConfig("full", att.heads)
    return att


def canonical(arch: Any, shape: TaskShape | None = None) -> Any:
    """The representative of ``arch``'s model (``arch`` itself when none applies; a
    candidate that is not an ``ArchConfig`` is its own)."""
    if not isinstance(arch, ArchConfig):
        return arch
    tokens = _tokens(arch, shape)
    if tokens is None:
        return arch
    t_in, seen = tokens
    head = "mean" if arch.head == "flatten" and t_in == 1 else arch.head
    layers = tuple(dataclasses.replace(layer, attention=_attention(layer.attention, seen))
                   for layer in arch.layers)
    return dataclasses.replace(arch, head=head, layers=layers)


def function_id(arch: Any, shape: TaskShape | None = None) -> str:
    """``arch_id`` of ``canonical(arch, shape)``: equal for architectures that train to
    the same model; for one with nothing to rewrite, its own ``arch_id``."""
    return canonical(arch, shape).arch_id
