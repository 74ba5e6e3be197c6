"""Optuna's TPE and NSGA-II behind the ask/tell interface.

An ``optuna.Trial`` is a ``Suggester`` as is, so ``ask`` is ``study.ask()`` followed by
``space.sample(trial)``. The study lives in its own in-memory storage; the policy's
state is the list of finished trials in JSON (params, distributions, values, state,
attributes), which ``load_state_dict`` replays into a fresh study with
``study.add_trial``.

Determinism across a restore: samplers keep random state that cannot be saved as JSON,
so the policy builds a fresh sampler for every ask, seeded from (seed, proposal id).
The saved and the restored policy then hold the same trials, the same counters and the
same seed for the next ask, so they make the same proposal. Trials still running at a
save are forgotten (the driver re-runs them), so with outstanding proposals the
restored policy's next ask can differ (TPE's constant liar sees fewer running trials).

Outcomes: complete -> ``TrialState.COMPLETE`` with the values (non-finite values are
told as FAIL: Optuna refuses NaN/inf); failed -> FAIL; pruned -> PRUNED. A pruned trial
keeps its last values only for a single objective (reported as an intermediate value,
which Optuna registers as the pruned trial's value); Optuna cannot store intermediate
values of several objectives, so a multi-objective pruned trial carries none.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.trial import TrialState

from search_space.base import Space
from search_space.settings import Objective
from search_space.suggest import RecordingSuggester

from ..objectives import is_finite
from ..outcomes import non_finite_objectives
from ..policy import Outcome, Proposal
from ._common import STATE_VERSION, Outstanding, check_outcome, check_state

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED}
_STATE_NAMES = {v: k for k, v in _STATES.items()}
# Study attributes holding trial ids (NSGA-II's parent cache): remapped on restore.
_PARENT_KEY = ":parent:"

SamplerFactory = Callable[[int], BaseSampler]


def derive_seed(seed: int, proposal_id: int) -> int:
    """A well-mixed 32-bit seed per (policy seed, proposal id)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, proposal_id]).generate_state(1)[0])


class OptunaPolicy:
    """Any Optuna sampler as a policy; ``sampler_factory(seed)`` builds one per ask."""

    def __init__(
        self,
        space: Space,
        objectives: Sequence[Objective],
        *,
        name: str,
        sampler_factory: SamplerFactory,
        seed: int = 0,
    ):
        self.space = space
        self.objectives = tuple(objectives)
        self.name = name
        self.seed = seed
        self._sampler_factory = sampler_factory
        self._directions = ["maximize" if o.direction == "max" else "minimize" for o in self.objectives]
        self._next_id = 0
        self._outstanding = Outstanding()
        self._new_study()

    def _new_study(self) -> None:
        self._storage = optuna.storages.InMemoryStorage()
        self._study = optuna.create_study(
            storage=self._storage,
            sampler=self._sampler_factory(self.seed),
            directions=self._directions,
        )
        self._study_id = self._storage.get_study_id_from_name(self._study.study_name)

    @property
    def study(self) -> optuna.Study:
        """The underlying study (read it; telling through it bypasses the policy)."""
        return self._study

    # --- ask / tell --------------------------------------------------------------------
    def ask(self) -> Proposal:
        self._study.sampler = self._sampler_factory(derive_seed(self.seed, self._next_id))
        trial = self._study.ask()
        trial.set_user_attr("proposal_id", self._next_id)
        recorder = RecordingSuggester(trial)
        try:
            arch = self.space.sample(recorder)
        except BaseException:
            self._study.tell(trial, state=TrialState.FAIL)   # never leave a trial running
            raise
        proposal = Proposal(self._next_id, arch, dict(recorder.params))
        self._next_id += 1
        self._outstanding.add(proposal.id, trial)
        return proposal

    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        check_outcome(outcome, self.objectives)
        trial = self._outstanding.pop(proposal_id)
        if outcome.reason:
            trial.set_user_attr("reason", outcome.reason)
        if outcome.state == "complete" and is_finite(outcome.values):
            self._study.tell(trial, values=list(outcome.values))
            return
        if outcome.state == "complete":
            trial.set_user_attr("reason", non_finite_objectives(outcome.values))
        if outcome.state == "pruned":
            if len(self.objectives) == 1 and is_finite(outcome.values):
                trial.report(float(outcome.values[0]), step=0)
            self._study.tell(trial, state=TrialState.PRUNED)
            return
        self._study.tell(trial, state=TrialState.FAIL)

    # --- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        finished = [t for t in self._study.get_trials(deepcopy=False) if t.state in _STATE_NAMES]
        position = {t.number: i for i, t in enumerate(finished)}
        attrs = self._storage.get_study_system_attrs(self._study_id)
        parent_cache = {
            key: [position[self._trial_number(tid)] for tid in ids]
            for key, ids in attrs.items()
            if _PARENT_KEY in key
        }
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "seed": self.seed,
            "next_id": self._next_id,
            "directions": list(self._directions),
            "trials": [_trial_to_json(t, i) for i, t in enumerate(finished)],
            "parent_cache": parent_cache,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name)
        if state["directions"] != self._directions:
            raise ValueError(f"state has directions {state['directions']}, policy has {self._directions}")
        self._new_study()
        for data in state["trials"]:
            self._study.add_trial(_trial_from_json(data))
        for key, positions in state["parent_cache"].items():
            ids = [self._storage.get_trial_id_from_study_id_trial_number(self._study_id, p) for p in positions]
            self._storage.set_study_system_attr(self._study_id, key, ids)
        self._next_id = int(state["next_id"])
        self._outstanding = Outstanding()

    def _trial_number(self, trial_id: int) -> int:
        return self._storage.get_trial_number_from_id(trial_id)


