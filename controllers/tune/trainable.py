"""The Ray Tune trial functions: one architecture through ``trainers.fit``
(``run_trial``), or one assignment of a plain decision space through its evaluator
(``run_evaluation``). Both first import the run's plugins (``search_space.plugins``;
the files came with Ray's runtime environment), so what they register exists here.

Runs in a Tune worker. The task is built once per worker process and kept (keyed by
its settings and seed), so with ``reuse_actors`` a worker pays for data loading once.
After every experience but the last it reports the continual metrics so far, with
``fit``'s resumable state as a Tune checkpoint; a retried trial (``FailureConfig``)
gets that checkpoint back from ``tune.get_checkpoint()`` and continues where it was.
The last experience is reported once ``fit`` returns, with the full ``TrialMetrics``:
a scheduler that stops trials at ``max_t`` would otherwise cut that report off. With
``keep_weights`` that report's checkpoint is the trained model as a bundle
(``trainers.bundle``): Tune persists it into the driver's storage, where
``controllers.kept_weights`` keeps or removes it.

Exceptions (``NonFiniteLoss``, out of memory, bugs) propagate: Tune marks the trial
errored and the driver records it as failed, worded by ``controllers.outcomes``.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynas.search_space.plugins import import_plugin_modules
from dynas.search_space.settings import EvaluatorSettings, TaskSettings, TrainingSettings
from dynas.trainers.results import TrialMetrics

from ..results import tune_result
from ..run.tasks import task_for


@dataclass(frozen=True)
class TrialSpec:
    """What every trial of a run shares (the config dict carries the architecture)."""

    task: TaskSettings
    training: TrainingSettings
    threads: int = 1                        # torch threads per trial (= cpus_per_trial)
    plugins: tuple[str, ...] = ()           # module names to import first (Plugin.modules)
    keep_weights: bool = True               # report the trained model as the last checkpoint
    curves_dir: str = ""                    # RUN_DIR/curves: each trial's TensorBoard curves
    supernet: str = ""                      # the run's trained supernet file: candidates inherit
    finetune_steps: int = 0                 # ... and are fine-tuned this many steps per experience


@dataclass(frozen=True)
class SupernetSpec:
    """What the one supernet-training trial of ``search.evaluation: supernet`` needs."""

    space: Any                              # the experiment's ArchSpace
    task: TaskSettings
    training: TrainingSettings
    settings: Any                           # SupernetSettings
    out: str                                # where the trained supernet file goes
    budget: Any = None                      # search.budget: paths drawn must meet it
    threads: int = 1
    plugins: tuple[str, ...] = ()
    curves_dir: str = ""


@dataclass(frozen=True)
class EvalSpec:
    """What every trial of a plain-space run shares: the evaluator and the plugins."""

    evaluator: EvaluatorSettings
    plugins: tuple[str, ...] = ()


def run_evaluation(config: dict, spec: EvalSpec) -> None:
    """Tune function trainable: one call of the evaluator, reported as one experience."""
    from ray import tune

    from dynas.search_space.evaluators import evaluate

    import_plugin_modules(spec.plugins)
    start = time.perf_counter()
    metrics = evaluate(spec.evaluator.name, config["arch"], spec.evaluator.options)
    measured = TrialMetrics(values=dict(metrics), wall_time_s=time.perf_counter() - start)
    tune.report(tune_result(measured, 1, 1, node_id=_node_id()))


def run_trial(config: dict, spec: TrialSpec) -> None:
    """Tune function trainable; use as ``tune.with_parameters(run_trial, spec=spec)``."""
    import torch
    from ray import tune

    import_plugin_modules(spec.plugins)

    from dynas.search_space.arch import ArchConfig
    from dynas.search_space.cost import estimate_cost
    from dynas.trainers.fitting import fit

    torch.set_num_threads(max(1, spec.threads))
    arch = ArchConfig.from_dict(config["arch"])
    task = task_for(spec.task, spec.training.seed)
    cost = estimate_cost(arch, task.shape).as_metrics()
    state_dir, resume = _state_dir()
    repeat = config.get("train_seed") is not None          # a seed repeat keeps no weights
    model_dir = state_dir.with_name(state_dir.name + "-model") if spec.keep_weights and not repeat else None
    # a supernet run scores its candidates with inherited weights; a seed repeat (what
    # search.confirm trains) is always trained stand-alone, from scratch
    evaluation = "standalone" if repeat or not spec.supernet else \
        "finetuned" if spec.finetune_steps else "inherited"
    try:
        if evaluation == "standalone":
            reporter = _Reporter(cost, task.num_experiences)
            metrics = fit(arch, task, spec.training, [reporter], checkpoint_dir=state_dir, resume=resume,
                          weights_dir=model_dir, seed=config.get("train_seed"),   # a seed repeat's own seed
                          log_dir=_curves_dir(spec, config))
        else:
            from dynas.trainers.supernet import evaluate_inherited

            metrics = evaluate_inherited(supernet_for(spec.supernet), arch, task, spec.training,
                                         finetune_steps=spec.finetune_steps, weights_dir=model_dir)
        n = task.num_experiences
        tune.report(tune_result(metrics, n, n, evaluation=evaluation, node_id=_node_id()),
                    checkpoint=tune.Checkpoint.from_directory(str(model_dir)) if model_dir else None)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
        if model_dir is not None:
            shutil.rmtree(model_dir, ignore_errors=True)


def run_supernet(config: dict, spec: SupernetSpec) -> None:
    """Tune function trainable: the one trial that trains a run's supernet
    (``trainers.supernet.train_supernet``), with its state as a Tune checkpoint after
    every experience so a retried trial continues; the trained supernet is written to
    ``spec.out`` (in the run directory) before the last report."""
    import torch
    from ray import tune

    import_plugin_modules(spec.plugins)

    from dynas.search_space.constraints import is_feasible
    from dynas.search_space.sharing import split
    from dynas.trainers.supernet import train_supernet

    torch.set_num_threads(max(1, spec.threads))
    task = task_for(spec.task, spec.training.seed)
    state_dir, _ = _state_dir()
    total = task.num_experiences * len(split(spec.space, spec.settings.shots))   # over a few-shot's parts

    def report(k: int, ckpt: Path | None) -> None:
        if k + 1 < total:
            tune.report(tune_result(TrialMetrics(), k + 1, total, node_id=_node_id()),
                        checkpoint=tune.Checkpoint.from_directory(str(ckpt)) if ckpt else None)

    try:
        net = train_supernet(spec.space, task, spec.training, spec.settings,
                             feasible=lambda a: is_feasible(a, task.shape, spec.budget),
                             checkpoint_dir=state_dir, on_experience=report,
                             log_dir=spec.curves_dir or None)
        net.save(spec.out)
        tune.report(tune_result(TrialMetrics(wall_time_s=net.wall_time_s), total, total, node_id=_node_id()))
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


_SUPERNETS: dict[tuple, Any] = {}          # per worker process: file -> TrainedSupernet


def supernet_for(path: str) -> Any:
    """The trained supernet in ``path``, loaded once per process (and again if rewritten)."""
    from dynas.trainers.supernet import TrainedSupernet

    stat = Path(path).stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _SUPERNETS:
        _SUPERNETS.clear()
        _SUPERNETS[key] = TrainedSupernet.load(path)
    return _SUPERNETS[key]


class _Reporter:
    """``FitCallback`` -> ``tune.report`` after each experience, with a checkpoint."""

    def __init__(self, cost: dict[str, float], num_experiences: int):
        self.cost, self.num_experiences = cost, num_experiences

    def on_experience_end(self, progress: Any) -> None:
        from ray import tune

        done = progress.experience + 1
        if done >= self.num_experiences:     # reported after fit returns, in full
            return
        so_far = TrialMetrics(values={**progress.values, **self.cost}, acc_matrix=progress.acc_matrix,
                              test_acc_matrix=progress.test_acc_matrix)
        result = tune_result(so_far, done, self.num_experiences, node_id=_node_id())
        checkpoint = None
        if progress.checkpoint_dir is not None:
            checkpoint = tune.Checkpoint.from_directory(str(progress.checkpoint_dir))
        tune.report(result, checkpoint=checkpoint)   # persists (copies) the checkpoint now


def _curves_dir(spec: TrialSpec, config: dict) -> Path | None:
    """Where this trial's curves go: kept in the run directory, by proposal id and
    architecture (``tracking.curve_name``; on a
    cluster the run directory is on a filesystem every node shares, as for checkpoints)."""
    from ..tracking import curve_name

    if not spec.curves_dir:
        return None                                   # a seed repeat: its own curves
    name = curve_name(config["proposal_id"], config.get("arch_id"), config.get("train_seed"))
    if config.get("promoted"):                        # a higher rung: its own curves too
        name += f"-steps{spec.training.steps_per_experience}"
    return Path(spec.curves_dir) / name


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _state_dir() -> tuple[Path, bool]:
    """A private directory for fit's resumable state, seeded from Tune's last
    checkpoint when this is a retry; ``(dir, resume)``."""
    from ray import tune

    base = None
    try:
        base = tune.get_context().get_trial_dir()
    except Exception:  # outside a Tune session (direct call in a test)
        pass
    parent = base if base and Path(base).is_dir() else None
    state_dir = Path(tempfile.mkdtemp(prefix="fit-state-", dir=parent))
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return state_dir, False
    with checkpoint.as_directory() as src:
        shutil.copytree(src, state_dir, dirs_exist_ok=True)
    return state_dir, True
