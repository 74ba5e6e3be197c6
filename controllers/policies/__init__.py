"""Search policies behind one ask/tell interface, and the registry of strategy names.

A strategy is a name in ``POLICIES``: ``register_policy(name, factory, settings_cls)``.
``factory(space, objectives, seed, search, settings) -> Policy`` gets the whole
``SearchSettings`` and, when the strategy has a ``settings_cls`` (a frozen dataclass,
optionally with ``validate(key)``), its parsed ``search.<name>`` section. A plugin that
registers before the search starts is accepted by ``search.strategy`` and
``--strategy`` without any change to ``search_space``. Backends (optuna, torch) are
imported only when a strategy is built.

Defaults the built-in factories derive from ``SearchSettings``:
- random: nothing to tune.
- tpe: multivariate, grouped TPE; ``n_startup_trials = clamp(trials // 5, 4, 10)``.
- nsga2: ``population_size = clamp(trials // 5, 4, 20)``.
- ppo: ``search.ppo`` (``PPOSettings``: lr, clip, batch, epochs, entropy bonus, baseline
  decay, reward, flops penalty, surrogate, warmup).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from dynas.search_space.base import Space
from dynas.search_space.errors import ConfigError
from dynas.search_space.registry import Registry
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import Objective, SearchSettings

from ..policy import Policy
from .ppo_settings import PPOSettings

Factory = Callable[[Space, Sequence[Objective], int, SearchSettings, Any], Policy]


@dataclass(frozen=True)
class PolicyEntry:
    name: str
    factory: Factory
    settings_cls: type | None = None
    description: str = ""                 # one line for `dynas list strategies`


POLICIES: Registry[PolicyEntry] = Registry(
    "strategy", plural="strategies", key="search.strategy",
    contract="factory(space, objectives, seed, search, settings) -> Policy")

__all__ = ["POLICIES", "PPOSettings", "PolicyEntry", "check_search", "make_policy",
           "policy_settings", "register_policy"]


def register_policy(name: str, factory: Factory, settings_cls: type | None = None,
                    description: str = "") -> None:
    """Make ``name`` a strategy; its settings, if any, are the ``search.<name>`` section;
    ``description``: one line for ``dynas list strategies``."""
    POLICIES.register(name, PolicyEntry(name, factory, settings_cls, description))


def policy_settings(search: SearchSettings, name: str) -> Any:
    """The parsed ``search.<name>`` section (defaults when absent; None without a class)."""
    cls = POLICIES.get(name).settings_cls
    if cls is None:
        return None
    given = search.policy_settings.get(name)
    if isinstance(given, cls):
        return given
    return from_mapping(cls, given if given is not None else {}, f"search.{name}")


def check_search(search: SearchSettings) -> None:
    """The strategy is registered; every ``search.<name>`` section belongs to a strategy
    with settings and parses (unknown keys, ranges). Raises a one-line ConfigError."""
    POLICIES.get(search.strategy)
    for name, given in search.policy_settings.items():
        entry = POLICIES.get(name) if name in POLICIES else None
        if entry is None or entry.settings_cls is None:
            sections = [n for n, e in POLICIES.items() if e.settings_cls is not None]
            raise ConfigError(f"search.{name}", "unknown key; strategy settings sections: "
                              f"{', '.join(sections) or 'none'}")
        if not isinstance(given, (Mapping, entry.settings_cls)):
            raise ConfigError(f"search.{name}", "expected a mapping")
        policy_settings(search, name)


def make_policy(
    name: str,
    space: Space,
    objectives: Sequence[Objective],
    seed: int,
    settings: SearchSettings | None = None,
) -> Policy:
    """Build the named policy over ``space``; unknown names are a config error."""
    entry = POLICIES.get(name)
    search = settings or SearchSettings()
    objectives = tuple(objectives)
    if not objectives:
        raise ConfigError("search.objectives", "need at least one objective")
    return entry.factory(space, objectives, seed, search, policy_settings(search, name))


# --- the built-in strategies ------------------------------------------------------------
def _random(space, objectives, seed, search, settings):
    from .random import RandomPolicy

    return RandomPolicy(space, objectives, seed=seed)


def _tpe(space, objectives, seed, search, settings):
    from .optuna_policies import startup_trials_for, tpe_policy

    return tpe_policy(space, objectives, seed=seed, n_startup_trials=startup_trials_for(search.trials))


def _nsga2(space, objectives, seed, search, settings):
    from .optuna_policies import nsga2_policy, population_for

    return nsga2_policy(space, objectives, seed=seed, population_size=population_for(search.trials))


def _ppo(space, objectives, seed, search, settings):
    from .ppo import PPOPolicy

    return PPOPolicy(space, objectives, seed=seed, settings=settings)


register_policy("random", _random, description="uniform samples of the space: the reference every "
                "other strategy must beat")
register_policy("tpe", _tpe, description="Optuna's tree-structured Parzen estimator (multi-objective), "
                "after random start-up trials")
register_policy("nsga2", _nsga2, description="Optuna's NSGA-II genetic algorithm over the Pareto ranks")
register_policy("ppo", _ppo, PPOSettings, description="a policy network that builds an architecture "
                "decision by decision, trained by PPO on the trials' rewards")
