"""Suggesters: who makes each decision when a space is sampled define-by-run.

A space's ``sample(suggester)`` asks one question per decision it reaches, in order.
An ``optuna.trial.Trial`` satisfies ``Suggester`` as is; the seeded random suggester,
the replay suggester and the PPO policy's suggester are ours.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from .errors import ConfigError


@runtime_checkable
class Suggester(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...


@dataclass(frozen=True)
class Decision:
    """One question a space can ask.

    ``options`` are the categorical choices (for ints: every value low..high by step).
    ``condition`` is a readable rule for when the question is asked
    (``"layers > 2"``, ``"layer1.ffn == moe"``) or None when it always is.
    """

    name: str
    options: tuple
    condition: str | None = None
    kind: str = "categorical"         # categorical | int


class RandomSuggester:
    """Uniform choices from a seeded generator: the reference sampler."""

    def __init__(self, seed: int | None = None, rng: random.Random | None = None):
        self.rng = rng or random.Random(seed)

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return choices[self.rng.randrange(len(choices))]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.rng.randrange(low, high + 1, step)


class FixedSuggester:
    """Replays recorded decisions (from a trials.jsonl record or a policy's proposal).

    A decision missing from ``params`` or outside its options is an error: it means the
    record does not belong to this space.
    """

    def __init__(self, params: Mapping[str, Any]):
        self.params = dict(params)

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise ConfigError(name, "decision missing from the recorded parameters")
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self._get(name)
        if value not in list(choices):
            raise ConfigError(name, f"recorded value {value!r} is not one of {list(choices)}")
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ConfigError(name, f"recorded value {value!r} is outside [{low}, {high}]")
        return value


class RecordingSuggester:
    """Wraps another suggester and keeps every answer, in order: the proposal's params."""

    def __init__(self, inner: Suggester):
        self.inner = inner
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        value = self.inner.suggest_categorical(name, choices)
        self.params[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        value = self.inner.suggest_int(name, low, high, step=step)  # optuna: step is keyword-only
        self.params[name] = value
        return value
