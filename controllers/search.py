"""``run_search`` / ``resume_search``: an experiment searched on Ray Tune.

A run directory (``controllers.records``) is the whole state of a search. ``trials``
counts distinct architectures that finished (complete, failed or pruned; a candidate
rejected as infeasible counts as failed); duplicates a policy proposes again are
answered from the cache, recorded with ``cached_from`` and never counted or retrained.

Resuming does not use Tune's experiment restore: it rebuilds the policy from
``policy_state.json``, the duplicate cache from ``trials.jsonl``, and starts a fresh
Tune run (``ray/resume-N``) for the architectures still missing. Proposals that were
asked but never finished before the kill are simply asked again. Trial checkpoints
(``fit``'s state after each experience) live only while a run goes on: a retried
trial continues from them; they are deleted when the Tune run ends.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from search_space.errors import ConfigError, DynasError
from search_space.experiment import Experiment, load_experiment

from .records import (EXPERIMENT_COPY, POLICY_STATE_FILE, RUN_FILE, TrialRecord, create_run_dir,
                      iter_records, read_run, require_run_dir, write_json_atomic)

TUNE_DIR = "ray"
ASHA_GRACE = 2              # never prune before two experiences
ASHA_REDUCTION = 2          # keep the better half at each rung
KEEP_CHECKPOINTS = 4        # per trial, while it runs (fit state after each experience)


def run_search(config_path: str | Path, strategy: str | None = None, trials: int | None = None,
               concurrent: int | None = None, address: str | None = None, name: str | None = None,
               seed: int | None = None, storage: str | Path | None = None, *, verbose: int = 1) -> Path:
    """Search ``config_path``'s space; returns the run directory (``storage/name``)."""
    from .cluster import local_cpus, ray_session

    experiment = load_experiment(config_path)
    search = _settings(experiment, strategy, trials, concurrent, seed)
    stem = Path(config_path).stem
    run_dir = _new_run_dir(Path(storage or search.storage), name, f"{stem}-{search.strategy}")
    with ray_session(address, local_cpus(search.concurrent, search.cpus_per_trial), verbose=verbose):
        create_run_dir(run_dir, {
            "name": run_dir.name, "runner": "ray", "strategy": search.strategy,
            "trials": search.trials, "concurrent": search.concurrent, "seed": search.seed,
            "objectives": [dataclasses.asdict(o) for o in search.objectives],
            "experiment": EXPERIMENT_COPY, "source": str(Path(config_path).resolve()),
            "dynas_version": dynas_version(), "created": _utc_now(), "address": address,
            "scheduler": search.scheduler, "space_size": experiment.space.size()},
            {EXPERIMENT_COPY: _experiment_text(experiment)})
        searcher = _searcher(experiment, search, run_dir, budget=search.trials, records=[])
        _tune(experiment, search, searcher, run_dir, "search", verbose)
    report_counts(run_dir, search.trials)
    return run_dir


def resume_search(run_dir: str | Path, extra_trials: int = 0, *, address: str | None = None,
                  verbose: int = 1) -> Path:
    """Continue a killed (or extend a finished) search until it holds ``trials`` (+
    ``extra_trials``) distinct finished architectures."""
    from .cluster import local_cpus, ray_session

    run_dir = require_run_dir(run_dir).resolve()
    run = read_run(run_dir)
    if run.get("runner") != "ray":
        raise DynasError(f"{run_dir}: made by the {run.get('runner', '?')} runner; "
                         "resume it with that runner")
    missing = [key for key in ("trials", "strategy", "concurrent", "seed") if key not in run]
    if missing:
        raise DynasError(f"{run_dir / RUN_FILE}: missing {', '.join(missing)}")
    if extra_trials < 0:
        raise DynasError(f"--extra-trials must be >= 0, got {extra_trials}")
    experiment = load_experiment(run_dir / run.get("experiment", EXPERIMENT_COPY))
    target = int(run["trials"]) + int(extra_trials)
    search = _settings(experiment, run["strategy"], target, run["concurrent"], run["seed"])
    records = list(iter_records(run_dir))
    missing = target - trained_count(records)
    if missing <= 0:
        _extend(run_dir, run, extra_trials, target)
        print(f"{run_dir}: already holds {trained_count(records)} of {target} trials; nothing to do")
        return run_dir
    with ray_session(address, local_cpus(search.concurrent, search.cpus_per_trial), verbose=verbose):
        _extend(run_dir, run, extra_trials, target)   # once Ray is reachable: a refused resume changes nothing
        searcher = _searcher(experiment, search, run_dir, budget=missing, records=records)
        resumes = len(list((run_dir / TUNE_DIR).glob("resume-*"))) if (run_dir / TUNE_DIR).is_dir() else 0
        _tune(experiment, search, searcher, run_dir, f"resume-{resumes + 1}", verbose)
    report_counts(run_dir, target)
    return run_dir


