"""PPO's factorised sampling distribution: draws through a ``Suggester``, and the
log-probability and entropy of the decisions a candidate asked (``ppo``)."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .surrogate import OneHotEncoder

Step = tuple[int, int, tuple[int, ...]]    # (decision index, option index, allowed options)


@dataclass
class Sample:
    steps: list[Step]
    logp: float                            # behaviour log-probability of the steps


class PolicySuggester:
    """Draws each asked decision from the current (detached) logits with ``rng``."""

    def __init__(self, logits: torch.Tensor, encoder: OneHotEncoder, rng: random.Random,
                 fixed: dict[str, Any] | None = None):
        self.logits, self.encoder, self.rng = logits, encoder, rng
        self.fixed = fixed or {}               # replayed decisions (a mutant), not drawn
        self.steps: list[Step] = []

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._draw(name, list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self._draw(name, list(range(low, high + 1, step)))

    def _draw(self, name: str, choices: list[Any]) -> Any:
        if name not in self.encoder.index:
            raise ValueError(f"decision {name!r} was asked but is not in space.decisions()")
        i = self.encoder.index[name]
        allowed = tuple(self.encoder.option_index(name, c) for c in choices)
        if name in self.fixed:
            k = allowed.index(self.encoder.option_index(name, self.fixed[name]))
            self.steps.append((i, allowed[k], allowed))
            return choices[k]
        probs = log_probs(self.logits, self.encoder, i, allowed).exp().tolist()
        u, k, acc = self.rng.random(), len(probs) - 1, 0.0
        for pos, p in enumerate(probs):
            acc += p
            if u < acc:
                k = pos
                break
        self.steps.append((i, allowed[k], allowed))
        return choices[k]


def log_probs(logits: torch.Tensor, enc: OneHotEncoder, i: int, allowed: tuple[int, ...]) -> torch.Tensor:
    """Log-softmax over the allowed options of decision i: (len(allowed),)."""
    idx = torch.tensor([enc.offsets[i] + j for j in allowed])
    return torch.log_softmax(logits[idx], dim=0)


def max_entropy(steps: Sequence[Step]) -> float:
    """Entropy of the uniform choice over the asked decisions' allowed options."""
    return sum(math.log(len(a)) for _, _, a in steps)


def logp_entropy(logits: torch.Tensor, enc: OneHotEncoder, steps: Sequence[Step]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over the asked decisions of log pi(choice) and of the entropy."""
    logp, ent = logits.new_zeros(()), logits.new_zeros(())
    for i, j, allowed in steps:
        lp = log_probs(logits, enc, i, allowed)
        logp = logp + lp[allowed.index(j)]
        ent = ent - (lp.exp() * lp).sum()
    return logp, ent
