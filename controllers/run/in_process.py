"""The in-process executor: trials trained one at a time in this process, no Ray.

``InProcess`` implements ``controllers.run.executor.Executor``; ``run_local`` is the
bare ask -> evaluate -> tell loop over any ``Space`` and ``evaluate`` function (tests,
benchmarks, tabular searches), writing the same run directory as any run, in the
driver's order (tell, append the record, rewrite the policy state), so a killed run
resumes exactly like a Ray one (``controllers.driver``).

``evaluate(candidate) -> (state, measured, extra)``: ``state`` is complete, failed or
pruned; ``measured`` a ``trainers.results.TrialMetrics`` (or a plain mapping of metric
names to floats, its ``values``); ``extra`` may hold the executor's fields of
``TrialResult`` (``reason``, ``experiences_done``, ``weights``: the trained model's
folder, ``evaluation``). A seed repeat (``search.remeasure``, ``dynas confirm``) calls
``evaluate(candidate, seed=S)`` with its training seed. An exception is a failed trial
worded by ``controllers.outcomes.failure_reason``, except user errors (``DynasError``
other than ``InfeasibleError``), which stop the run, and faults of the machine (a full
disk: ``outcomes.infrastructure_fault``), which stop it with ``InfrastructureError`` and
are never recorded. The run directory is locked for the run (``controllers.lock``).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dynas.search_space.base import Candidate, Space
from dynas.search_space.boundary import json_file
from dynas.search_space.errors import DynasError, InfeasibleError, InfrastructureError
from dynas.search_space.settings import Objective
from dynas.trainers.results import TrialMetrics

from .. import outcomes
from ..driver import Feasibility, SearchDriver
from ..interrupt import StopRequest
from ..kept_weights import LOCAL_WEIGHTS_DIR, WeightKeeper
from ..lock import run_lock
from ..policy import TRIAL_STATES, Policy
from ..records import (POLICY_STATE_FILE, RECORDS_FILE, RUN_FILE, TrialRecord, base_run_info,
                       iter_records, require_run_dir, trained_count, write_json_atomic)
from ..results import TrialResult
from .tasks import task_for

log = logging.getLogger(__name__)

Evaluation = tuple[str, "TrialMetrics | Mapping[str, float]", Mapping[str, Any]]
Evaluate = Callable[[Candidate], Evaluation]
MEASURED_FIELDS = tuple(f.name for f in fields(TrialMetrics) if f.name != "values")
EXECUTOR_FIELDS = ("reason", "experiences_done", "weights", "evaluation")


class InProcess:
    """``Executor``: every trial, and the supernet, in this process, one at a time."""

    name = "local"

    def session(self, search: Any, verbose: int) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def drive(self, driver: SearchDriver, experiment: Any, search: Any, run_dir: Path, phase: str, *,
              verbose: int, stop: StopRequest | None = None) -> None:
        drive_in_process(driver, experiment_evaluator(experiment, search, run_dir))

    def train_supernet(self, experiment: Any, search: Any, run_dir: Path, out: Path, verbose: int) -> None:
        from dynas.search_space.constraints import is_feasible
        from dynas.trainers.supernet import train_supernet

        task = task_for(experiment.task, experiment.training.seed)
        net = train_supernet(experiment.space, task, experiment.training, search.supernet,
                             feasible=lambda a: is_feasible(a, task.shape, search.budget),
                             checkpoint_dir=out.parent / "state")
        net.save(out)


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
    feasible: Feasibility | None = None,
    keeper: WeightKeeper | None = None,
    remeasure: int = 0,
    train_seed: int = 0,
) -> list[TrialRecord]:
    """Train ``trials`` distinct candidates of ``space`` with ``evaluate`` (duplicates
    are reused, not counted): the bare loop, for a space without an experiment file.

    Returns the records written by this call. With ``resume``, the policy state and the
    records already in ``run_dir`` are loaded and the run continues to ``trials``.
    Stops early, with a warning, when the policy keeps proposing known candidates.
    An experiment's run (``dynas search``, ``dynas.search``) goes through
    ``controllers.run.session`` instead, with ``InProcess`` as its executor.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        known = _start(run_dir, policy, resume, objectives, space, trials, seed)
        driver = SearchDriver(policy, run_dir, budget=trials - trained_count(known), seed=seed,
                              records=known, feasible=feasible, max_duplicates=max_duplicates,
                              objectives=objectives, keeper=keeper, remeasure=remeasure,
                              train_seed=train_seed)
        return drive_in_process(driver, evaluate)


def drive_in_process(driver: SearchDriver, evaluate: Evaluate) -> list[TrialRecord]:
    """Ask, evaluate in this process, tell, until the driver has nothing left."""
    while (proposal := driver.ask()) is not None:
        driver.tell(proposal, run_in_process(evaluate, proposal.arch, proposal.seed))
    return driver.written


