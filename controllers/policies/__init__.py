"""Search policies behind one ask/tell interface, and their registry.

``POLICIES`` maps a strategy name to where its builder lives; backends (optuna, torch)
are imported only when that strategy is built.

Defaults that ``make_policy`` derives from ``SearchSettings``:
- random: nothing to tune.
- tpe: multivariate, grouped TPE; ``n_startup_trials = clamp(trials // 5, 4, 10)``.
- nsga2: ``population_size = clamp(trials // 5, 4, 20)``.
- ppo: ``settings.ppo`` (lr, clip, batch, epochs, entropy bonus, baseline decay,
  reward, flops penalty, surrogate, warmup).
"""
from __future__ import annotations

import importlib
from typing import Sequence

from search_space.base import Space
from search_space.errors import ConfigError
from search_space.settings import Objective, SearchSettings

from ..policy import Policy

POLICIES: dict[str, str] = {
    "random": "controllers.policies.random:RandomPolicy",
    "tpe": "controllers.policies.optuna_policies:tpe_policy",
    "nsga2": "controllers.policies.optuna_policies:nsga2_policy",
    "ppo": "controllers.policies.ppo:PPOPolicy",
}

__all__ = ["POLICIES", "make_policy"]


def _builder(name: str):
    if name not in POLICIES:
        raise ConfigError("search.strategy", f"unknown strategy {name!r}; known: {', '.join(POLICIES)}")
    module, attr = POLICIES[name].split(":")
    return getattr(importlib.import_module(module), attr)


def make_policy(
    name: str,
    space: Space,
    objectives: Sequence[Objective],
    seed: int,
    settings: SearchSettings | None = None,
) -> Policy:
    """Build the named policy over ``space``; unknown names are a config error."""
    build = _builder(name)
    settings = settings or SearchSettings()
    objectives = tuple(objectives)
    if not objectives:
        raise ConfigError("search.objectives", "need at least one objective")
    if name == "tpe":
        from .optuna_policies import startup_trials_for

        return build(space, objectives, seed=seed, n_startup_trials=startup_trials_for(settings.trials))
    if name == "nsga2":
        from .optuna_policies import population_for

        return build(space, objectives, seed=seed, population_size=population_for(settings.trials))
    if name == "ppo":
        return build(space, objectives, seed=seed, settings=settings.ppo)
    return build(space, objectives, seed=seed)
