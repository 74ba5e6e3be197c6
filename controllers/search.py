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
trial continues from them; they are deleted when the Tune run ends. A complete
trial's last checkpoint is its trained model (``controllers.kept_weights``).
What stays to watch (training curves, the search's objectives, failed trials'
tracebacks) and what is printed while it runs: ``controllers.tracking``.

Boundaries: one driver per run directory (``controllers.lock``); ``--name`` is one safe
path component inside the resolved ``--storage`` (``check_run_name``); SIGINT/SIGTERM
stop the search cleanly (``controllers.interrupt``); a full disk, an I/O error or a
lost node stops it with ``InfrastructureError`` and is never recorded as a trial's
failure (``controllers.outcomes.infrastructure_fault``).
"""
from __future__ import annotations

import contextlib
import re
import shutil
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dynas.search_space.errors import ConfigError, DynasError, InfrastructureError
from dynas.search_space.experiment import Experiment, load_experiment

from . import outcomes
from .interrupt import Interrupted, InterruptedNow, StopRequest, stop_on_signals
from .lock import run_lock
from .confirm import confirm_in_session
from .supernet import ensure_supernet, supernet_path
from .prepare import (build_driver, dynas_version, experiment_text, prepare_search, run_info,
                      train_search_baselines, utc_now)
from .records import (EXPERIMENT_COPY, RUN_FILE, TrialRecord, create_run_dir, iter_records,
                      read_run, require_run_dir, trained_count, write_json_atomic)
from .tracking import (CURVES_DIR, NORMAL, ObjectiveCurves, Progress, check_loggers, trial_tracebacks_to_files,
                       tune_callbacks, tune_output, tune_verbosity)

__all__ = ["run_search", "resume_search", "tune_search", "trained_count", "report_counts",
           "dynas_version"]

TUNE_DIR = "ray"
ASHA_GRACE = 2              # never prune before two experiences
ASHA_REDUCTION = 2          # keep the better half at each rung
KEEP_CHECKPOINTS = 4        # per trial, while it runs (fit state after each experience)
MAX_RUN_NAME = 100
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (MAX_RUN_NAME - 1))
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def run_search(config_path: str | Path, strategy: str | None = None, trials: int | None = None,
               concurrent: int | None = None, address: str | None = None, name: str | None = None,
               seed: int | None = None, storage: str | Path | None = None, *,
               verbose: int = NORMAL) -> Path:
    """Search ``config_path``'s space; returns the run directory (``storage/name``).
    ``verbose``: a ``controllers.tracking`` level (0 quiet ... 3 debug)."""
    from .cluster import local_cpus, ray_session

    experiment = load_experiment(config_path)
    search = prepare_search(experiment, strategy, trials, concurrent, seed)
    with experiment.attribute_errors():
        check_loggers(search.loggers)
    stem = Path(config_path).stem
    run_dir = new_run_dir(Path(storage or search.storage), name, f"{stem}-{search.strategy}")
    with _stopping(run_dir) as stop, \
            ray_session(address, local_cpus(search.concurrent, search.cpus_per_trial),
                        verbose=tune_verbosity(verbose), runtime_env=plugin_runtime_env()):
        stop.install()                      # ray.init set a SIGTERM handler of its own
        create_run_dir(run_dir, run_info(experiment, search, run_dir.name, "ray", address=address),
                       {EXPERIMENT_COPY: experiment_text(experiment)})
        with run_lock(run_dir):
            ensure_supernet(experiment, search, run_dir, "ray", verbose)
            stop.check()
            searcher = _searcher(experiment, search, run_dir, budget=search.trials, records=[],
                                 target=search.trials, verbose=verbose, stop=stop)
            tune_experiment(experiment, search, searcher, run_dir, "search", verbose, stop)
            stop.check()
            confirm_in_session(experiment, search, run_dir, "ray", verbose)
            train_search_baselines(experiment, search, run_dir)
    report_counts(run_dir, search.trials)
    return run_dir


def resume_search(run_dir: str | Path, extra_trials: int = 0, *, address: str | None = None,
                  verbose: int = NORMAL) -> Path:
    """Continue a killed (or extend a finished) search until it holds ``trials`` (+
    ``extra_trials``) distinct finished architectures."""
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):                 # before anything is read: one driver per run
        return _resume(run_dir, extra_trials, address, verbose)


def _resume(run_dir: Path, extra_trials: int, address: str | None, verbose: int) -> Path:
    from .cluster import local_cpus, ray_session

    run = read_run(run_dir)
    if run.get("runner") != "ray":
        raise DynasError(f"{run_dir}: made by the {run.get('runner', '?')} runner; "
                         "resume it with that runner")
    missing = [key for key in ("trials", "strategy", "concurrent", "seed") if key not in run]
    if missing:
        raise DynasError(f"{run_dir / RUN_FILE}: missing {', '.join(missing)}")
    if extra_trials < 0:
        raise DynasError(f"--extra-trials must be >= 0, got {extra_trials}")
    experiment = load_experiment(run_dir / run.get("experiment", EXPERIMENT_COPY), plugins=run.get("plugins"))
    target = int(run["trials"]) + int(extra_trials)
    search = prepare_search(experiment, run["strategy"], target, run["concurrent"], run["seed"])
    with experiment.attribute_errors():
        check_loggers(search.loggers)
    records = list(iter_records(run_dir))
    missing = target - trained_count(records)
    if missing <= 0:
        _extend(run_dir, run, extra_trials, target)
        print(f"{run_dir}: already holds {trained_count(records)} of {target} trials")
        train_search_baselines(experiment, search, run_dir)    # a kill may have cut them short
        return run_dir
    with _stopping(run_dir) as stop, \
            ray_session(address, local_cpus(search.concurrent, search.cpus_per_trial),
                        verbose=tune_verbosity(verbose), runtime_env=plugin_runtime_env()):
        stop.install()
        _extend(run_dir, run, extra_trials, target)   # once Ray is reachable: a refused resume changes nothing
        ensure_supernet(experiment, search, run_dir, "ray", verbose)   # a kill may have cut it short
        searcher = _searcher(experiment, search, run_dir, budget=missing, records=records,
                             target=target, verbose=verbose, stop=stop)
        resumes = len(list((run_dir / TUNE_DIR).glob("resume-*"))) if (run_dir / TUNE_DIR).is_dir() else 0
        tune_experiment(experiment, search, searcher, run_dir, f"resume-{resumes + 1}", verbose, stop)
        stop.check()
        confirm_in_session(experiment, search, run_dir, "ray", verbose)
    train_search_baselines(experiment, search, run_dir)
    report_counts(run_dir, target)
    return run_dir


def _extend(run_dir: Path, run: dict, extra_trials: int, target: int) -> None:
    if extra_trials:
        run.setdefault("extensions", []).append({"extra_trials": extra_trials, "at": utc_now()})
        write_json_atomic(run_dir / RUN_FILE, {**run, "trials": target})


def report_counts(run_dir: Path, target: int) -> dict[str, int]:
    records = list(iter_records(run_dir))
    counts = {s: sum(r.state == s and r.cached_from is None and r.repeat_of is None
                     and not r.baseline for r in records)
              for s in ("complete", "failed", "pruned")}
    counts["cached"] = sum(r.cached_from is not None for r in records)
    counts["repeats"] = sum(r.repeat_of is not None for r in records)
    done = trained_count(records)
    note = "" if done >= target else f" (short of {target}: see the warnings above)"
    repeats = f", {counts['repeats']} seed repeats" if counts["repeats"] else ""
    print(f"{done} trials: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pruned']} pruned, {counts['cached']} duplicates reused{repeats}{note}")
    baselines = [r for r in records if r.baseline]
    if baselines:
        print("baselines: " + ", ".join(f"{r.baseline} ({r.state})" for r in baselines))
    return counts


# --- pieces -------------------------------------------------------------------------
def check_run_name(name: str) -> str:
    """``--name`` is one path component of at most 100 safe characters (letters, digits,
    ``. _ -``, not starting with a dot or dash), so a run directory never lands outside
    ``--storage`` (``../x``, ``/etc/x``) nor fails on a name the filesystem refuses."""
    if not RUN_NAME.fullmatch(name):
        raise ConfigError("--name", f"{name[:60]!r} is not a run name: use 1-{MAX_RUN_NAME} letters, "
                          "digits, '.', '_' or '-', starting with a letter or digit (no '/')")
    return name


def new_run_dir(storage: Path, name: str | None, prefix: str) -> Path:
    """``storage/name`` (checked), or ``storage/prefix-UTCTIME``; ``storage`` resolved."""
    storage = storage.expanduser().resolve()
    if name is not None:
        run_dir = storage / check_run_name(name)
        if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
            raise DynasError(f"{run_dir}: exists and is not a run directory")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise DynasError(f"{run_dir}: run directory exists and is not empty; "
                             f"use `dynas resume {run_dir}`")
        return run_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    prefix = UNSAFE.sub("_", prefix).lstrip("._-")[: MAX_RUN_NAME - len(stamp) - 6] or "run"
    run_dir, n = storage / f"{prefix}-{stamp}", 1
    while run_dir.exists():
        n += 1
        run_dir = storage / f"{prefix}-{stamp}-{n}"
    return run_dir


@contextlib.contextmanager
def _stopping(run_dir: Path) -> Iterator[StopRequest]:
    """Signals stop the search (``controllers.interrupt``); the one line names the run.
    A storage fault (full disk, I/O error) stops it too, in one line, never charged to
    a trial (``controllers.outcomes.storage_fault``)."""
    with stop_on_signals() as stop:
        try:
            yield stop
        except (Interrupted, KeyboardInterrupt) as err:
            # Ray's C layer turns an exception raised in a signal handler during one of
            # its calls into a plain KeyboardInterrupt: name the signal and run again.
            if not isinstance(err, (Interrupted, InterruptedNow)):
                err = InterruptedNow(stop.signum or signal.SIGINT)
            err.run_dir = run_dir
            raise err from None
        except OSError as err:
            fault = outcomes.storage_fault(err)
            if fault is None:
                raise
            raise InfrastructureError(f"{run_dir}: {fault}; the search stopped and nothing was "
                                      f"charged to a trial; free space, then: dynas resume {run_dir}") from None


def _searcher(experiment: Experiment, search: Any, run_dir: Path, *, budget: int,
              records: list[TrialRecord], target: int, verbose: int, stop: StopRequest):
    """The Tune Searcher around this run's driver (ASHA needs the first objective);
    its listeners print progress and write the search's curves; a signal stops the
    driver at once (``controllers.interrupt``)."""
    from .tune_searcher import PolicySearcher

    metric, mode = (search.objectives[0].metric, search.objectives[0].direction) \
        if search.scheduler == "asha" else (None, None)
    listeners = [Progress(search.objectives, target, run_dir, records=records, level=verbose),
                 ObjectiveCurves(search.objectives, run_dir, records)]
    driver = build_driver(experiment, search, run_dir, budget=budget, records=records,
                          listeners=listeners)
    stop.on_stop.append(driver.stop)
    return PolicySearcher(driver, metric=metric, mode=mode)


def tune_experiment(experiment: Experiment, search: Any, searcher: Any, run_dir: Path, name: str,
                    verbose: int, stop: StopRequest | None = None) -> None:
    """The real trainable (``trainers.fit``, or a plain space's evaluator) on the
    cluster's CPUs/GPUs, importing this driver's plugins first."""
    from dynas.search_space.space import ArchSpace

    from .cluster import cluster_gpus
    from .trainable import EvalSpec, TrialSpec, run_evaluation, run_trial, task_for

    gpus = search.gpus_per_trial
    if gpus > 0 and cluster_gpus() < gpus:
        print(f"dynas: no GPU in the Ray cluster for gpus_per_trial={gpus}; trials run on CPU")
        gpus = 0.0
    plugins = plugin_modules()
    if isinstance(experiment.space, ArchSpace):
        max_t = task_for(experiment.task, experiment.training.seed).num_experiences \
            if search.scheduler == "asha" else 0
        trainable, spec = run_trial, TrialSpec(experiment.task, experiment.training,
                                               threads=max(1, int(search.cpus_per_trial)), plugins=plugins,
                                               keep_weights=search.keep_weights != "none",
                                               curves_dir=str((run_dir / CURVES_DIR).resolve()),
                                               supernet=str(supernet_path(run_dir))
                                               if search.evaluation == "supernet" else "",
                                               finetune_steps=search.supernet.finetune_steps)
    else:
        max_t, trainable, spec = 0, run_evaluation, EvalSpec(experiment.evaluator, plugins)
    try:
        tune_search(searcher, trainable, run_dir=run_dir, name=name, concurrent=search.concurrent,
                    resources={"cpu": search.cpus_per_trial, "gpu": gpus}, scheduler=search.scheduler,
                    max_t=max_t, max_failures=search.max_failures, verbose=verbose, stop=stop,
                    callbacks=tune_callbacks(search.loggers, run_dir, run_dir.name), spec=spec)
    finally:
        for listener in searcher.driver.listeners:
            getattr(listener, "close", lambda: None)()
    if searcher.driver.fault:
        raise InfrastructureError(f"{run_dir}: {searcher.driver.fault}; the search stopped and the "
                                  f"trial was not charged with it; fix that, then: dynas resume {run_dir}")


def plugin_modules() -> tuple[str, ...]:
    """The module names of every plugin this driver loaded (what a worker imports)."""
    from dynas.search_space.plugins import loaded_plugins

    return tuple(m for plugin in loaded_plugins() for m in plugin.modules)


def plugin_runtime_env() -> dict | None:
    """Ray's runtime environment that ships this driver's plugins to every node."""
    from dynas.search_space.plugins import loaded_plugins

    ship = [path for plugin in loaded_plugins() for path in plugin.ship]
    return {"py_modules": ship} if ship else None


def tune_search(searcher: Any, trainable: Callable, *, run_dir: Path, name: str, concurrent: int,
                resources: dict[str, float] | None = None, scheduler: str = "fifo", max_t: int = 0,
                max_failures: int = 0, verbose: int = NORMAL, stop: StopRequest | None = None,
                callbacks: Sequence[Any] = (), **params: Any) -> Any:
    """Run ``searcher`` to its budget with ``trainable`` (a Tune function; ``params`` are
    bound with ``tune.with_parameters``) under Ray's ConcurrencyLimiter. Returns Tune's
    ResultGrid; the records are the searcher's to write. ``verbose`` is a dynas level
    (``controllers.tracking``); ``callbacks`` are more Tune callbacks (default: Tune's
    CSV and JSON result files). With ``stop``, a signal ends the run at Tune's next
    step (``Interrupted``)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    from .results import DONE_KEY
    from .tune_searcher import StopOnSignal, TrialErrors

    searcher.trial_storage = Path(run_dir).resolve() / TUNE_DIR / name   # where kept weights land
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
            name=name, storage_path=str((Path(run_dir) / TUNE_DIR).resolve()),
            verbose=tune_verbosity(verbose),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            # Tune forces an experiment snapshot whenever a trial has saved num_to_keep
            # checkpoints since the last one: 1 would snapshot on every experience.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS),
            callbacks=[TrialErrors(searcher), *(callbacks or tune_callbacks((), run_dir, name))]
            + ([StopOnSignal(stop)] if stop else [])))
    with tune_output(verbose), trial_tracebacks_to_files(verbose):
        try:
            grid = tuner.fit()
        except Exception:
            if not searcher.driver.fault:
                raise
            grid = None      # Tune's own bookkeeping broke on the same fault (a truncated error file)
    searcher.flush_errors()
    # A finished trial's mid-run fit state serves no one (resume re-asks unfinished ones);
    # a trained model's bundle is the keeper's to keep or remove.
    from dynas.trainers.bundle import MODEL_FILE

    for ckpt in (Path(run_dir) / TUNE_DIR / name).glob("trial_*/checkpoint_*"):
        if not (ckpt / MODEL_FILE).is_file():
            shutil.rmtree(ckpt, ignore_errors=True)
    return grid


def _trial_dirname(trial: Any) -> str:
    from .tune_searcher import trial_dirname

    return trial_dirname(trial.trial_id)
