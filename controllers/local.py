"""The search loop without Ray: ask -> evaluate -> tell, one trial at a time.

It writes the same run directory as the Ray searcher (``controllers.records``): one
record per trial in ``trials.jsonl`` and the policy's state in ``policy_state.json``
after every tell. Order per trial: tell, append the record, rewrite the state. A crash
between the last two leaves a record the saved state has not seen; on ``resume`` the
restored policy proposes that same candidate again (its next ask is the saved one's),
the duplicate cache tells it the recorded outcome, and nothing is written twice.

``evaluate(candidate) -> (state, metrics, extra)``: ``state`` is complete, failed or
pruned; ``metrics`` maps metric names to floats; ``extra`` may hold the record fields
``acc_matrix``, ``expert_load``, ``curriculum_log``, ``reason``, ``experiences_done``,
``wall_time_s``. An exception is a failed trial with the exception as its reason, except
user errors (``DynasError`` other than ``InfeasibleError``), which stop the run.
"""
from __future__ import annotations

import json
import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from search_space.base import Candidate, Space
from search_space.errors import DynasError, InfeasibleError
from search_space.settings import Objective

from .dedup import DedupCache, next_new_proposal
from .recorder import RunRecorder
from .objectives import is_finite, objective_values
from .policy import Outcome, Policy, Proposal
from .records import (EXPERIMENT_COPY, POLICY_STATE_FILE, RECORDS_FILE, RUN_FILE, TrialRecord,
                      iter_records, require_run_dir, write_json_atomic)

log = logging.getLogger(__name__)

Evaluation = tuple[str, Mapping[str, float], Mapping[str, Any]]
Evaluate = Callable[[Candidate], Evaluation]
EXTRA_FIELDS = ("acc_matrix", "expert_load", "curriculum_log", "reason", "experiences_done", "wall_time_s")


