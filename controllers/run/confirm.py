"""Seed repeats of the best front candidates: is the front a finding or one draw?

Every candidate of a search is trained once, with one training seed, so a knee that
beats its neighbour by less than the seed-to-seed spread is noise. ``confirm_run``
(``dynas confirm RUN_DIR --top K --seeds S``, or ``search.confirm: {top: K, seeds:
S}`` at the end of a search) picks the K best first measurements (front rank first,
then the first objective, from the values the policy was told: validation) and makes
sure each has S seed repeats, training the missing ones with fresh training seeds.

Repeats run like any trial, through the executor the command was given (Ray Tune, on a
cluster too, or in-process: ``controllers.run.executor``) and ``SearchDriver``: they are queued confirmations
(``SearchDriver.queue_confirmations``), told to no policy, and recorded with
``repeat_of`` = their original's proposal id and ``train_seed``. The data split
stays the experiment's (``training.seed``); only the training seed changes. Rerunning
the same command trains nothing more, and finishes a killed confirmation.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import Objective

from .. import pareto
from ..dedup import Measured
from ..driver import SearchDriver
from ..policy import Proposal
from ..records import TrialRecord, iter_records
from ..tracking import TrialHParams, duration, number, plural, trial_name
from .prepare import build_driver, training_budget


def first_measurements(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Complete, trained (not cached, not repeated) records with finite objective values."""
    return [r for r in records if r.state == "complete" and r.cached_from is None and r.repeat_of is None
            and r.objectives is not None and len(r.objectives) == len(objectives)
            and all(math.isfinite(v) for v in r.objectives)]


ORDERS = ("objective", "knee")


def best_candidates(records: Sequence[TrialRecord], objectives: Sequence[Objective], top: int,
                    order: str = "objective") -> list[TrialRecord]:
    """The ``top`` best first measurements, front rank first; within a rank by the
    first objective (``objective``) or by distance from the first front's knee in
    normalised objectives (``knee``: the knee, then its neighbours, so the candidate a
    report picks and the ones it must beat are the ones confirmed)."""
    if order not in ORDERS:
        raise ConfigError("--order", f"unknown order {order!r}; known: {', '.join(ORDERS)}")
    firsts = first_measurements(records, objectives)
    if not firsts:
        return []
    pts = pareto.to_minimise([r.objectives for r in firsts], objectives)
    ranks = pareto.non_dominated_sort(pts)
    within = pts[:, 0]
    if order == "knee":
        front = np.flatnonzero(ranks == ranks.min())
        z = pareto.normalised(pts)
        within = np.linalg.norm(z - z[front[pareto.knee_of(pts[front])]], axis=1)
    order_ = sorted(range(len(firsts)), key=lambda i: (ranks[i], within[i], firsts[i].proposal_id))
    return [firsts[i] for i in order_[:top]]


def named_candidates(records: Sequence[TrialRecord], objectives: Sequence[Objective],
                     trials: Sequence[int]) -> list[TrialRecord]:
    """The first measurements of the trials named (``dynas confirm --trials 9,6``), in
    that order; one line for a trial that is not a complete, trained first measurement."""
    firsts = {r.proposal_id: r for r in first_measurements(records, objectives)}
    out = []
    for pid in dict.fromkeys(trials):
        if pid not in firsts:
            mine = [r for r in records if r.proposal_id == pid and r.repeat_of is None]
            why = (f"is {mine[0].state}" + (f" ({mine[0].reason})" if mine[0].reason else "")
                   if mine and mine[0].state != "complete" else
                   "reuses another trial's outcome" if mine and mine[0].cached_from is not None else
                   "is not in this run")
            raise ConfigError("--trials", f"trial {pid} {why}; only complete trials can be confirmed "
                              f"(complete: {', '.join(map(str, sorted(firsts))) or 'none'})")
        out.append(firsts[pid])
    return out


