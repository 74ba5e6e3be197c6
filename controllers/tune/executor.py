"""The Ray Tune executor: a run's trials and its supernet as Ray Tune trials.

``RayTune`` implements ``controllers.run.executor.Executor``. Its session is a private
local Ray instance, or the cluster at ``address`` (``controllers.tune.cluster``); the
trials are the Tune function trainables of ``controllers.tune.trainable``; the one
Ray-aware search class is ``controllers.tune.searcher.PolicySearcher`` around the run's
``SearchDriver``, with Ray's own ``ConcurrencyLimiter``, ASHA and ``FailureConfig``.

Each ``drive`` is one Tune run stored in ``RUN_DIR/ray/<phase>`` (``search``, then
``resume-N`` and ``confirm-N``): resuming does not use Tune's experiment restore; the
session rebuilds the driver from the run directory and this starts a fresh Tune run
for what is missing. Trial checkpoints (``fit``'s state after each experience) live
only while a Tune run goes on: a retried trial continues from them; they are deleted
when it ends. A complete trial's last checkpoint is its trained model
(``controllers.kept_weights``).
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from dynas.search_space.errors import DynasError

from ..driver import SearchDriver
from ..interrupt import StopRequest
from ..results import DONE_KEY
from ..tracking import (CURVES_DIR, NORMAL, trial_tracebacks_to_files, tune_callbacks, tune_output,
                        tune_verbosity)
from ..run.tasks import task_for
from .cluster import cluster_gpus, local_cpus, ray_session

TUNE_DIR = "ray"
ASHA_GRACE = 2              # never prune before two experiences
ASHA_REDUCTION = 2          # keep the better half at each rung
KEEP_CHECKPOINTS = 4        # per trial, while it runs (fit state after each experience)


class RayTune:
    """``Executor`` on Ray Tune: a private local instance, or the cluster at ``address``."""

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    @contextlib.contextmanager
    def session(self, search: Any, verbose: int) -> Iterator[None]:
        with ray_session(self.address, local_cpus(search.concurrent, search.cpus_per_trial),
                         verbose=tune_verbosity(verbose), runtime_env=plugin_runtime_env()):
            yield

    def drive(self, driver: SearchDriver, experiment: Any, search: Any, run_dir: Path, phase: str, *,
              verbose: int, stop: StopRequest | None = None) -> None:
        from .searcher import PolicySearcher

        metric, mode = (search.objectives[0].metric, search.objectives[0].direction) \
            if search.scheduler == "asha" else (None, None)
        tune_experiment(experiment, search, PolicySearcher(driver, metric=metric, mode=mode), run_dir,
                        tune_run_name(run_dir, phase), verbose, stop)

    def train_supernet(self, experiment: Any, search: Any, run_dir: Path, out: Path, verbose: int) -> None:
        _train_on_ray(experiment, search, run_dir, out, verbose)


def tune_run_name(run_dir: Path, phase: str) -> str:
    """``search`` for a run's first search; ``PHASE-N`` (the next N) for the others."""
    if phase == "search":
        return phase
    root = Path(run_dir) / TUNE_DIR
    done = len(list(root.glob(f"{phase}-*"))) if root.is_dir() else 0
    return f"{phase}-{done + 1}"


def tune_experiment(experiment: Any, search: Any, searcher: Any, run_dir: Path, name: str,
                    verbose: int, stop: StopRequest | None = None) -> None:
    """The real trainable (``trainers.fit``, or a plain space's evaluator) on the
    cluster's CPUs/GPUs, importing this driver's plugins first."""
    from dynas.search_space.space import ArchSpace

    from ..run.supernet import supernet_path
    from .trainable import EvalSpec, TrialSpec, run_evaluation, run_trial

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
    tune_search(searcher, trainable, run_dir=run_dir, name=name, concurrent=search.concurrent,
                resources={"cpu": search.cpus_per_trial, "gpu": gpus}, scheduler=search.scheduler,
                max_t=max_t, max_failures=search.max_failures, verbose=verbose, stop=stop,
                callbacks=tune_callbacks(search.loggers, run_dir, run_dir.name), spec=spec)


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

    from .searcher import StopOnSignal, TrialErrors

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
    from .searcher import trial_dirname

    return trial_dirname(trial.trial_id)


def _train_on_ray(experiment: Any, search: Any, run_dir: Path, path: Path, verbose: int) -> None:
    from ray import tune

    from .trainable import SupernetSpec, run_supernet

    spec = SupernetSpec(experiment.space, experiment.task, experiment.training, search.supernet,
                        out=str(path), budget=search.budget, threads=max(1, int(search.cpus_per_trial)),
                        plugins=plugin_modules(),
                        curves_dir=str((Path(run_dir) / CURVES_DIR / "supernet").resolve()))
    fn = tune.with_resources(tune.with_parameters(run_supernet, spec=spec),
                             {"cpu": search.cpus_per_trial, "gpu": search.gpus_per_trial})
    tuner = tune.Tuner(fn, tune_config=tune.TuneConfig(num_samples=1),
                       run_config=tune.RunConfig(
                           name="supernet", storage_path=str((Path(run_dir) / TUNE_DIR).resolve()),
                           verbose=tune_verbosity(verbose),
                           failure_config=tune.FailureConfig(max_failures=search.max_failures),
                           checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                           callbacks=tune_callbacks((), run_dir, "supernet")))
    with tune_output(verbose):
        grid = tuner.fit()
    errors = [r.error for r in grid if r.error is not None]
    if errors:
        raise DynasError(f"{run_dir}: the supernet's training failed: "
                         f"{type(errors[0]).__name__}: {str(errors[0]).strip().splitlines()[-1][:300]}")