def run_local(
    space: Space,
    evaluate: Evaluate,
    policy: Policy,
    objectives: Sequence[Objective],
    run_dir: str | Path,
    trials: int,
    *,
    seed: int = 0,
    resume: bool = False,
    max_duplicates: int = 50,
    run_info: Mapping[str, Any] | None = None,
) -> list[TrialRecord]:
    """Train ``trials`` distinct candidates (duplicates are reused, not counted).

    Returns the records written by this call. With ``resume``, the policy state and the
    records already in ``run_dir`` are loaded and the run continues to ``trials``.
    Stops early, with a warning, when the policy keeps proposing known candidates.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    known = _start(run_dir, policy, resume, {"trials": trials, "seed": seed, **(run_info or {})},
                   objectives, space)
    cache = DedupCache.from_records(known.values())
    loop = _Loop(run_dir, policy, objectives, seed, known)
    trained = sum(r.cached_from is None for r in known.values())
    while trained < trials:
        try:
            proposal, _ = next_new_proposal(policy, cache, max_duplicates, on_cached=loop.write_cached)
        except InfeasibleError as err:
            log.warning("stopping after %d of %d trials: %s", trained, trials, err)
            break
        outcome = loop.evaluate_and_tell(evaluate, proposal)
        for waited in cache.finish(policy, proposal, outcome):   # none when sequential
            loop.write_cached(waited)
        trained += 1
    return loop.recorder.written


def _start(run_dir: Path, policy: Policy, resume: bool, info: dict, objectives: Sequence[Objective],
           space: Space) -> dict[int, TrialRecord]:
    """Write run.json (new run) or load the policy state and records (resume)."""
    if not resume:
        if (run_dir / RECORDS_FILE).exists():
            raise DynasError(f"{run_dir}: already holds trials; resume it or pick a new directory")
        run = {"name": run_dir.name, "runner": "local", "strategy": policy.name,
               "objectives": [{"metric": o.metric, "direction": o.direction} for o in objectives],
               "space_size": space.size(), "dynas_version": _version(),
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **info}
        write_json_atomic(run_dir / RUN_FILE, run)
        return {}
    require_run_dir(run_dir)
    state_path = run_dir / POLICY_STATE_FILE
    if state_path.is_file():
        policy.load_state_dict(json.loads(state_path.read_text()))
    return {r.proposal_id: r for r in iter_records(run_dir)}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynas")
    except PackageNotFoundError:
        return "unknown (not installed)"


class _Loop:
    """Per-trial bookkeeping: tell, record, save state, in that order."""

    def __init__(self, run_dir: Path, policy: Policy, objectives: Sequence[Objective], seed: int,
                 known: dict[int, TrialRecord]):
        self.run_dir, self.policy, self.objectives, self.seed = run_dir, policy, tuple(objectives), seed
        self.recorder = RunRecorder(run_dir, policy, seed, known)
        self.write_cached = self.recorder.write_cached

    def evaluate_and_tell(self, evaluate: Evaluate, proposal: Proposal) -> Outcome:
        start = time.perf_counter()
        try:
            state, metrics, extra = evaluate(proposal.arch)
        except InfeasibleError as err:
            state, metrics, extra = "failed", {}, {"reason": f"infeasible: {err}"}
        except DynasError:
            raise
        except Exception as err:  # the candidate failed, not the search
            log.info("trial %d failed: %s", proposal.id, err)
            state, metrics, extra = "failed", {}, {"reason": f"{type(err).__name__}: {err}"}
        extra = dict(extra)
        unknown = set(extra) - set(EXTRA_FIELDS)
        if unknown:
            raise ValueError(f"evaluate returned unknown extra fields {sorted(unknown)}; known: {EXTRA_FIELDS}")
        extra.setdefault("wall_time_s", time.perf_counter() - start)
        outcome = self._outcome(state, dict(metrics), extra.get("reason"))
        extra["reason"] = outcome.reason
        self.policy.tell(proposal.id, outcome)
        record = TrialRecord(
            proposal_id=proposal.id, arch_id=proposal.arch.arch_id, arch=proposal.arch.to_dict(),
            params=dict(proposal.params), state=outcome.state, metrics=dict(metrics),
            objectives=None if outcome.values is None else list(outcome.values),
            policy=self.policy.name, seed=self.seed, **extra)
        self.recorder.write(record)
        return outcome

    def _outcome(self, state: str, metrics: dict[str, float], reason: str | None) -> Outcome:
        if state not in ("complete", "failed", "pruned"):
            raise ValueError(f"evaluate returned state {state!r}; expected complete, failed or pruned")
        if state == "failed":
            return Outcome("failed", None, reason or "failed")
        if state == "pruned":
            present = all(o.metric in metrics for o in self.objectives)
            values = objective_values(metrics, self.objectives) if present else None
            return Outcome("pruned", values if is_finite(values) else None, reason)
        values = objective_values(metrics, self.objectives)
        if not all(math.isfinite(v) for v in values):
            return Outcome("failed", None, f"non-finite objective values {list(values)}")
        return Outcome("complete", values, reason)


# --- the real thing: trainers.fit on an experiment --------------------------------------
def fit_evaluator(experiment: Any) -> Evaluate:
    """``evaluate`` that checks feasibility, then trains with ``trainers.fit``.

    The task is built once (on the first call) and shared by every trial.
    """
    from search_space.constraints import is_feasible
    from trainers.tasks import build_task, task_shape

    shape = task_shape(experiment.task)
    task_box: list[Any] = []

    def evaluate(arch: Candidate) -> Evaluation:
        ok, why = is_feasible(arch, shape, experiment.search.budget)
        if not ok:
            return "failed", {}, {"reason": f"infeasible: {why}"}
        from trainers.fit import fit
        from trainers.results import NonFiniteLoss

        if not task_box:
            task_box.append(build_task(experiment.task, seed=experiment.training.seed))
        try:
            result = fit(arch, task_box[0], experiment.training)
        except NonFiniteLoss as err:
            return "failed", {}, {"reason": f"non-finite loss: {err}"}
        except Exception as err:
            if _is_oom(err):
                return "failed", {}, {"reason": f"out of memory: {err}"}
            raise
        return "complete", dict(result.values), {
            "acc_matrix": result.acc_matrix, "expert_load": result.expert_load,
            "curriculum_log": result.curriculum_log, "experiences_done": len(result.acc_matrix),
            "wall_time_s": result.wall_time_s}

    return evaluate


def _is_oom(err: Exception) -> bool:
    """CUDA (or CPU allocator) out of memory; frees the CUDA cache so the next trial fits."""
    import torch

    text = str(err).lower()
    oom = (isinstance(err, (torch.cuda.OutOfMemoryError, MemoryError))
           or "out of memory" in text or "can't allocate memory" in text)   # CUDA / CPU allocator
    if oom and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return oom


def run_local_experiment(
    experiment: Any,
    run_dir: str | Path,
    strategy: str | None = None,
    trials: int | None = None,
    seed: int | None = None,
    *,
    resume: bool = False,
) -> list[TrialRecord]:
    """Search an experiment's ArchSpace with ``trainers.fit``, no Ray involved."""
    from search_space.errors import ConfigError
    from search_space.space import ArchSpace

    from .policies import make_policy

    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("space", "a plain decision space has no trainer; call run_local with "
                                   "your own evaluate function")
    search = experiment.search
    strategy = strategy or search.strategy
    trials = search.trials if trials is None else trials
    seed = search.seed if seed is None else seed
    policy = make_policy(strategy, experiment.space, search.objectives, seed, search)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        _copy_experiment(experiment, run_dir)
    info = {"experiment": EXPERIMENT_COPY, "source": str(Path(experiment.source).resolve())
            if experiment.source else None}
    return run_local(experiment.space, fit_evaluator(experiment), policy, search.objectives, run_dir,
                     trials, seed=seed, resume=resume, run_info=info)


def _copy_experiment(experiment: Any, run_dir: Path) -> None:
    import yaml

    target = run_dir / EXPERIMENT_COPY
    if experiment.source and Path(experiment.source).is_file():
        target.write_text(Path(experiment.source).read_text(encoding="utf-8"), encoding="utf-8")
    else:
        target.write_text(yaml.safe_dump(experiment.raw, sort_keys=False), encoding="utf-8")
