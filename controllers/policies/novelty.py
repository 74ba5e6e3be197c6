"""Answering a repeat inside a policy: mutate it, or draw afresh from the policy itself.

A policy that proposes an architecture it already proposed wastes an ask: the driver
tells it the cached outcome, which an Optuna sampler then counts twice (TPE's density
and NSGA-II's population both narrow onto the repeat, so repeats breed repeats). The
policies here answer a repeat themselves, before the driver sees it:

- ``redraw``: ask the policy's own distribution again (a fresh seed) a few times, e.g.
  TPE, PPO; a concentrated distribution keeps answering the same, so then:
- ``mutate``: change one decision of the repeat to another of its options (the
  mutation of an evolutionary step; NSGA-II starts here); decisions that the change
  brings into play are drawn uniformly. ``novel_mutant`` tries mutants without
  asking the policy (they are cheap), widening to more decisions per mutant when the
  neighbourhood is explored, and returns the first new one.

Both are bounded; what is still a repeat after them goes to the driver, whose duplicate
cache answers it and whose exhaustion check tells a truly exhausted space (every
distinct candidate explored) from a policy that is stuck.
"""
from __future__ import annotations

import random
from typing import Any, Collection, Mapping, Sequence

from dynas.search_space.base import Space
from dynas.search_space.suggest import FixedSuggester, RecordingSuggester

ON_REPEAT = ("redraw", "mutate")


class _MutantSuggester:
    """Answers from ``params`` where it can, else uniformly from ``rng``."""

    def __init__(self, params: Mapping[str, Any], rng: random.Random):
        self.params, self.rng = dict(params), rng

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        choices = list(choices)
        value = self.params.get(name, _MISSING)
        return value if value is not _MISSING and value in choices else choices[self.rng.randrange(len(choices))]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.suggest_categorical(name, range(low, high + 1, step))


_MISSING = object()


def mutate(space: Space, params: Mapping[str, Any], rng: random.Random, changes: int = 1) -> dict[str, Any]:
    """``params`` with ``changes`` asked decisions moved to other options; the full
    parameters of the resulting candidate (define-by-run, so conditions stay valid)."""
    options = {d.name: list(d.options) for d in space.decisions()}
    movable = [n for n in params if len(options.get(n, ())) > 1]
    changed = dict(params)
    for name in rng.sample(movable, min(changes, len(movable))):
        others = [o for o in options[name] if not (type(o) is type(params[name]) and o == params[name])]
        changed[name] = others[rng.randrange(len(others))]
    recorder = RecordingSuggester(_MutantSuggester(changed, rng))
    space.sample(recorder)
    return dict(recorder.params)


def novel_mutant(space: Space, params: Mapping[str, Any], proposed: Collection[str], rng: random.Random,
                 tries: int = 64) -> dict[str, Any] | None:
    """The first of up to ``tries`` mutants of ``params`` whose candidate is not in
    ``proposed`` (arch ids); one more decision changes every 8 tries. None if all repeat."""
    for t in range(tries):
        mutant = mutate(space, params, rng, changes=1 + t // 8)
        if space.sample(FixedSuggester(mutant)).arch_id not in proposed:
            return mutant
    return None
