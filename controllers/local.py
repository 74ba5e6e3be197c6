"""The search without Ray: ``SearchDriver`` with an in-process executor, one trial at a time.

It writes the same run directory as the Ray runner (``controllers.records``), in the
driver's order (tell, append the record, rewrite the policy state), so a killed local
run resumes exactly like a Ray one (``controllers.driver``).

``evaluate(candidate) -> (state, metrics, extra)``: ``state`` is complete, failed or
pruned; ``metrics`` maps metric names to floats; ``extra`` may hold the record fields
``acc_matrix``, ``test_acc_matrix``, ``expert_load``, ``curriculum_log``, ``reason``,
``experiences_done``, ``wall_time_s``, ``chance_accuracy``, ``weights`` (the trained
model's folder). A seed repeat (``search.remeasure``, ``dynas confirm``) calls
``evaluate(candidate, seed=S)`` with its training seed. An exception is a failed trial worded by
``controllers.outcomes.failure_reason``, except user errors (``DynasError`` other than
``InfeasibleError``), which stop the run, and faults of the machine (a full disk:
``outcomes.infrastructure_fault``), which stop it with ``InfrastructureError`` and are
never recorded. The run directory is locked for the run (``controllers.lock``).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dynas.search_space.base import Candidate, Space
from dynas.search_space.errors import DynasError, InfeasibleError, InfrastructureError
from dynas.search_space.settings import Objective

from . import outcomes
from .driver import Feasibility, SearchDriver
from .kept_weights import LOCAL_WEIGHTS_DIR, WeightKeeper
from .lock import run_lock
from .policy import Policy
from .records import (EXPERIMENT_COPY, POLICY_STATE_FILE, RECORDS_FILE, RUN_FILE, TrialRecord,
                      iter_records, require_run_dir, trained_count, write_json_atomic)
from .results import TrialResult

log = logging.getLogger(__name__)

Evaluation = tuple[str, Mapping[str, float], Mapping[str, Any]]
Evaluate = Callable[[Candidate], Evaluation]
EXTRA_FIELDS = ("acc_matrix", "test_acc_matrix", "expert_load", "curriculum_log", "bits_matrix", "dynamics",
                "reason", "experiences_done", "wall_time_s", "chance_accuracy", "weights", "evaluation")


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
    feasible: Feasibility | None = None,
    keeper: WeightKeeper | None = None,
    remeasure: int = 0,
    train_seed: int = 0,
) -> list[TrialRecord]:
    """Train ``trials`` distinct candidates (duplicates are reused, not counted).

    Returns the records written by this call. With ``resume``, the policy state and the
    records already in ``run_dir`` are loaded and the run continues to ``trials``.
    Stops early, with a warning, when the policy keeps proposing known candidates.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"trials": trials, "seed": seed, **(run_info or {})}
    with run_lock(run_dir):
        known = _start(run_dir, policy, resume, info, objectives, space)
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
    """The in-process executor: one ``evaluate`` call as a ``TrialResult``."""
    start = time.perf_counter()
    try:
        state, metrics, extra = evaluate(arch) if seed is None else evaluate(arch, seed=seed)
    except Exception as err:  # the candidate failed, not the search ...
        if isinstance(err, DynasError) and not isinstance(err, InfeasibleError):
            raise                                   # ... unless it is the user's error
        fault = outcomes.infrastructure_fault(err)
        if fault:                                   # ... or the machine's
            raise InfrastructureError(f"{fault}; the search stopped, the trial is not recorded") from err
        log.info("trial failed: %s", err)
        state, metrics, extra = "failed", {}, {"reason": outcomes.failure_reason(err)}
    extra = dict(extra)
    unknown = set(extra) - set(EXTRA_FIELDS)
    if unknown:
        raise ValueError(f"evaluate returned unknown extra fields {sorted(unknown)}; known: {EXTRA_FIELDS}")
    if state not in ("complete", "failed", "pruned"):
        raise ValueError(f"evaluate returned state {state!r}; expected complete, failed or pruned")
    extra.setdefault("wall_time_s", time.perf_counter() - start)
    return TrialResult(state, dict(metrics), **extra)


def _start(run_dir: Path, policy: Policy, resume: bool, info: dict, objectives: Sequence[Objective],
           space: Space) -> list[TrialRecord]:
    """Write run.json (new run) or load the policy state and records (resume)."""
    if not resume:
        if (run_dir / RECORDS_FILE).exists():
            raise DynasError(f"{run_dir}: already holds trials; resume it or pick a new directory")
        from .prepare import dynas_version, utc_now

        run = {"name": run_dir.name, "runner": "local", "strategy": policy.name,
               "objectives": [{"metric": o.metric, "direction": o.direction} for o in objectives],
               "space_size": space.size(), "dynas_version": dynas_version(), "created": utc_now(), **info}
        write_json_atomic(run_dir / RUN_FILE, run)
        return []
    require_run_dir(run_dir)
    state_path = run_dir / POLICY_STATE_FILE
    if state_path.is_file():
        policy.load_state_dict(json.loads(state_path.read_text()))
    return list(iter_records(run_dir))


