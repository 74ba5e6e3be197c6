"""Budget as a fidelity: successive halving over training budgets (``search.fidelity``).

``search.fidelity: {rungs: [1, 4, 16], keep: 0.25}`` trains at growing budgets of steps
per experience (rung x ``training.steps_per_experience``). Every rung trains the whole
stream of experiences, so the continual metrics (forgetting, backward transfer) of one
rung compare with each other; only the steps per experience grow.

- Rung 0 is the search itself (``RunSession.search_phase``): the policy asks, the
  executor trains at the rung-0 budget, the policy is told those validation values. A
  policy learns from the cheap rung, where it makes its many proposals: that is the
  point of a low fidelity, and it keeps ask/tell sequential (TPE, NSGA-II, PPO adapt
  from the first trials on) under every executor.
- Rung k > 0: the best ``sizes(trials)[k]`` candidates of rung k-1 (front rank, then
  the first objective, on the validation values its records hold, as
  ``confirm.best_candidates`` orders them) train again at rung k's budget. They are
  queued promotions (``SearchDriver.queue_promotions``), through the run's executor,
  told to no policy: a policy hears each proposal once (``controllers.policy``), and it
  heard the rung-0 value; telling it a second, larger value for the same proposal
  would mix budgets inside its model. The promotion decision is made here, on
  records, never by a policy or from a test split.
- The front, the picks, the report, ``search.confirm`` and the baselines use the top
  rung only (``analysis.load.complete``); each record carries its ``budget``.

Every promotion retrains from scratch. ``fit``'s resumable state is a checkpoint after
each experience of one budget; a candidate that finished the stream at k steps per
experience cannot "continue" to 4k: its first experience would need 3k more steps
*before* the second experience began, so a warm start would be a different schedule
(more steps late in the stream, fewer early) and its numbers would not be those of
training at 4k. Within one training, a retried or killed trial still continues from its
last experience as any trial does (Ray's ``FailureConfig``).

Kill and resume: the rung a run is in is never stored; it is recomputed from the
records (``promotions``): a rung's missing trainings are its best candidates without a
record at its budget, so a resumed run trains only those, and a finished rung trains
nothing. Lower rungs keep no weights (``keep_weights: none``); the top rung keeps the
run's ``search.keep_weights``, so a kept model is always a top-rung model.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import InfrastructureError
from dynas.search_space.settings import Objective

from ..policy import Proposal
from ..records import TrialRecord, iter_records
from .confirm import best_candidates
from .prepare import build_driver

__all__ = ["rung_budgets", "at_rung", "top_rung", "rung_records", "promotions", "pending", "run_rungs"]


def rung_budgets(experiment: Any, search: Any) -> tuple[int, ...]:
    """Steps per experience at each rung (one entry, the training section's, without rungs)."""
    steps = experiment.training.steps_per_experience
    return tuple(r * steps for r in search.fidelity.rungs) if search.fidelity.enabled else (steps,)


def top_rung(experiment: Any, search: Any) -> int:
    return len(rung_budgets(experiment, search)) - 1


def at_rung(experiment: Any, search: Any, rung: int) -> tuple[Any, Any]:
    """``experiment`` and ``search`` as rung ``rung`` trains: its budget of steps per
    experience; no kept weights below the top rung (a kept model is a top-rung model)."""
    budget = rung_budgets(experiment, search)[rung]
    if budget != experiment.training.steps_per_experience:
        experiment = dataclasses.replace(
            experiment, training=dataclasses.replace(experiment.training, steps_per_experience=budget))
    if rung < top_rung(experiment, search):
        search = dataclasses.replace(search, keep_weights="none")
    return experiment, search


def rung_records(records: Sequence[TrialRecord], budget: int) -> list[TrialRecord]:
    """The searched records measured at ``budget`` steps per experience."""
    return [r for r in records if r.budget == budget and not r.baseline]


def promotions(records: Sequence[TrialRecord], objectives: Sequence[Objective], lower: int, upper: int,
               count: int) -> list[Proposal]:
    """The best ``count`` first measurements at budget ``lower`` that hold no record at
    ``upper`` yet (a failed training there counts as held: it is not tried again)."""
    best = best_candidates(rung_records(records, lower), objectives, count)
    held = {r.proposal_id for r in rung_records(records, upper) if r.cached_from is None and r.repeat_of is None}
    return [Proposal(r.proposal_id, ArchConfig.from_dict(r.arch), dict(r.params))
            for r in best if r.proposal_id not in held]


def _todo(records: Sequence[TrialRecord], experiment: Any, search: Any, rung: int) -> list[Proposal]:
    budgets = rung_budgets(experiment, search)
    return promotions(records, search.objectives, budgets[rung - 1], budgets[rung],
                      search.fidelity.sizes(search.trials)[rung])


def pending(records: Sequence[TrialRecord], experiment: Any, search: Any) -> bool:
    """Some rung above 0 still misses a training (a run killed mid-rung)."""
    return any(_todo(records, experiment, search, k) for k in range(1, top_rung(experiment, search) + 1))


def run_rungs(experiment: Any, search: Any, run_dir: Path, executor: Any, verbose: int, stop: Any = None) -> None:
    """Rungs 1.. in order, each one's missing promotions through ``executor``."""
    budgets = rung_budgets(experiment, search)
    for k in range(1, len(budgets)):
        records = list(iter_records(run_dir))
        todo = _todo(records, experiment, search, k)
        print(f"rung {k}: the best {search.fidelity.sizes(search.trials)[k]} of rung {k - 1} at "
              f"{budgets[k]} steps per experience: {len(todo)} trainings to run")
        if not todo:
            continue
        rung_experiment, rung_search = at_rung(experiment, search, k)
        driver = build_driver(rung_experiment, rung_search, run_dir, budget=0, records=records)
        driver.queue_promotions(todo)
        if stop is not None:
            stop.on_stop.append(driver.stop)
        executor.drive(driver, rung_experiment, rung_search, run_dir, f"rung{k}", verbose=verbose, stop=stop)
        if driver.fault:
            raise InfrastructureError(f"{run_dir}: {driver.fault}; the search stopped and the trial was "
                                      f"not charged with it; fix that, then: dynas resume {run_dir}")
        if stop is not None:
            stop.check()
