"""The one Ray-aware search class: a Tune ``Searcher`` that wraps any ``Policy``.

Who calls what (all on the driver, in Tune's event loop):

- ``suggest(trial_id)`` asks the policy (through the duplicate cache, so no
  architecture is trained twice in a run) and returns the trial's config
  ``{"proposal_id", "arch", "params", "arch_id"}``; duplicates of finished trials are
  told their cached outcome and recorded at once, infeasible candidates are recorded as
  failed at once. Both count as trials only when new (duplicates never count).
- ``on_trial_complete(trial_id, result, error)`` turns Tune's verdict into an
  ``Outcome``: ``complete`` when every experience was trained, ``pruned`` when a
  scheduler stopped it earlier (``experiences_done < num_experiences``), ``failed`` on an
  error. Errors carry no message in this hook, so ``TrialErrors`` (a Tune callback Tune
  calls right after it) hands the reason over; the record waits for it.
- Per finished trial, in this order: ``policy.tell``, ``append_record`` (durable),
  ``policy_state.json`` (atomic). Records are written here, by the driver, once.

Concurrency is Ray's ``ConcurrencyLimiter`` around this class; ``budget`` is the number
of new architectures this searcher starts before it answers ``FINISHED``.

Trainables report with ``tune_result``; the rich fields (accuracy matrix, expert load)
travel as one JSON string under ``RESULT_KEY`` because Tune flattens nested results.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ray import cloudpickle
from ray.tune import Callback
from ray.tune.search import Searcher

from search_space import names
from search_space.base import Candidate
from search_space.errors import ConfigError, InfeasibleError
from search_space.settings import Objective

from .dedup import DedupCache, next_new_proposal
from .recorder import RunRecorder
from .objectives import is_finite, objective_values
from .policy import Outcome, Policy, Proposal
from .records import TrialRecord, write_json_atomic

log = logging.getLogger(__name__)

RESULT_KEY = "dynas"                  # JSON blob: metrics, acc_matrix, expert_load, ...
DONE_KEY = "experiences_done"         # Tune's time attribute for ASHA
TOTAL_KEY = "num_experiences"
SHOWN_FIRST = (names.FINAL_AVG_ACCURACY, names.FLOPS, names.FORGETTING_LAST)
Feasibility = Callable[[Candidate], "tuple[bool, str]"]


def tune_result(metrics: Mapping[str, float], experiences_done: int, num_experiences: int,
                **extra: Any) -> dict[str, Any]:
    """What a trainable passes to ``tune.report``: scalars for Tune, one blob for us.

    ``extra`` may hold ``acc_matrix``, ``expert_load``, ``curriculum_log``, ``wall_time_s``
    and ``node_id`` (Ray's node id; the record's ``node`` is ``IP/node-id-prefix``).
    """
    blob = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}
    # Tune's status table shows the first few scalars: make them the telling ones.
    first = [k for k in SHOWN_FIRST if k in metrics]
    scalars = {k: float(metrics[k]) for k in first + sorted(set(metrics) - set(first))}
    return {DONE_KEY: int(experiences_done), **scalars, TOTAL_KEY: int(num_experiences),
            RESULT_KEY: json.dumps(blob, allow_nan=True)}


def parse_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The blob of a ``tune_result`` (empty when the trial never reported)."""
    if not result or RESULT_KEY not in result:
        return {}
    blob = json.loads(result[RESULT_KEY])
    blob[DONE_KEY] = int(result.get(DONE_KEY, 0))
    blob[TOTAL_KEY] = int(result.get(TOTAL_KEY, 0))
    node_id = blob.pop("node_id", "")       # IPs alone do not tell loopback nodes apart
    blob["node"] = str(result.get("node_ip", "")) + (f"/{node_id[:8]}" if node_id else "")
    blob.setdefault("wall_time_s", float(result.get("time_total_s", 0.0)))
    return blob


