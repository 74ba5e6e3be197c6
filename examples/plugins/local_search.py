"""A strategy of your own: local search around the best architecture so far.

After ``warmup`` random proposals, each ask copies the best complete trial's decisions
and redraws one of them at random (a one-step mutation); with probability ``explore``
it draws a fresh random architecture instead. Ranked by the first objective. Registered
on import as ``local_search`` with a ``search.local_search`` settings section.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from controllers.policies import register_policy
from controllers.policy import Outcome, Proposal
from search_space.suggest import RandomSuggester, RecordingSuggester


@dataclass(frozen=True)
class LocalSearchSettings:
    warmup: int = 3
    explore: float = 0.2

    def validate(self, key: str = "") -> None:
        from search_space.errors import ConfigError

        if self.warmup < 1 or not 0.0 <= self.explore <= 1.0:
            raise ConfigError(key, "warmup must be >= 1 and explore in [0, 1]")


class _Mutate:
    """Suggester: the parent's value for every decision but ``target``, drawn fresh."""

    def __init__(self, parent: dict, target: str, rng: random.Random):
        self.parent, self.target, self.fresh = parent, target, RandomSuggester(rng=rng)

    def suggest_categorical(self, name, choices):
        keep = name != self.target and self.parent.get(name) in choices
        return self.parent[name] if keep else self.fresh.suggest_categorical(name, choices)

    def suggest_int(self, name, low, high, step=1):
        value = self.parent.get(name)
        keep = name != self.target and isinstance(value, int) and low <= value <= high
        return value if keep else self.fresh.suggest_int(name, low, high, step)


class LocalSearchPolicy:
    name = "local_search"

    def __init__(self, space, objectives, *, seed: int = 0, settings: LocalSearchSettings = LocalSearchSettings()):
        self.space, self.objectives, self.settings = space, tuple(objectives), settings
        self.sign = 1.0 if self.objectives[0].direction == "max" else -1.0
        self._rng, self._next_id = random.Random(seed), 0
        self._params: dict[int, dict] = {}          # proposal id -> its decisions
        self._scores: dict[int, float] = {}         # complete proposals -> first objective, maximised

    def ask(self) -> Proposal:
        inner = RandomSuggester(rng=self._rng)
        if len(self._scores) >= self.settings.warmup and self._rng.random() >= self.settings.explore:
            best = self._params[max(self._scores, key=self._scores.get)]
            names = [d.name for d in self.space.decisions() if d.name in best]
            inner = _Mutate(best, self._rng.choice(names), self._rng) if names else inner
        recorder = RecordingSuggester(inner)
        arch = self.space.sample(recorder)
        proposal = Proposal(self._next_id, arch, dict(recorder.params))
        self._params[proposal.id], self._next_id = proposal.params, self._next_id + 1
        return proposal

    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        if outcome.state == "complete":
            self._scores[proposal_id] = self.sign * outcome.values[0]

    def state_dict(self) -> dict:
        version, internal, gauss = self._rng.getstate()
        return {"policy": self.name, "next_id": self._next_id, "rng": [version, list(internal), gauss],
                "params": {str(k): v for k, v in self._params.items()},
                "scores": {str(k): v for k, v in self._scores.items()}}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self._next_id = int(state["next_id"])
        self._rng.setstate((version, tuple(internal), gauss))
        self._params = {int(k): v for k, v in state["params"].items()}
        self._scores = {int(k): float(v) for k, v in state["scores"].items()}


register_policy("local_search",
                lambda space, objectives, seed, search, settings: LocalSearchPolicy(
                    space, objectives, seed=seed, settings=settings),
                LocalSearchSettings)
