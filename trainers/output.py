"""``ModelOutput``: what every model of ``trainers`` returns from ``forward``.

A leaf module (it imports nothing of ``trainers``), so the transformer (``model``) and
the reference models (``reference``), which ``build_model`` builds, both return it
without importing each other. Shape legend: B batch, T tokens, C classes, E experts.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ModelOutput:
    """Logits with every aux loss and routing count named, so nothing is hidden from
    the training system (which weights and logs each term)."""

    logits: Tensor                               # (B, C), or (B, T, C) when per_token
    aux_losses: dict[str, Tensor]                # by kind, summed over layers
    tokens_per_expert: dict[str, Tensor]         # "layers.<i>.ffn" -> (E,)