class PolicySearcher(Searcher):
    """Any ``Policy`` behind Tune's ``Searcher`` API; see the module docstring."""

    def __init__(self, policy: Policy, run_dir: str | Path, *, budget: int,
                 cache: DedupCache | None = None, known: Mapping[int, TrialRecord] | None = None,
                 feasible: Feasibility | None = None, seed: int = 0, max_duplicates: int = 50,
                 metric: str | None = None, mode: str | None = None):
        super().__init__(metric=metric, mode=mode)
        self.policy = policy
        self.objectives: tuple[Objective, ...] = tuple(policy.objectives)
        self.run_dir = Path(run_dir)
        self.budget = int(budget)
        self.cache = cache if cache is not None else DedupCache()
        self.recorder = RunRecorder(run_dir, policy, seed, known)
        self.feasible = feasible
        self.seed = seed
        self.max_duplicates = max_duplicates
        self.started = 0                          # new architectures started here
        self.exhausted: str | None = None         # why the policy ran out of new candidates
        self._live: dict[str, Proposal] = {}      # trial_id -> proposal training
        self._last: dict[str, dict] = {}          # trial_id -> last reported result
        self._errored: dict[str, Proposal] = {}   # errored, waiting for TrialErrors' reason
        self._starved = False                     # only duplicates of running trials left

    # --- Tune's Searcher API -------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        self._metric, self._mode = metric or self._metric, mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        self.flush_errors()
        while self.started < self.budget:
            if self._starved:
                return None
            try:
                proposal, _ = next_new_proposal(self.policy, self.cache, self.max_duplicates,
                                                on_cached=self.recorder.write_cached)
            except InfeasibleError as err:
                if self._live:                    # a finishing trial may unblock duplicates
                    self._starved = True
                    return None
                self.exhausted = str(err)
                log.warning("stopping after %d of %d new trials: %s", self.started, self.budget, err)
                return Searcher.FINISHED
            self.started += 1
            ok, why = self.feasible(proposal.arch) if self.feasible else (True, "")
            if not ok:
                self._finish(proposal, Outcome("failed", None, f"infeasible: {why}"), {})
                continue
            self._live[trial_id] = proposal
            return {"proposal_id": proposal.id, "arch": proposal.arch.to_dict(),
                    "params": dict(proposal.params), "arch_id": proposal.arch.arch_id}
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last[trial_id] = result

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        proposal = self._live.pop(trial_id, None)
        if proposal is None:
            return
        self._starved = False
        if error:
            self._errored[trial_id] = proposal     # reason arrives via TrialErrors
            return
        last = self._last.pop(trial_id, None)
        if not result or RESULT_KEY not in result:
            result = last
        if not result:                           # removed before it ever ran: re-asked on resume
            self.started -= 1
            return
        blob = parse_result(result)
        outcome = self._outcome(blob, trial_id)
        self._finish(proposal, outcome, blob, trial_id)

    def record_error(self, trial_id: str, reason: str) -> None:
        """``TrialErrors`` hands over why an errored trial failed."""
        proposal = self._errored.pop(trial_id, None)
        if proposal is not None:
            blob = parse_result(self._last.pop(trial_id, None))
            self._finish(proposal, Outcome("failed", None, reason), blob, trial_id)

    def flush_errors(self) -> None:
        """Errored trials whose reason never came (should not happen) fail without one."""
        for trial_id in list(self._errored):
            self.record_error(trial_id, "trial errored (no error message reached the driver)")

    def save(self, checkpoint_path: str) -> None:
        """JSON, not pickle: the policy's state_dict plus this searcher's counters."""
        write_json_atomic(checkpoint_path, {"policy": self.policy.state_dict(),
                                            "searcher": {"started": self.started, "budget": self.budget}})

    def restore(self, checkpoint_path: str) -> None:
        data = json.loads(Path(checkpoint_path).read_text())
        self.policy.load_state_dict(data["policy"])
        self.started = int(data["searcher"]["started"])
        self.budget = int(data["searcher"]["budget"])

    def __getstate__(self) -> dict:
        # Tune pickles its config (tuner.pkl). The policy's state lives in
        # policy_state.json instead; a searcher unpickled from there is a shell.
        state = self.__dict__.copy()
        for key in ("policy", "cache", "recorder", "feasible", "_live", "_last", "_errored"):
            state[key] = None
        return state

    # --- outcomes and records -------------------------------------------------------
    def _outcome(self, blob: dict[str, Any], trial_id: str) -> Outcome:
        metrics = blob.get("metrics", {})
        done, total = blob.get(DONE_KEY, 0), blob.get(TOTAL_KEY, 0)
        if done < total:
            reason = f"stopped by the scheduler after {done} of {total} experiences"
            present = all(o.metric in metrics for o in self.objectives)
            values = objective_values(metrics, self.objectives) if present else None
            return Outcome("pruned", values if is_finite(values) else None, reason)
        try:
            values = objective_values(metrics, self.objectives)
        except ConfigError as err:
            return Outcome("failed", None, str(err))
        if not all(math.isfinite(v) for v in values):
            return Outcome("failed", None, f"non-finite objective values {list(values)}")
        return Outcome("complete", values)

    def _finish(self, proposal: Proposal, outcome: Outcome, blob: dict[str, Any], trial_id: str = "") -> None:
        """Tell, record, save state; then settle the duplicates that waited for it."""
        self.policy.tell(proposal.id, outcome)
        record = TrialRecord(
            proposal_id=proposal.id, arch_id=proposal.arch.arch_id, arch=proposal.arch.to_dict(),
            params=dict(proposal.params), state=outcome.state, metrics=dict(blob.get("metrics", {})),
            objectives=None if outcome.values is None else list(outcome.values),
            acc_matrix=blob.get("acc_matrix", []), expert_load=blob.get("expert_load", {}),
            curriculum_log=blob.get("curriculum_log", []), reason=outcome.reason,
            policy=self.policy.name, seed=self.seed, wall_time_s=float(blob.get("wall_time_s", 0.0)),
            experiences_done=int(blob.get(DONE_KEY, 0)), trial_id=trial_id, node=blob.get("node", ""))
        self.recorder.write(record)
        for dup in self.cache.finish(self.policy, proposal, outcome):
            self.recorder.write_cached(dup)


class TrialErrors(Callback):
    """Passes an errored trial's exception text to the searcher (Tune calls this right
    after ``Searcher.on_trial_complete(error=True)``, which carries no message)."""

    def __init__(self, searcher: PolicySearcher):
        self.searcher = searcher

    def on_trial_error(self, iteration: int, trials: Sequence, trial: Any, **info: Any) -> None:
        self.searcher.record_error(trial.trial_id, error_reason(trial))


def error_reason(trial: Any, limit: int = 500) -> str:
    """``"ExceptionType: message"`` of the trial's last error, one line."""
    # Tune has just written both files next to the driver (trial.local_path); the
    # storage copies that get_error() reads appear only after the next sync.
    exc, text = None, "trial errored"
    with contextlib.suppress(Exception):
        with open(trial.pickled_error_file, "rb") as fh:
            exc = cloudpickle.load(fh)
    if exc is not None:
        cause = getattr(exc, "cause", None) or exc
        text = f"{type(cause).__name__}: {cause}"
    else:
        with contextlib.suppress(Exception):
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            text = lines[-1] if lines else text
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