def _extend(run_dir: Path, run: dict, extra_trials: int, target: int) -> None:
    if extra_trials:
        run.setdefault("extensions", []).append({"extra_trials": extra_trials, "at": _utc_now()})
        write_json_atomic(run_dir / RUN_FILE, {**run, "trials": target})


def trained_count(records: list[TrialRecord]) -> int:
    """Distinct architectures that finished (duplicates answered from cache excluded)."""
    return len({r.arch_id for r in records if r.cached_from is None})


def report_counts(run_dir: Path, target: int) -> dict[str, int]:
    records = list(iter_records(run_dir))
    counts = {s: sum(r.state == s and r.cached_from is None for r in records)
              for s in ("complete", "failed", "pruned")}
    counts["cached"] = sum(r.cached_from is not None for r in records)
    done = trained_count(records)
    note = "" if done >= target else f" (short of {target}: see the warnings above)"
    print(f"{done} trials: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pruned']} pruned, {counts['cached']} duplicates reused{note}")
    return counts


# --- pieces -------------------------------------------------------------------------
def _settings(experiment: Experiment, strategy: str | None, trials: int | None,
              concurrent: int | None, seed: int | None):
    from search_space.space import ArchSpace

    from .policies import POLICIES

    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("space", "a plain decision space has no trainer; search it with "
                                   "controllers.search.tune_search and a trainable of your own")
    search = experiment.search
    search = dataclasses.replace(
        search, strategy=strategy or search.strategy,
        trials=search.trials if trials is None else int(trials),
        concurrent=search.concurrent if concurrent is None else int(concurrent),
        seed=search.seed if seed is None else int(seed))
    if search.strategy not in POLICIES:
        raise ConfigError("search.strategy",
                          f"unknown strategy {search.strategy!r}; known: {', '.join(POLICIES)}")
    search.validate("search")
    if experiment.training.device == "cuda" and search.gpus_per_trial <= 0:
        raise ConfigError("search.gpus_per_trial", "training.device is cuda: give each trial a GPU (> 0)")
    _check_buildable(experiment, search)
    return search


def _check_buildable(experiment: Experiment, search: Any) -> None:
    """A task that cannot be built or a budget nothing meets fails here, naming the
    file, before Ray starts and before a run directory exists."""
    from search_space.constraints import require_feasible
    from trainers.tasks import task_shape

    with experiment.attribute_errors():
        shape = task_shape(experiment.task)
    require_feasible(experiment.space, shape, search.budget, seed=search.seed,
                     source=str(experiment.source) if experiment.source else None)


def _new_run_dir(storage: Path, name: str | None, prefix: str) -> Path:
    storage = storage.expanduser().resolve()
    if name:
        run_dir = storage / name
        if run_dir.exists() and any(run_dir.iterdir()):
            raise DynasError(f"{run_dir}: run directory exists and is not empty; "
                             f"use `dynas resume {run_dir}`")
        return run_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    run_dir, n = storage / f"{prefix}-{stamp}", 1
    while run_dir.exists():
        n += 1
        run_dir = storage / f"{prefix}-{stamp}-{n}"
    return run_dir


def _experiment_text(experiment: Experiment) -> str:
    """The experiment file as given (comments kept), or its mapping when there is none."""
    import yaml

    if experiment.source and Path(experiment.source).is_file():
        return Path(experiment.source).read_text(encoding="utf-8")
    return yaml.safe_dump(experiment.raw, sort_keys=False)


