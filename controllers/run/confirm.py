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
from pathlib import Path
from typing import Sequence

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import Objective

from .. import pareto
from ..dedup import Measured
from ..driver import SearchDriver
from ..policy import Proposal
from ..records import TrialRecord, iter_records
from .prepare import build_driver, training_budget


def first_measurements(records: Sequence[TrialRecord], objectives: Sequence[Objective]) -> list[TrialRecord]:
    """Complete, trained (not cached, not repeated) records with finite objective values."""
    return [r for r in records if r.state == "complete" and r.cached_from is None and r.repeat_of is None
            and r.objectives is not None and len(r.objectives) == len(objectives)
            and all(math.isfinite(v) for v in r.objectives)]


def best_candidates(records: Sequence[TrialRecord], objectives: Sequence[Objective], top: int) -> list[TrialRecord]:
    """The ``top`` best first measurements: front rank, then the first objective."""
    firsts = first_measurements(records, objectives)
    if not firsts:
        return []
    pts = pareto.to_minimise([r.objectives for r in firsts], objectives)
    ranks = pareto.non_dominated_sort(pts)
    order = sorted(range(len(firsts)), key=lambda i: (ranks[i], pts[i, 0], firsts[i].proposal_id))
    return [firsts[i] for i in order[:top]]


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


def queued_driver(experiment, search, run_dir: Path, top: int, seeds: int) -> SearchDriver | None:
    """A driver holding the missing repeats of the ``top`` best candidates as queued
    confirmations (None: nothing to confirm, no complete trial)."""
    from dynas.search_space.space import ArchSpace

    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("search.confirm", "seed repeats retrain architectures; a plain decision "
                                            "space's evaluator has no training seed")
    budget = training_budget(experiment)        # search.fidelity: the top rung's (fidelity.at_rung)
    records = [r for r in iter_records(run_dir) if r.budget in (None, budget)]
    candidates = best_candidates(records, search.objectives, top)
    if not candidates:
        return None
    todo = confirmations(records, candidates, seeds, experiment.training.seed)
    print(f"confirming {len(candidates)} candidates with {seeds} seeds each: "
          f"{len(todo)} trainings to run")
    driver = build_driver(experiment, search, run_dir, budget=0, records=records)
    driver.queue_confirmations(todo)
    return driver


def run_confirmations(executor, driver: SearchDriver, experiment, search, run_dir: Path, verbose: int) -> None:
    """The queued repeats through ``executor``; a repeat trains to the end (no scheduler)."""
    if driver.queued:
        executor.drive(driver, experiment, dataclasses.replace(search, scheduler="fifo"), run_dir,
                       "confirm", verbose=verbose)
