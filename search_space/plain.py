"""A plain space of named decisions, for policies on anything that is not a transformer.

    space:
      decisions:
        optimizer: [adam, sgd]          # choose one
        width: {low: 16, high: 64, step: 16}   # an integer range
        epochs: 10                      # fixed: in every assignment, never asked

Sampling returns a ``base.Assignment`` (name -> value, with an ``arch_id``); it shares
the ``Space`` protocol with ``ArchSpace``, so every policy can be tested on both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .base import Assignment
from .choices import as_choice_value, as_int, choices, join, mapping, reject_unknown, short
from .errors import ConfigError
from .suggest import Decision, Suggester

RANGE_KEYS = ("low", "high", "step")


@dataclass(frozen=True)
class DecisionSpace:
    """Decisions in file order; int ranges keep their options as a ``range``."""

    entries: tuple[Decision, ...]

    def decisions(self) -> list[Decision]:
        return [d for d in self.entries if len(d.options) > 1]

    def sample(self, suggester: Suggester) -> Assignment:
        values = []
        for d in self.entries:
            if len(d.options) == 1:
                value = d.options[0]
            elif d.kind == "int":
                r = d.options  # step is keyword-only in optuna's suggest_int
                value = suggester.suggest_int(d.name, r[0], r[-1], step=r.step)
            else:
                value = suggester.suggest_categorical(d.name, list(d.options))
            values.append((d.name, value))
        return Assignment(tuple(values))

    def size(self) -> int:
        out = 1
        for d in self.entries:
            out *= len(d.options)
        return out


def parse_decision_space(data: Mapping, key: str = "space") -> DecisionSpace:
    reject_unknown(data, ("decisions",), key)
    dkey = join(key, "decisions")
    spec = mapping(data["decisions"], dkey, "a mapping of decision names to choices")
    if not spec:
        raise ConfigError(dkey, "no decisions; give at least one")
    entries = []
    for name, value in spec.items():
        k = f"{dkey}.{name}"
        if not name:
            raise ConfigError(dkey, "decision names must not be empty")
        if isinstance(value, Mapping):
            entries.append(Decision(name, _int_range(value, k), kind="int"))
        else:
            entries.append(Decision(name, choices(value, k, as_choice_value)))
    return DecisionSpace(tuple(entries))


def _int_range(data: Mapping, key: str) -> range:
    data = mapping(data, key)
    reject_unknown(data, RANGE_KEYS, key)
    for name in ("low", "high"):
        if name not in data:
            raise ConfigError(join(key, name), "missing required key")
    low, high = as_int(data["low"], f"{key}.low"), as_int(data["high"], f"{key}.high")
    step = as_int(data.get("step", 1), f"{key}.step")
    if step < 1:
        raise ConfigError(f"{key}.step", f"must be >= 1, got {step}")
    if high < low:
        raise ConfigError(f"{key}.high", f"{high} is below low={low}")
    if (high - low) % step:
        raise ConfigError(f"{key}.high", f"{short(high)} is not low + a multiple of step={step}")
    return range(low, high + 1, step)