# --- the real thing: trainers.fit on an experiment --------------------------------------
def fit_evaluator(experiment: Any, weights_root: Path | None = None, supernet: Path | None = None) -> Evaluate:
    """``evaluate`` that trains with ``trainers.fit`` (feasibility is the driver's check).

    With ``supernet`` (a trained supernet file) a candidate is scored with its inherited
    weights instead (``trainers.supernet.evaluate_inherited``); a seed repeat is still
    trained stand-alone (what ``search.confirm`` compares the inherited numbers with).

    The task is built once (on the first call) and shared by every trial. Out of memory
    frees the CUDA cache so the next trial fits; the reason is worded by the driver.
    With ``weights_root`` each trained model is saved as ``weights_root/<arch_id>/``.
    """
    from dynas.trainers.tasks import build_task

    task_box: list[Any] = []
    supernet_box: list[Any] = []             # the trained supernet, loaded on first use

    def evaluate(arch: Candidate, seed: int | None = None) -> Evaluation:
        from dynas.trainers.fitting import fit

        if not task_box:
            task_box.append(build_task(experiment.task, seed=experiment.training.seed))
        # a seed repeat keeps no weights: the folder is the first measurement's
        weights = weights_root / arch.arch_id if weights_root is not None and seed is None else None
        finetune = experiment.search.supernet.finetune_steps
        evaluation = "standalone" if supernet is None or seed is not None else \
            "finetuned" if finetune else "inherited"
        try:
            if evaluation == "standalone":
                result = fit(arch, task_box[0], experiment.training, weights_dir=weights, seed=seed)
            else:
                from dynas.trainers.supernet import TrainedSupernet, evaluate_inherited

                if not supernet_box:
                    supernet_box.append(TrainedSupernet.load(supernet))
                result = evaluate_inherited(supernet_box[0], arch, task_box[0], experiment.training,
                                            finetune_steps=finetune, weights_dir=weights)
        except Exception as err:
            if outcomes.is_oom(err):
                _free_cuda_cache()
            raise
        return "complete", dict(result.values), {
            "acc_matrix": result.acc_matrix, "test_acc_matrix": result.test_acc_matrix,
            "expert_load": result.expert_load,
            "curriculum_log": result.curriculum_log, "bits_matrix": result.bits_matrix,
            "dynamics": result.dynamics, "experiences_done": len(result.acc_matrix),
            "wall_time_s": result.wall_time_s, "chance_accuracy": result.chance_accuracy,
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


def run_local_experiment(
    experiment: Any,
    run_dir: str | Path,
    strategy: str | None = None,
    trials: int | None = None,
    seed: int | None = None,
    *,
    resume: bool = False,
) -> list[TrialRecord]:
    """Search an experiment's space with ``trainers.fit`` (an ArchSpace) or its
    evaluator (a plain space), no Ray involved; checked exactly as
    ``controllers.search`` checks it (``prepare_search``). With ``search.confirm`` the
    best candidates get their seed repeats at the end; the records returned include them."""
    from dynas.search_space.space import ArchSpace

    from .policies import make_policy
    from .prepare import (experiment_text, feasibility, prepare_search, train_search_baselines,
                          weight_keeper)

    search = prepare_search(experiment, strategy, trials, None, seed)
    policy = make_policy(search.strategy, experiment.space, search.objectives, search.seed, search)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        (run_dir / EXPERIMENT_COPY).write_text(experiment_text(experiment), encoding="utf-8")
    info = {"experiment": EXPERIMENT_COPY, "source": str(Path(experiment.source).resolve())
            if experiment.source else None}
    keeper = weight_keeper(search, run_dir) if isinstance(experiment.space, ArchSpace) else None
    weights_root = run_dir / LOCAL_WEIGHTS_DIR if keeper is not None else None
    from .supernet import ensure_supernet

    supernet = ensure_supernet(experiment, search, run_dir, "local")
    evaluate = fit_evaluator(experiment, weights_root, supernet) if isinstance(experiment.space, ArchSpace) \
        else evaluator_evaluate(experiment)
    written = run_local(experiment.space, evaluate, policy, search.objectives, run_dir,
                        search.trials, seed=search.seed, resume=resume, run_info=info,
                        feasible=feasibility(experiment), keeper=keeper, remeasure=search.remeasure,
                        train_seed=experiment.training.seed)
    from .confirm import confirm_in_session

    confirm_in_session(experiment, search, run_dir, "local")
    baselines = train_search_baselines(experiment, search, run_dir)
    return written + [r for r in iter_records(run_dir)
                      if r.is_confirmation and r not in written] + baselines

