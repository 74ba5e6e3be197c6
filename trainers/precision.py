"""Numeric precision of training and evaluation forwards (``training.precision``).

``fp32`` runs everything in float32. ``bf16`` runs forwards under
``torch.autocast(device, bfloat16)``: matmuls in bfloat16, reductions, softmax and
losses in float32 (autocast's op lists), weights and optimiser state in float32.
Training gets it from Lightning's precision plugin (``bf16-mixed``, the same autocast
around ``training_step``); evaluation passes (``evaluation.eval_mode``) open it here,
so the accuracy a search selects on is measured the way the model was trained.
"""
from __future__ import annotations

import contextlib

import torch

LIGHTNING = {"fp32": "32-true", "bf16": "bf16-mixed"}   # training.precision -> Trainer's


def lightning_precision(precision: str) -> str:
    """The ``L.Trainer(precision=...)`` value of a ``training.precision``."""
    return LIGHTNING[precision]


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The forward context of ``precision`` on ``device``: autocast for bf16, else none."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
