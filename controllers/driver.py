"""``SearchDriver``: one trial's lifecycle, whoever runs the trial.

The driver knows no Ray. An executor (``controllers.run.in_process``, the Tune
``Searcher`` in ``controllers.tune.searcher``) only asks it for the next architecture
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

Every ``TrialRecord`` of a search (trained, duplicate, infeasible, seed repeat) is
built by ``_record``. ``budget`` counts new architectures started by this driver. With a
``keeper`` (``controllers.kept_weights``), a record that brings weights is followed by
the keep rule: weights of trials that left the kept set are removed.

Seed repeats train an architecture again with a fresh training seed (``Proposal.seed``,
``Proposal.repeat_of``). With ``remeasure`` > 0 a duplicate proposal may become one
(``controllers.dedup``): the policy is told the mean of the architecture's
measurements and the record keeps its own metrics and state (``objectives``: the mean
told). ``queue_confirmations`` hands the driver repeats that no policy asked for
(``dynas confirm``): ``ask`` serves them first, ``tell`` records them and tells no one.
Neither kind counts against ``budget``, and neither keeps weights (executors save none
for a repeat: the kept model is the first measurement's).
``queue_promotions`` hands it candidates of a lower rung to train again at this driver's
budget (``search.fidelity``, ``controllers.run.fidelity``): served first like
confirmations, recorded as first measurements at that budget, told to no policy.

Every record carries ``budget``, the steps per experience it trained at
(``trained_at``); a driver sees only the records of its own budget (or none recorded:
older runs), so duplicates, the policy's cache and the kept weights never mix rungs.
Once written, each record goes to the ``listeners`` (progress lines, the search's
TensorBoard curves: ``controllers.tracking``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Iterable, Sequence

from dynas.search_space.base import Candidate
from dynas.search_space.errors import InfeasibleError
from dynas.search_space.settings import Objective
from dynas.trainers.results import TrialMetrics

from . import outcomes
from .kept_weights import WeightKeeper, weights_entry
from .dedup import CachedResult, DedupCache, next_new_proposal
from .policy import Outcome, Policy, Proposal
from .records import POLICY_STATE_FILE, TrialRecord, append_record, write_json_atomic
from .results import TrialResult

log = logging.getLogger(__name__)

Feasibility = Callable[[Candidate], "tuple[bool, str]"]


class SearchDriver:
    def __init__(self, policy: Policy, run_dir: str | Path, *, budget: int, seed: int = 0,
                 records: Iterable[TrialRecord] = (), feasible: Feasibility | None = None,
                 max_duplicates: int = 50, objectives: Sequence[Objective] | None = None,
                 keeper: WeightKeeper | None = None, remeasure: int = 0, train_seed: int = 0,
                 listeners: Sequence[Callable[[TrialRecord], None]] = (), trained_at: int | None = None,
                 identity: Callable[[Candidate], str] | None = None):
        records = [r for r in records if not r.baseline   # references are never told to a policy
                   and (trained_at is None or r.budget in (None, trained_at))]   # one rung's view
        self.trained_at = trained_at               # steps per experience: each record's budget
        self.policy = policy
        self.objectives = tuple(policy.objectives if objectives is None else objectives)
        self.run_dir, self.budget, self.seed = Path(run_dir), int(budget), seed
        self.feasible, self.max_duplicates, self.keeper = feasible, max_duplicates, keeper
        self.remeasure = int(remeasure)
        self.cache = DedupCache.from_records(records, base_seed=train_seed, identity=identity)
        self.known: dict[int, TrialRecord] = {r.proposal_id: r for r in records   # on disk
                                              if not r.is_confirmation}
        self.queued: list[Proposal] = []           # confirmations and promotions waiting to be asked
        self.promotions: set[int] = set()          # proposal ids queued as promotions
        self.listeners = list(listeners)
        self.written: list[TrialRecord] = []       # records written by this driver
        self.running: dict[int, Proposal] = {}     # proposal id -> proposal training
        self.started = 0                           # new architectures started here
        self.exhausted: str | None = None          # why the policy ran out of new candidates
        self._asks: dict[int, int] = {}            # proposal id -> policy asks it took
        self._starved = False                      # only duplicates of running trials came
        self.stopping: str | None = None           # why the run stops early (a signal, a fault)
        self.fault: str | None = None              # the machine's fault that stopped it

    @property
    def finished(self) -> bool:
        """No more proposals: ``stop`` was called, or no confirmation is queued and the
        budget is spent or the space is exhausted."""
        return self.stopping is not None or (
            not self.queued and (self.exhausted is not None or self.started >= self.budget))

    def stop(self, why: str) -> None:
        """End the run early (a signal: ``controllers.interrupt``): nothing more is asked,
        and a trial that fails from now on is abandoned, not recorded (the stop killed
        it, not its architecture). Safe to call from a signal handler."""
        self.stopping = self.stopping or why

    def fail_infrastructure(self, proposal: Proposal, why: str) -> None:
        """The machine failed this trial (``outcomes.infrastructure_fault``): abandon it
        (a resume trains it again) and stop the run with ``why``."""
        self.abandon(proposal)
        self.fault = self.fault or why
        self.stop(why)
        log.warning("%s; stopping the search", why)

    def queue_confirmations(self, repeats: Iterable[Proposal]) -> None:
        """Seed repeats no policy asked for (``Proposal.id == repeat_of``), asked first."""
        for repeat in repeats:
            if repeat.repeat_of != repeat.id:
                raise ValueError(f"a confirmation carries its original's id; got {repeat}")
            self.queued.append(repeat)

    def queue_promotions(self, promoted: Iterable[Proposal]) -> None:
        """Candidates of a lower rung to train at this driver's budget (their own ids and
        training seeds), asked first, told to no policy (``controllers.run.fidelity``)."""
        for proposal in promoted:
            if proposal.repeat_of is not None or proposal.seed is not None:
                raise ValueError(f"a promotion trains its candidate as first measured; got {proposal}")
            self.promotions.add(proposal.id)
            self.queued.append(proposal)

    def ask(self) -> Proposal | None:
        """The next new, feasible architecture to train, or ``None``: when ``finished``,
        or (``not finished``) when only duplicates of running trials came, so the
        executor should ask again after one of them is told."""
        if self.queued and self.stopping is None:   # confirmations of one trial share its id
            return self.queued.pop(0)
        while not self.finished and not self._starved:
            try:
                proposal, _, asks = next_new_proposal(self.policy, self.cache, self.max_duplicates,
                                                      on_cached=self._write_cached,
                                                      remeasure=self.remeasure)
            except InfeasibleError as err:
                if self.running:                   # a finishing trial may settle the duplicates
                    self._starved = True
                    return None
                self.exhausted = str(err)
                log.warning("stopping after %d of %d new trials: %s", self.started, self.budget, err)
                return None
            if proposal.repeat_of is not None:     # a remeasure: trained before, so feasible
                self.running[proposal.id] = proposal
                self._asks[proposal.id] = asks
                return proposal
            self.started += 1
            ok, why = self.feasible(proposal.arch) if self.feasible else (True, "")
            if not ok:
                self._finish(proposal, TrialResult("failed", reason=outcomes.infeasible(why)), asks)
                continue
            self.running[proposal.id] = proposal
            self._asks[proposal.id] = asks
            return proposal
        return None

    def tell(self, proposal: Proposal, result: TrialResult) -> Outcome | None:
        """A started proposal's result: tell, record, save state; settle its duplicates.
        While stopping, a failure is abandoned instead (``stop``); returns None then."""
        if self.stopping is not None and result.state == "failed":
            self.abandon(proposal)
            return None
        self.running.pop(proposal.id, None)
        self._starved = False
        return self._finish(proposal, result, self._asks.pop(proposal.id, 1))

    def abandon(self, proposal: Proposal) -> None:
        """A started proposal that never ran (removed before it started): no outcome, no
        record; it no longer counts against the budget, so a resume asks again (a
        confirmation goes back in the queue)."""
        self.running.pop(proposal.id, None)
        self._asks.pop(proposal.id, None)
        self._starved = False
        if _is_confirmation(proposal) or proposal.id in self.promotions:
            self.queued.insert(0, proposal)
        elif proposal.repeat_of is None:
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
        measured = outcomes.trial_outcome(result, self.objectives)
        if _is_confirmation(proposal):             # told to no one
            self.cache.measured(proposal.arch.arch_id).seeds.append(proposal.seed)
            self._write(self._record(proposal, measured, result, 0))
            return measured
        if proposal.id in self.promotions:         # told to no one: a rung decision, not a policy's
            self._write(self._record(proposal, measured, result, 0))
            self.cache.finish(self.policy, proposal, measured)
            return measured
        told = self.cache.told_outcome(proposal, measured)
        self.policy.tell(proposal.id, told)
        self._write(self._record(proposal, measured, result, asks, told=told))
        for dup in self.cache.finish(self.policy, proposal, told, measured):
            self._write_cached(dup)
        return told

    def _write_cached(self, dup: CachedResult) -> None:
        """A duplicate was told the original's outcome: record it as reused."""
        if dup.proposal.id in self.known:          # recorded before a crash; told again on resume
            self._save_state()
            return
        original = self.known.get(dup.cached_from)
        reused = TrialResult(dup.outcome.state, TrialMetrics(values=dict(original.metrics) if original else {}),
                             experiences_done=original.experiences_done if original else 0,
                             evaluation=original.evaluation if original else "standalone")
        self._write(self._record(dup.proposal, dup.outcome, reused, 1, cached_from=dup.cached_from))

    def _record(self, proposal: Proposal, outcome: Outcome, result: TrialResult, asks: int,
                cached_from: int | None = None, told: Outcome | None = None) -> TrialRecord:
        """``outcome`` is the trial's own; ``told`` what the policy heard, when that
        differs (a remeasure's mean): the record's ``objectives`` are those."""
        heard = told or outcome
        return make_record(
            proposal, outcome, result, policy=self.policy.name, seed=self.seed, asks=asks,
            objectives=heard.values, cached_from=cached_from,
            weights=weights_entry(self.run_dir, result.weights)
            if result.weights and outcome.state == "complete" and cached_from is None else None,
            budget=self.trained_at)

    def _write(self, record: TrialRecord) -> None:
        append_record(self.run_dir, record)
        if not record.is_confirmation:             # its id is its original's
            self.known[record.proposal_id] = record
        self.written.append(record)
        if self.keeper is not None and record.weights:
            self.keeper.update(self.known.values())
        self._save_state()
        for listener in self.listeners:
            listener(record)

    def _save_state(self) -> None:
        write_json_atomic(self.run_dir / POLICY_STATE_FILE, self.policy.state_dict(), indent=None)


def make_record(proposal: Proposal, outcome: Outcome, result: TrialResult, *, policy: str, seed: int,
                asks: int = 0, objectives: Sequence[float] | None = None, cached_from: int | None = None,
                weights: dict | None = None, baseline: str = "", budget: int | None = None) -> TrialRecord:
    """The one place a ``TrialRecord`` is built (searched trials, duplicates, infeasible
    candidates, seed repeats and reference baselines): the executor's ``result`` as it
    came, ``measured`` included, plus who asked and what was told."""
    return TrialRecord(
        proposal_id=proposal.id, arch_id=proposal.arch.arch_id, arch=proposal.arch.to_dict(),
        params=dict(proposal.params), state=outcome.state, measured=result.measured,
        objectives=None if objectives is None else list(objectives), reason=outcome.reason,
        policy=policy, seed=seed, experiences_done=int(result.experiences_done),
        cached_from=cached_from, trial_id=result.trial_id, node=result.node, asks=asks,
        baseline=baseline, weights=weights, repeat_of=proposal.repeat_of, train_seed=proposal.seed,
        evaluation=result.evaluation, budget=budget)


def _is_confirmation(proposal: Proposal) -> bool:
    return proposal.repeat_of is not None and proposal.repeat_of == proposal.id