def _searcher(experiment: Experiment, search: Any, run_dir: Path, *, budget: int,
              records: list[TrialRecord]):
    """The policy (restored from policy_state.json when there is one) behind the searcher."""
    from .dedup import DedupCache
    from .policies import make_policy
    from .tune_searcher import PolicySearcher

    policy = make_policy(search.strategy, experiment.space, search.objectives, search.seed, search)
    state = run_dir / POLICY_STATE_FILE
    if records and state.is_file():
        try:
            policy.load_state_dict(json.loads(state.read_text()))
        except (ValueError, KeyError, TypeError) as err:   # JSONDecodeError is a ValueError
            raise DynasError(f"{state}: cannot restore the {search.strategy} policy "
                             f"({type(err).__name__}: {err})") from None
    metric, mode = (search.objectives[0].metric, search.objectives[0].direction) \
        if search.scheduler == "asha" else (None, None)
    return PolicySearcher(policy, run_dir, budget=budget, cache=DedupCache.from_records(records),
                          known={r.proposal_id: r for r in records}, feasible=_feasibility(experiment),
                          seed=search.seed, metric=metric, mode=mode)


def _feasibility(experiment: Experiment) -> Callable | None:
    from search_space.constraints import is_feasible
    from search_space.space import ArchSpace

    if not isinstance(experiment.space, ArchSpace):
        return None
    from trainers.tasks import task_shape

    shape, budget = task_shape(experiment.task), experiment.search.budget
    return lambda arch: is_feasible(arch, shape, budget)


def _tune(experiment: Experiment, search: Any, searcher: Any, run_dir: Path, name: str, verbose: int) -> None:
    """The real trainable (``trainers.fit``) on the cluster's CPUs/GPUs."""
    from .cluster import cluster_gpus
    from .trainable import TrialSpec, run_trial, task_for

    gpus = search.gpus_per_trial
    if gpus > 0 and cluster_gpus() < gpus:
        print(f"dynas: no GPU in the Ray cluster for gpus_per_trial={gpus}; trials run on CPU")
        gpus = 0.0
    max_t = task_for(experiment.task, experiment.training.seed).num_experiences \
        if search.scheduler == "asha" else 0
    spec = TrialSpec(experiment.task, experiment.training, threads=max(1, int(search.cpus_per_trial)))
    tune_search(searcher, run_trial, run_dir=run_dir, name=name, concurrent=search.concurrent,
                resources={"cpu": search.cpus_per_trial, "gpu": gpus}, scheduler=search.scheduler,
                max_t=max_t, max_failures=search.max_failures, verbose=verbose, spec=spec)


def tune_search(searcher: Any, trainable: Callable, *, run_dir: Path, name: str, concurrent: int,
                resources: dict[str, float] | None = None, scheduler: str = "fifo", max_t: int = 0,
                max_failures: int = 0, verbose: int = 1, **params: Any) -> Any:
    """Run ``searcher`` to its budget with ``trainable`` (a Tune function; ``params`` are
    bound with ``tune.with_parameters``) under Ray's ConcurrencyLimiter. Returns Tune's
    ResultGrid; the records are the searcher's to write."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from .tune_searcher import DONE_KEY, TrialErrors

    fn = tune.with_parameters(trainable, **params) if params else trainable
    fn = tune.with_resources(fn, resources or {"cpu": 1})
    sched = FIFOScheduler()
    if scheduler == "asha":
        max_t = max(1, max_t)
        sched = ASHAScheduler(time_attr=DONE_KEY, max_t=max_t, grace_period=min(ASHA_GRACE, max_t),
                              reduction_factor=ASHA_REDUCTION)
    tuner = tune.Tuner(
        fn,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent), scheduler=sched,
            metric=searcher.metric, mode=searcher.mode, num_samples=-1, reuse_actors=True,
            trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(
            name=name, storage_path=str((Path(run_dir) / TUNE_DIR).resolve()), verbose=verbose,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # Tune forces an experiment snapshot whenever a trial has saved num_to_keep
            # checkpoints since the last one: 1 would snapshot on every experience.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            callbacks=[TrialErrors(searcher)]))
    grid = tuner.fit()
    searcher.flush_errors()
    # A finished trial's mid-run fit state serves no one (resume re-asks unfinished ones).
    for ckpt in (Path(run_dir) / TUNE_DIR / name).glob("trial_*/checkpoint_*"):
        shutil.rmtree(ckpt, ignore_errors=True)
    return grid


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def dynas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynas")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
