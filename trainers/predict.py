"""``load_model(DIR).predict(raw_inputs)``: a trained model used on new data.

The ``Predictor`` applies the bundle's preprocessing (the task's own, fitted on its
training split) to raw inputs, runs the model in eval mode in batches, and returns the
logits and predicted classes. Given ``experience=i`` it predicts among experience i's
classes only (task-incremental inference: logits of the other classes are -inf).
Shape legend: N samples, T tokens, C classes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dynas.search_space.errors import DynasError

from . import compress  # noqa: F401  (registers the rebuild of compressed bundles with .bundle)
from .bundle import Bundle, load_bundle_model
from .evaluation import class_mask, eval_mode, restrict


@dataclass
class Prediction:
    classes: Tensor                 # (N,) long, or (N, T) for per-token tasks
    logits: Tensor                  # (N, C), or (N, T, C)


class Predictor:
    """A bundle's model, its preprocessing and its class table, ready to predict."""

    def __init__(self, model: torch.nn.Module, bundle: Bundle, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.model, self.bundle = model.to(self.device).eval(), bundle
        self.preprocessing = bundle.preprocessing

    @property
    def num_experiences(self) -> int:
        return len(self.bundle.class_table)

    def prepare(self, raw: Any) -> Tensor:
        """Raw inputs -> model inputs (no preprocessing saved: the inputs as given)."""
        return self.preprocessing(raw) if self.preprocessing is not None else torch.as_tensor(raw)

    def predict(self, raw: Any, experience: int | None = None, batch_size: int = 256) -> Prediction:
        """Logits and classes of ``raw``; ``experience`` restricts them to its classes."""
        mask = None
        if experience is not None:
            if not 0 <= experience < self.num_experiences:
                raise DynasError(f"experience {experience}: the model knows experiences 0..{self.num_experiences - 1}")
            mask = class_mask(self.bundle.class_table[experience], self.bundle.shape.num_classes, self.device)
        x = self.prepare(raw)
        out = []
        with eval_mode(self.model):
            for start in range(0, len(x), batch_size):
                logits = self.model(x[start:start + batch_size].to(self.device)).logits
                out.append(restrict(logits, mask).cpu())
        logits = torch.cat(out) if out else torch.empty(0, self.bundle.shape.num_classes)
        return Prediction(classes=logits.argmax(-1), logits=logits)


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> Predictor:
    """The model folder at ``path`` (``dynas export --weights`` or ``dynas train``)."""
    model, bundle = load_bundle_model(path)
    return Predictor(model, bundle, device)
