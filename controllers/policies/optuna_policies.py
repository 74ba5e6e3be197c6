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

Repeats: an ask whose candidate this policy already proposed is answered inside the
policy (``novelty``): TPE re-draws from its own distribution, NSGA-II mutates the
repeat, up to ``novelty_tries`` mutants. The repeat's Optuna trial is finished as FAIL
with the user attribute ``repeat`` (Optuna ignores failed trials when it models or
selects, so a repeat is never counted twice); a mutant is enqueued and asked, so the
study holds the parameters actually proposed.

Optuna's dashboard: ``mirror_to(path)`` copies every finished trial (repeats left out)
into a SQLite study at ``path`` (``RUN_DIR/optuna.db``), rebuilt from the policy's own
trials when attached, so ``optuna-dashboard RUN_DIR/optuna.db`` shows the search. The
policy state stays the source of truth for resume; the mirror is only ever written.

Outcomes: complete -> ``TrialState.COMPLETE`` with the values (non-finite values are
told as FAIL: Optuna refuses NaN/inf); failed -> FAIL; pruned -> PRUNED. A pruned trial
keeps its last values only for a single objective (reported as an intermediate value,
which Optuna registers as the pruned trial's value); Optuna cannot store intermediate
values of several objectives, so a multi-objective pruned trial carries none.
"""
from __future__ import annotations

import random
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.samplers import BaseSampler, NSGAIISampler, TPESampler
from optuna.trial import TrialState

from dynas.search_space.base import Space
from dynas.search_space.settings import Objective
from dynas.search_space.suggest import FixedSuggester, RecordingSuggester

from ..objectives import is_finite
from ..outcomes import non_finite_objectives
from ..policy import Outcome, Proposal
from ._common import STATE_VERSION, Outstanding, check_outcome, check_state, derive_seed
from .novelty import ON_REPEAT, novel_mutant

optuna.logging.set_verbosity(optuna.logging.WARNING)

_STATES = {"complete": TrialState.COMPLETE, "failed": TrialState.FAIL, "pruned": TrialState.PRUNED}
_STATE_NAMES = {v: k for k, v in _STATES.items()}
# Study attributes holding trial ids (NSGA-II's parent cache): remapped on restore.
_PARENT_KEY = ":parent:"
REPEAT_ATTR = "repeat"
MIRROR_STUDY = "dynas"
NOVELTY_TRIES = 64
REDRAWS = 2                        # fresh draws of a "redraw" policy before it mutates
_CACHE_ATTRS = ("_search_space", "_group_decomposed_search_space")   # Optuna 4-5 sampler internals

SamplerFactory = Callable[[int], BaseSampler]


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
        on_repeat: str = "redraw",
        novelty_tries: int = NOVELTY_TRIES,
    ):
        if on_repeat not in ON_REPEAT:
            raise ValueError(f"on_repeat must be one of {ON_REPEAT}, not {on_repeat!r}")
        self.space = space
        self.objectives = tuple(objectives)
        self.name = name
        self.seed = seed
        self._sampler_factory = sampler_factory
        self.on_repeat, self.novelty_tries = on_repeat, int(novelty_tries)
        self._proposed: set[str] = set()           # arch ids this policy proposed
        self._mirror: optuna.Study | None = None
        self._mirror_path: Path | None = None
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
        self._json_cache: dict[int, dict[str, Any]] = {}

    @property
    def study(self) -> optuna.Study:
        """The underlying study (read it; telling through it bypasses the policy)."""
        return self._study

    # --- ask / tell --------------------------------------------------------------------
    def ask(self) -> Proposal:
        seed = derive_seed(self.seed, self._next_id)
        rng = random.Random(seed)
        trial, arch, params = self._sample(seed)
        redraws = REDRAWS if self.on_repeat == "redraw" else 0
        for attempt in range(1, redraws + 2):
            if arch.arch_id not in self._proposed:
                break
            self._drop_repeat(trial)
            if attempt > redraws:           # still repeating itself: ask a new mutant
                mutant = novel_mutant(self.space, params, self._proposed, rng, self.novelty_tries)
                if mutant is not None:
                    self._study.enqueue_trial(mutant, skip_if_exists=False)
            trial, arch, params = self._sample(derive_seed(seed, attempt))
        proposal = Proposal(self._next_id, arch, params)
        self._next_id += 1
        self._proposed.add(arch.arch_id)
        self._outstanding.add(proposal.id, trial)
        return proposal

    def _drop_repeat(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(REPEAT_ATTR, True)
        self._study.tell(trial, state=TrialState.FAIL)

    def _sample(self, seed: int) -> tuple[optuna.Trial, Any, dict[str, Any]]:
        """One Optuna trial (an enqueued one first) and the candidate it samples."""
        sampler = self._sampler_factory(seed)
        _carry_search_space_caches(self._study.sampler, sampler)
        self._study.sampler = sampler
        trial = self._study.ask()
        trial.set_user_attr("proposal_id", self._next_id)
        recorder = RecordingSuggester(trial)
        try:
            arch = self.space.sample(recorder)
        except BaseException:
            self._study.tell(trial, state=TrialState.FAIL)   # never leave a trial running
            raise
        return trial, arch, dict(recorder.params)

    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        check_outcome(outcome, self.objectives)
        trial = self._outstanding.pop(proposal_id)
        if outcome.reason:
            trial.set_user_attr("reason", outcome.reason)
        if outcome.state == "complete" and is_finite(outcome.values):
            self._study.tell(trial, values=list(outcome.values))
        elif outcome.state == "pruned":
            if len(self.objectives) == 1 and is_finite(outcome.values):
                trial.report(float(outcome.values[0]), step=0)
            self._study.tell(trial, state=TrialState.PRUNED)
        else:
            if outcome.state == "complete":
                trial.set_user_attr("reason", non_finite_objectives(outcome.values))
            self._study.tell(trial, state=TrialState.FAIL)
        if self._mirror is not None:
            self._mirror.add_trial(self._study.get_trials(deepcopy=False)[trial.number])

    # --- the SQLite mirror -------------------------------------------------------------
    def mirror_to(self, path: str | Path) -> None:
        """Keep a SQLite copy of the study at ``path`` (module docstring), rebuilt now."""
        self._mirror_path = Path(path).resolve()
        url = f"sqlite:///{self._mirror_path}"
        storage = optuna.storages.RDBStorage(url)
        if any(s.study_name == MIRROR_STUDY for s in storage.get_all_studies()):
            optuna.delete_study(study_name=MIRROR_STUDY, storage=storage)
        self._mirror = optuna.create_study(storage=storage, study_name=MIRROR_STUDY, directions=self._directions)
        self._mirror.add_trials([t for t in self._study.get_trials(deepcopy=False)
                                 if t.state in _STATE_NAMES and not t.user_attrs.get(REPEAT_ATTR)])

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
            "trials": [{**self._trial_json(t), "number": i} for i, t in enumerate(finished)],
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
        self._proposed = {self._arch_id(data["params"]) for data in state["trials"]} - {None}
        if self._mirror_path is not None:
            self.mirror_to(self._mirror_path)

    def _arch_id(self, params: dict[str, Any]) -> str | None:
        try:
            return self.space.sample(FixedSuggester(params)).arch_id
        except Exception:        # a trial that failed while sampling has partial params
            return None

    def _trial_json(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
        """A finished trial's JSON, cached (finished trials never change; the state is
        rewritten after every trial, so encoding them all each time is O(trials^2))."""
        if trial._trial_id not in self._json_cache:
            self._json_cache[trial._trial_id] = _trial_to_json(trial, trial.number)
        return self._json_cache[trial._trial_id]

    def _trial_number(self, trial_id: int) -> int:
        return self._storage.get_trial_number_from_id(trial_id)


def _carry_search_space_caches(old: BaseSampler, new: BaseSampler) -> None:
    """Hand a sampler's search-space caches on to the next one.

    TPE and NSGA-II keep the intersection of the study's search spaces as an incremental
    cache; a fresh sampler per ask (for determinism) would rebuild it from every trial,
    O(trials) per ask and most of a long search's time. The cache is a function of the
    study's trials alone, so handing it on changes no proposal. Only between samplers of
    one study: ``_new_study`` starts from a sampler without history.
    """
    for attr in _CACHE_ATTRS:
        cache = getattr(old, attr, None)
        if cache is not None and type(old) is type(new) and hasattr(new, attr):
            setattr(new, attr, cache)


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
            # constant_liar: a running trial counts as a bad one, so concurrent asks spread
            return TPESampler(multivariate=True, group=True, constant_liar=True,
                              n_startup_trials=n_startup_trials, seed=sampler_seed)

    return OptunaPolicy(space, objectives, name="tpe", sampler_factory=factory, seed=seed, on_repeat="redraw")


def nsga2_policy(
    space: Space, objectives: Sequence[Objective], *, seed: int = 0, population_size: int = 20
) -> OptunaPolicy:
    """NSGA-II: uniform crossover of categorical decisions, random first generation."""

    def factory(sampler_seed: int) -> BaseSampler:
        return NSGAIISampler(population_size=population_size, seed=sampler_seed)

    return OptunaPolicy(space, objectives, name="nsga2", sampler_factory=factory, seed=seed, on_repeat="mutate")