def confirmations(records: Sequence[TrialRecord], candidates: Sequence[TrialRecord], seeds: int,
                  base_seed: int) -> list[Proposal]:
    """The seed repeats still missing for each candidate to have ``seeds`` of them."""
    out = []
    for cand in candidates:
        repeats = [r for r in records if r.repeat_of == cand.proposal_id and r.arch_id == cand.arch_id]
        measured = Measured(seeds=[cand.train_seed] + [r.train_seed for r in repeats])
        arch = ArchConfig.from_dict(cand.arch)
        for _ in range(seeds - len(repeats)):
            seed = measured.fresh_seed(base_seed)
            measured.seeds.append(seed)
            out.append(Proposal(cand.proposal_id, arch, dict(cand.params), seed=seed,
                                repeat_of=cand.proposal_id))
    return out


def queued_driver(experiment, search, run_dir: Path, top: int, seeds: int, *,
                  trials: Sequence[int] | None = None, order: str = "objective",
                  verbose: int = 1) -> SearchDriver | None:
    """A driver holding the missing repeats of the ``top`` best candidates (or of the
    ``trials`` named) as queued confirmations (None: nothing to confirm, no complete
    trial); with ``verbose`` >= 1 it prints a line per finished repeat."""
    from dynas.search_space.space import ArchSpace

    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("search.confirm", "seed repeats retrain architectures; a plain decision "
                                            "space's evaluator has no training seed")
    budget = training_budget(experiment)        # search.fidelity: the top rung's (fidelity.at_rung)
    records = [r for r in iter_records(run_dir) if r.budget in (None, budget)]
    if trials:
        candidates = named_candidates(records, search.objectives, trials)
    else:
        candidates = best_candidates(records, search.objectives, top, order)
    if not candidates:
        return None
    todo = confirmations(records, candidates, seeds, experiment.training.seed)
    names_ = ", ".join(trial_name(c.proposal_id) for c in candidates)
    print(f"confirming {plural(len(candidates), 'candidate')} ({names_}) with {plural(seeds, 'seed')} each: "
          f"{plural(len(todo), 'training')} to run", flush=True)
    listeners = [RepeatProgress(search.objectives, len(todo))] if verbose >= 1 and todo else []
    listeners.append(TrialHParams(run_dir))
    driver = build_driver(experiment, search, run_dir, budget=0, records=records, listeners=listeners)
    driver.queue_confirmations(todo)
    return driver


class RepeatProgress:
    """A record listener printing ``[k/N] seed repeat of p0006 (seed 4) complete
    acc ... | ETA 1m20s`` for each finished confirmation (the search has ``Progress``)."""

    def __init__(self, objectives: Sequence[Objective], total: int, *, out=None, clock=time.monotonic):
        self.objectives, self.total, self.done = tuple(objectives), int(total), 0
        self.out, self.clock, self.started = out, clock, clock()

    def __call__(self, record: TrialRecord) -> None:
        if record.repeat_of is None or not record.is_confirmation:
            return
        self.done += 1
        line = (f"[{self.done:>{len(str(self.total))}}/{self.total}] seed repeat of "
                f"{trial_name(record.repeat_of)} (seed {record.train_seed}) {record.state}")
        if record.state == "complete":
            line += "  " + "  ".join(f"{o.metric} {number(record.metrics.get(o.metric))}"
                                     for o in self.objectives)
        elif record.reason:
            line += f": {record.reason[:120]}"
        left = self.total - self.done
        eta = duration((self.clock() - self.started) / self.done * left) if left > 0 else None
        print(f"{line} | {'ETA ' + eta if eta else 'last one'}", file=self.out or sys.stdout, flush=True)


def run_confirmations(executor, driver: SearchDriver, experiment, search, run_dir: Path, verbose: int) -> None:
    """The queued repeats through ``executor``; a repeat trains to the end (no scheduler)."""
    if driver.queued:
        executor.drive(driver, experiment, dataclasses.replace(search, scheduler="fifo"), run_dir,
                       "confirm", verbose=verbose)
