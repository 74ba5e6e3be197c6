"""The settings of pruning's recovery (``trainers.recovery``), without torch, so that
``dynas compress --help`` shows the defaults without loading it.

The defaults were chosen on Split-Digits' validation accuracy (a coordinate search at
ffn=0.5 over 3 seeds: importance, temperature, distil weight, lr, steps, rounds) and are
reported on Split-Fashion-MNIST (``benchmarks/pruning.py``; docs/benchmarks.md; raw
lines in docs/pruning_tune.txt). Taylor importance, T = 2 or 4 and A = 0.9 scored lower
there, within the spread; 3 rounds beat 1 by 3 points of validation accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

from dynas.search_space.errors import ConfigError

IMPORTANCES = ("taylor", "weight")


@dataclass(frozen=True)
class RecoverySettings:
    """``alpha``: weight of the distillation term (1 - alpha on the labels);
    ``per_class``: replay samples per class of every seen experience;
    ``importance``: how heads and channels are ranked (``pruning``); ``rounds``: prune
    and recover this many times, cutting an equal share each time."""

    steps: int = 500
    lr: float = 3e-3
    temperature: float = 1.0
    alpha: float = 0.5
    per_class: int = 50
    batch_size: int = 64
    importance: str = "weight"
    rounds: int = 3

    def check(self) -> None:
        """One ``ConfigError`` naming the ``dynas compress`` flag of the first bad field."""
        bad = [("--recover-steps", "must be >= 0", self.steps < 0),
               ("--recover-lr", "must be > 0", self.lr <= 0),
               ("--temperature", "must be > 0", self.temperature <= 0),
               ("--distil-weight", "must be in [0, 1]", not 0 <= self.alpha <= 1),
               ("--recover-per-class", "must be >= 1", self.per_class < 1),
               ("--prune-rounds", "must be >= 1", self.rounds < 1),
               ("--importance", f"must be one of {', '.join(IMPORTANCES)}", self.importance not in IMPORTANCES)]
        for flag, rule, failed in bad:
            if failed:
                raise ConfigError(flag, rule)