def run_in_process(evaluate: Evaluate, arch: Candidate, seed: int | None = None) -> TrialResult:
    """One ``evaluate`` call as a ``TrialResult`` (see the module docstring)."""
    start = time.perf_counter()
    try:
        state, measured, extra = evaluate(arch) if seed is None else evaluate(arch, seed=seed)
    except Exception as err:  # the candidate failed, not the search ...
        if isinstance(err, DynasError) and not isinstance(err, InfeasibleError):
            raise                                   # ... unless it is the user's error
        fault = outcomes.infrastructure_fault(err)
        if fault:                                   # ... or the machine's
            raise InfrastructureError(f"{fault}; the search stopped, the trial is not recorded") from err
        log.info("trial failed: %s", err)
        state, measured, extra = "failed", {}, {"reason": outcomes.failure_reason(err)}
    extra = dict(extra)
    unknown = set(extra) - set(MEASURED_FIELDS) - set(EXECUTOR_FIELDS)
    if unknown:
        raise ValueError(f"evaluate returned unknown extra fields {sorted(unknown)}; "
                         f"known: {MEASURED_FIELDS + EXECUTOR_FIELDS}")
    if state not in TRIAL_STATES:
        raise ValueError(f"evaluate returned state {state!r}; expected {', '.join(TRIAL_STATES)}")
    if not isinstance(measured, TrialMetrics):
        measured = TrialMetrics(values=dict(measured), **{k: extra.pop(k) for k in MEASURED_FIELDS if k in extra})
    if not measured.wall_time_s:
        measured.wall_time_s = time.perf_counter() - start
    return TrialResult(state, measured, **extra)


def _start(run_dir: Path, policy: Policy, resume: bool, objectives: Sequence[Objective], space: Space,
           trials: int, seed: int) -> list[TrialRecord]:
    """Write run.json (new run) or load the policy state and records (resume)."""
    if not resume:
        if (run_dir / RECORDS_FILE).exists():
            raise DynasError(f"{run_dir}: already holds trials; resume it or pick a new directory")
        write_json_atomic(run_dir / RUN_FILE, base_run_info(
            run_dir.name, "local", policy.name, trials, seed, objectives, space.size()))
        return []
    require_run_dir(run_dir)
    state_path = run_dir / POLICY_STATE_FILE
    if state_path.is_file():
        policy.load_state_dict(json_file(state_path))
    return list(iter_records(run_dir))


# --- the real thing: trainers.fit on an experiment --------------------------------------
def experiment_evaluator(experiment: Any, search: Any, run_dir: Path) -> Evaluate:
    """``evaluate`` for an experiment's trials in this process: ``trainers.fit`` (an
    architecture space; trained models kept under ``RUN_DIR/weights`` unless
    ``search.keep_weights: none``; inherited scores from the run's supernet with
    ``search.evaluation: supernet``) or the evaluator of a plain decision space."""
    from dynas.search_space.space import ArchSpace

    from .supernet import supernet_path

    if not isinstance(experiment.space, ArchSpace):
        return evaluator_evaluate(experiment)
    weights_root = run_dir / LOCAL_WEIGHTS_DIR if search.keep_weights != "none" else None
    supernet = supernet_path(run_dir) if search.evaluation == "supernet" else None
    return fit_evaluator(experiment, weights_root, supernet)


def fit_evaluator(experiment: Any, weights_root: Path | None = None, supernet: Path | None = None) -> Evaluate:
    """``evaluate`` that trains with ``trainers.fit`` (feasibility is the driver's check).

    With ``supernet`` (a trained supernet file) a candidate is scored with its inherited
    weights instead (``trainers.supernet.evaluate_inherited``); a seed repeat is still
    trained stand-alone (what ``search.confirm`` compares the inherited numbers with).
    Out of memory frees the CUDA cache so the next trial fits; the reason is worded by
    the driver. With ``weights_root`` each trained model is saved as
    ``weights_root/<arch_id>/``.
    """
    supernet_box: list[Any] = []             # the trained supernet, loaded on first use

    def evaluate(arch: Candidate, seed: int | None = None) -> Evaluation:
        from dynas.trainers.fitting import fit

        task = task_for(experiment.task, experiment.training.seed)
        # a seed repeat keeps no weights: the folder is the first measurement's
        weights = weights_root / arch.arch_id if weights_root is not None and seed is None else None
        finetune = experiment.search.supernet.finetune_steps
        evaluation = "standalone" if supernet is None or seed is not None else \
            "finetuned" if finetune else "inherited"
        try:
            if evaluation == "standalone":
                measured = fit(arch, task, experiment.training, weights_dir=weights, seed=seed)
            else:
                from dynas.trainers.supernet import TrainedSupernet, evaluate_inherited

                if not supernet_box:
                    supernet_box.append(TrainedSupernet.load(supernet))
                measured = evaluate_inherited(supernet_box[0], arch, task, experiment.training,
                                              finetune_steps=finetune, weights_dir=weights)
        except Exception as err:
            if outcomes.is_oom(err):
                _free_cuda_cache()
            raise
        return "complete", measured, {"experiences_done": len(measured.acc_matrix),
                                      "weights": str(weights) if weights else "", "evaluation": evaluation}

    return evaluate


def evaluator_evaluate(experiment: Any) -> Evaluate:
    """``evaluate`` of a plain decision space: one call of the experiment's evaluator."""
    from dynas.search_space.evaluators import evaluate as call

    settings = experiment.evaluator

    def evaluate(candidate: Candidate) -> Evaluation:
        return "complete", call(settings.name, candidate.to_dict(), settings.options), {"experiences_done": 1}

    return evaluate


def _free_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