def _trial_to_json(trial: optuna.trial.FrozenTrial, number: int) -> dict[str, Any]:
    # ``number`` is the trial's place among the finished ones, the number a restored
    # study gives it (trials running at the save are left out), so a saved state
    # restores to exactly itself; the proposal id stays in ``user_attrs``.
    return {
        "number": number,
        "state": _STATE_NAMES[trial.state],
        "values": None if trial.values is None else [float(v) for v in trial.values],
        "params": dict(trial.params),
        "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
        "intermediate_values": {str(k): float(v) for k, v in trial.intermediate_values.items()},
        "user_attrs": dict(trial.user_attrs),
        "system_attrs": dict(trial.system_attrs),
    }


def _trial_from_json(data: dict[str, Any]) -> optuna.trial.FrozenTrial:
    return optuna.trial.create_trial(
        state=_STATES[data["state"]],
        values=data["values"],
        params=data["params"],
        distributions={k: json_to_distribution(v) for k, v in data["distributions"].items()},
        intermediate_values={int(k): v for k, v in data["intermediate_values"].items()},
        user_attrs=data["user_attrs"],
        system_attrs=data["system_attrs"],
    )


# --- the two configurations ------------------------------------------------------------
def startup_trials_for(trials: int) -> int:
    """Random trials before TPE models: a fifth of the budget, between 4 and 10."""
    return max(4, min(10, trials // 5))


def population_for(trials: int) -> int:
    """NSGA-II population: a fifth of the budget, between 4 and 20 (>= 5 generations)."""
    return max(4, min(20, trials // 5))


def tpe_policy(
    space: Space, objectives: Sequence[Objective], *, seed: int = 0, n_startup_trials: int = 10
) -> OptunaPolicy:
    """Multivariate TPE with grouped conditional subspaces (MOTPE for several objectives)."""

    def factory(sampler_seed: int) -> BaseSampler:
        with warnings.catch_warnings():  # ``group`` is flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return TPESampler(
                multivariate=True, group=True, n_startup_trials=n_startup_trials, seed=sampler_seed
            )

    return OptunaPolicy(space, objectives, name="tpe", sampler_factory=factory, seed=seed)


def nsga2_policy(
    space: Space, objectives: Sequence[Objective], *, seed: int = 0, population_size: int = 20
) -> OptunaPolicy:
    """NSGA-II: uniform crossover of categorical decisions, random first generation."""

    def factory(sampler_seed: int) -> BaseSampler:
        return NSGAIISampler(population_size=population_size, seed=sampler_seed)

    return OptunaPolicy(space, objectives, name="nsga2", sampler_factory=factory, seed=seed)
