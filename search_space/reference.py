"""Named reference models: textbook baselines trained beside a search.

``mlp:WIDTHxDEPTH`` is a ReLU MLP on the flattened input (every token's features side
by side): DEPTH hidden layers of WIDTH units, then a linear layer to the classes
(``mlp:400x2`` is the 64 -> 400 -> 400 -> 10 network of the continual-learning
literature on 8x8 digits). A reference has the ``ArchConfig`` surface that training
and records use (``validate``, ``to_dict``, ``arch_id``, ``summary``, ``describe``),
so ``trainers.fit`` trains it through the same system with the same settings.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from .arch import ArchConfig, TaskShape
from .errors import ConfigError

REFERENCE_KEY = "reference"           # marks a reference model's dict (an arch has layers)
MAX_WIDTH, MAX_DEPTH = 1 << 16, 64    # a typo like mlp:4000000x2 fails at load, not in torch
_MLP = re.compile(r"mlp:(\d+)x(\d+)")


@dataclass(frozen=True)
class MLPReference:
    """A ReLU MLP on the flattened input; see the module docstring."""

    width: int
    depth: int
    layers: tuple = ()                # no transformer layers (no MoE bias to update)

    def validate(self, key: str = "") -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise ConfigError(f"{key}.width" if key else "width", f"must be in [1, {MAX_WIDTH}], got {self.width}")
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ConfigError(f"{key}.depth" if key else "depth", f"must be in [1, {MAX_DEPTH}], got {self.depth}")

    def to_dict(self) -> dict[str, Any]:
        return {REFERENCE_KEY: "mlp", "width": self.width, "depth": self.depth}

    @property
    def arch_id(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"mlp:{self.width}x{self.depth}"

    def summary(self) -> str:
        return f"{self.name} (reference MLP)"

    def describe(self) -> str:
        return f"reference MLP on the flattened input: {self.depth} x {self.width} ReLU units"

    def input_features(self, shape: TaskShape, key: str = "") -> int:
        if not shape.input_dim or shape.per_token:
            raise ConfigError(key or REFERENCE_KEY, f"{self.name} needs a classification task "
                              "with continuous inputs (one label per sample)")
        return shape.seq_len * shape.input_dim

    def widths(self, shape: TaskShape) -> list[int]:
        """Layer widths from the input to the classes: [I, W, ..., W, C]."""
        return [self.input_features(shape)] + [self.width] * self.depth + [shape.num_classes]


def parse_reference(text: Any, key: str) -> MLPReference:
    """``mlp:WIDTHxDEPTH`` -> its reference model; anything else is a ConfigError."""
    match = _MLP.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(key, f"unknown reference model {text!r}; known: mlp:WIDTHxDEPTH (e.g. mlp:400x2)")
    ref = MLPReference(int(match[1]), int(match[2]))
    ref.validate(key)
    return ref


def model_from_dict(data: Any, source: str | None = None) -> ArchConfig | MLPReference:
    """An ``ArchConfig`` or a reference model from its ``to_dict()``."""
    if isinstance(data, Mapping) and REFERENCE_KEY in data:
        extra = set(data) - {REFERENCE_KEY, "width", "depth"}
        if data[REFERENCE_KEY] != "mlp" or extra:
            raise ConfigError(REFERENCE_KEY, f"unknown reference model {data!r}", source)
        try:
            ref = MLPReference(int(data["width"]), int(data["depth"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(REFERENCE_KEY, "a reference MLP needs integer width and depth", source) from None
        ref.validate(REFERENCE_KEY)
        return ref
    return ArchConfig.from_dict(data, source)


def is_reference(model: Any) -> bool:
    return isinstance(model, MLPReference)
