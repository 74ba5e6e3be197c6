"""``SearchDriver``: one trial's lifecycle, whoever runs the trial.

The driver knows no Ray. An executor (``controllers.local`` in-process, the Tune
``Searcher`` in ``controllers.tune_searcher``) only asks it for the next architecture
and hands back what happened:

    proposal = driver.ask()          # None: budget spent, space exhausted, or wait
    ... train proposal.arch ...
    driver.tell(proposal, TrialResult(...))

``ask`` asks the policy until it proposes an architecture this run has not trained
(duplicates of finished trials are told the cached outcome and recorded at once;
duplicates of running ones wait for the original), checks feasibility (an infeasible
candidate is recorded as failed at once and counts as started) and returns it.
``tell`` turns the result into the policy's ``Outcome`` (``controllers.outcomes``),
tells the policy, appends the record and rewrites the policy state, in that order:

    policy.tell  ->  append the record (fsync)  ->  policy_state.json (atomic)

A crash between the last two leaves a record the saved state has not seen; on
resume the restored policy proposes that candidate again, the duplicate cache tells
it the recorded outcome, and ``known`` keeps it from being written twice.

Every ``TrialRecord`` of a search (trained, duplicate, infeasible) is built by
``_record``. ``budget`` counts new architectures started by this driver.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

from search_space.base import Candidate
from search_space.errors import InfeasibleError
from search_space.settings import Objective

from . import outcomes
from .dedup import CachedResult, DedupCache, next_new_proposal
from .policy import Outcome, Policy, Proposal
from .records import POLICY_STATE_FILE, TrialRecord, append_record, write_json_atomic
from .results import TrialResult

log = logging.getLogger(__name__)

Feasibility = Callable[[Candidate], "tuple[bool, str]"]


class SearchDriver:
    def __init__(self, policy: Policy, run_dir: str | Path, *, budget: int, seed: int = 0,
                 records: Iterable[TrialRecord] = (), feasible: Feasibility | None = None,
                 max_duplicates: int = 50, objectives: Sequence[Objective] | None = None):
        records = [r for r in records if not r.baseline]   # references are never told to a policy
        self.policy = policy
        self.objectives = tuple(policy.objectives if objectives is None else objectives)
        self.run_dir, self.budget, self.seed = Path(run_dir), int(budget), seed
        self.feasible, self.max_duplicates = feasible, max_duplicates
        self.cache = DedupCache.from_records(records)
        self.known: dict[int, TrialRecord] = {r.proposal_id: r for r in records}   # on disk
        self.written: list[TrialRecord] = []       # records written by this driver
        self.running: dict[int, Proposal] = {}     # proposal id -> proposal training
        self.started = 0                           # new architectures started here
        self.exhausted: str | None = None          # why the policy ran out of new candidates
        self._asks: dict[int, int] = {}            # proposal id -> policy asks it took
        self._starved = False                      # only duplicates of running trials came

    @property
    def finished(self) -> bool:
        """No more proposals: the budget is spent or the space is exhausted."""
        return self.exhausted is not None or self.started >= self.budget

    def ask(self) -> Proposal | None:
        """The next new, feasible architecture to train, or ``None``: when ``finished``,
        or (``not finished``) when only duplicates of running trials came, so the
        executor should ask again after one of them is told."""
        while not self.finished and not self._starved:
            try:
                proposal, _, asks = next_new_proposal(self.policy, self.cache, self.max_duplicates,
                                                      on_cached=self._write_cached)
            except InfeasibleError as err:
                if self.running:                   # a finishing trial may settle the duplicates
                    self._starved = True
                    return None
                self.exhausted = str(err)
                log.warning("stopping after %d of %d new trials: %s", self.started, self.budget, err)
                return None
            self.started += 1
            ok, why = self.feasible(proposal.arch) if self.feasible else (True, "")
            if not ok:
                self._finish(proposal, TrialResult("failed", reason=outcomes.infeasible(why)), asks)
                continue
            self.running[proposal.id] = proposal
            self._asks[proposal.id] = asks
            return proposal
        return None

    def tell(self, proposal: Proposal, result: TrialResult) -> Outcome:
        """A started proposal's result: tell, record, save state; settle its duplicates."""
        self.running.pop(proposal.id, None)
        self._starved = False
        return self._finish(proposal, result, self._asks.pop(proposal.id, 1))

    def abandon(self, proposal: Proposal) -> None:
        """A started proposal that never ran (removed before it started): no outcome, no
        record; it no longer counts against the budget, so a resume asks again."""
        self.running.pop(proposal.id, None)
        self._asks.pop(proposal.id, None)
        self._starved = False
        self.started -= 1

    def state_dict(self) -> dict:
        """JSON: the policy's state_dict plus the driver's counters."""
        return {"policy": self.policy.state_dict(),
                "searcher": {"started": self.started, "budget": self.budget}}

    def load_state_dict(self, data: dict) -> None:
        self.policy.load_state_dict(data["policy"])
        self.started = int(data["searcher"]["started"])
        self.budget = int(data["searcher"]["budget"])

    # --- the record, built here only ------------------------------------------------
    def _finish(self, proposal: Proposal, result: TrialResult, asks: int) -> Outcome:
        outcome = outcomes.trial_outcome(result, self.objectives)
        self.policy.tell(proposal.id, outcome)
        self._write(self._record(proposal, outcome, result, asks))
        for dup in self.cache.finish(self.policy, proposal, outcome):
            self._write_cached(dup)
        return outcome

    def _write_cached(self, dup: CachedResult) -> None:
        """A duplicate was told the original's outcome: record it as reused."""
        if dup.proposal.id in self.known:          # recorded before a crash; told again on resume
            self._save_state()
            return
        original = self.known.get(dup.cached_from)
        reused = TrialResult(dup.outcome.state, dict(original.metrics) if original else {},
                             experiences_done=original.experiences_done if original else 0)
        self._write(self._record(dup.proposal, dup.outcome, reused, 1, cached_from=dup.cached_from))

    def _record(self, proposal: Proposal, outcome: Outcome, result: TrialResult, asks: int,
                cached_from: int | None = None) -> TrialRecord:
        return TrialRecord(
            proposal_id=proposal.id, arch_id=proposal.arch.arch_id, arch=proposal.arch.to_dict(),
            params=dict(proposal.params), state=outcome.state, metrics=dict(result.metrics),
            objectives=None if outcome.values is None else list(outcome.values),
            acc_matrix=result.acc_matrix, expert_load=result.expert_load,
            curriculum_log=result.curriculum_log, bits_matrix=result.bits_matrix,
            dynamics=result.dynamics, reason=outcome.reason, policy=self.policy.name,
            seed=self.seed, wall_time_s=float(result.wall_time_s),
            experiences_done=int(result.experiences_done), cached_from=cached_from,
            trial_id=result.trial_id, node=result.node, asks=asks)

    def _write(self, record: TrialRecord) -> None:
        append_record(self.run_dir, record)
        self.known[record.proposal_id] = record
        self.written.append(record)
        self._save_state()

    def _save_state(self) -> None:
        write_json_atomic(self.run_dir / POLICY_STATE_FILE, self.policy.state_dict())
