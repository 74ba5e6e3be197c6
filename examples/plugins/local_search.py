"""A strategy of your own: local search around the best architecture so far.

After ``warmup`` complete trials, each ask copies the best complete trial's decisions
and redraws one of them at random (a one-step mutation); with probability ``explore``
it draws a fresh random architecture instead. Ranked by the first objective. Registered
on import as ``local_search``, with a ``search.local_search`` settings section. It keeps
the whole ``controllers.policy`` contract (the same suite as the built-ins checks it).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from dynas.controllers.policies import register_policy
from dynas.controllers.policy import Outcome, Proposal
from dynas.search_space.errors import ConfigError
from dynas.search_space.suggest import RandomSuggester, RecordingSuggester


@dataclass(frozen=True)
class LocalSearchSettings:
    warmup: int = 3
    explore: float = 0.2

    def validate(self, key: str = "") -> None:
        if self.warmup < 1 or not 0.0 <= self.explore <= 1.0:
            raise ConfigError(key, "warmup must be >= 1 and explore in [0, 1]")


class _Mutate:
    """Suggester: the parent's value for every decision but ``target``, drawn fresh."""

    def __init__(self, parent: dict, target: str, fresh: RandomSuggester):
        self.parent, self.target, self.fresh = parent, target, fresh

    def suggest_categorical(self, name, choices):
        keep = name != self.target and name in self.parent and self.parent[name] in choices
        return self.parent[name] if keep else self.fresh.suggest_categorical(name, choices)

    def suggest_int(self, name, low, high, step=1):
        value = self.parent.get(name)
        keep = name != self.target and isinstance(value, int) and low <= value <= high
        return value if keep else self.fresh.suggest_int(name, low, high, step)


class LocalSearchPolicy:
    name = "local_search"

    def __init__(self, space, objectives, *, seed: int = 0, settings: LocalSearchSettings | None = None):
        self.space, self.objectives = space, tuple(objectives)
        self.settings = settings or LocalSearchSettings()
        self.sign = 1.0 if self.objectives[0].direction == "max" else -1.0
        self._rng, self._next_id = random.Random(seed), 0
        self._pending: dict[int, dict] = {}          # asked, not told: id -> decisions
        self._best: list = []                        # [score (maximised), decisions] of the best complete
        self._complete = 0

    def ask(self) -> Proposal:
        fresh = RandomSuggester(rng=self._rng)
        inner = fresh
        if self._complete >= self.settings.warmup and self._rng.random() >= self.settings.explore:
            parent = self._best[1]
            names = [d.name for d in self.space.decisions() if d.name in parent]
            inner = _Mutate(parent, self._rng.choice(names), fresh) if names else fresh
        recorder = RecordingSuggester(inner)
        arch = self.space.sample(recorder)
        proposal = Proposal(self._next_id, arch, dict(recorder.params))
        self._pending[proposal.id], self._next_id = proposal.params, self._next_id + 1
        return proposal

    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        if outcome.values is not None and len(outcome.values) != len(self.objectives):
            raise ValueError(f"{len(outcome.values)} values for {len(self.objectives)} objectives")
        params = self._pending.pop(proposal_id)     # KeyError: unknown or already told
        if outcome.state == "complete" and all(math.isfinite(v) for v in outcome.values):
            self._complete += 1                     # failed, pruned and NaN points never lead
            score = self.sign * outcome.values[0]
            if not self._best or score > self._best[0]:
                self._best = [score, params]

    def state_dict(self) -> dict:
        version, internal, gauss = self._rng.getstate()
        return {"policy": self.name, "next_id": self._next_id, "rng": [version, list(internal), gauss],
                "best": self._best, "complete": self._complete}

    def load_state_dict(self, state: dict) -> None:
        if state.get("policy") != self.name:
            raise ValueError(f"state saved by policy {state.get('policy')!r}, not {self.name!r}")
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        self._next_id, self._complete = int(state["next_id"]), int(state["complete"])
        self._best, self._pending = list(state["best"]), {}


register_policy("local_search",
                lambda space, objectives, seed, search, settings: LocalSearchPolicy(
                    space, objectives, seed=seed, settings=settings),
                LocalSearchSettings)
