"""The supernet phase of ``search.evaluation: supernet``: trained once, before any candidate.

``ensure_supernet`` makes sure ``RUN_DIR/supernet/supernet.pt`` holds a supernet
trained for this run's space, task and training section (``trainers.supernet``),
training it when it is missing:

- Ray runner: one Tune trial (``controllers.trainable.run_supernet``) on the run's
  cluster, with ``fit``-style per-experience checkpoints, so ``max_failures`` retries
  continue it; its Tune storage is ``RUN_DIR/ray/supernet``;
- local runner: in this process, its resumable state in ``RUN_DIR/supernet/state``.

Every candidate the policy proposes is then a cheap trial through the same driver:
``run_trial`` scores it with inherited weights (``evaluate_inherited``) and records
``evaluation: inherited`` (``finetuned`` with ``search.supernet.finetune_steps``).
Seed repeats (``search.confirm`` / ``dynas confirm``) train stand-alone, so a supernet
search ends with its top K re-trained from scratch, recorded beside the inherited
numbers (``evaluation: standalone``) and compared in the report. A resumed run reuses
the saved supernet when its fingerprint matches, and refuses one that does not.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dynas.search_space.errors import DynasError

SUPERNET_DIR = "supernet"


def supernet_path(run_dir: Path) -> Path:
    from dynas.trainers.supernet import SUPERNET_FILE

    return Path(run_dir).resolve() / SUPERNET_DIR / SUPERNET_FILE


def ensure_supernet(experiment: Any, search: Any, run_dir: Path, runner: str, verbose: int = 1) -> Path | None:
    """The run's trained supernet file (None when the search is stand-alone)."""
    if search.evaluation != "supernet":
        return None
    from dynas.trainers.supernet import TrainedSupernet, fingerprint

    from .trainable import task_for

    path = supernet_path(run_dir)
    task = task_for(experiment.task, experiment.training.seed)
    wanted = fingerprint(experiment.space, task, _training(experiment, search), search.supernet)
    if path.is_file():
        saved = TrainedSupernet.load(path)
        if saved.fingerprint != wanted:
            raise DynasError(f"{path}: trained for another space, task or training section; move it "
                             "away to train a new one, or search in a new run directory")
        return path
    started = time.perf_counter()
    if verbose:
        print(f"supernet: training {search.supernet.steps(experiment.training.steps_per_experience)} "
              f"steps per experience, one sampled path per step", flush=True)
    if runner == "ray":
        _train_on_ray(experiment, search, run_dir, path, verbose)
    else:
        _train_here(experiment, search, run_dir, path, task)
    if not path.is_file():
        raise DynasError(f"{run_dir}: the supernet's training ended without writing {path}")
    net = TrainedSupernet.load(path)
    if verbose:
        print(f"supernet: trained {net.steps} steps over {net.paths} sampled paths in "
              f"{time.perf_counter() - started:.0f}s", flush=True)
    return path


def _training(experiment: Any, search: Any) -> Any:
    """The training section the supernet is trained with (its steps and seed set there)."""
    import dataclasses

    return dataclasses.replace(experiment.training,
                               steps_per_experience=search.supernet.steps(experiment.training.steps_per_experience),
                               seed=search.supernet.seed)


def _train_here(experiment: Any, search: Any, run_dir: Path, path: Path, task: Any) -> None:
    from dynas.search_space.constraints import is_feasible
    from dynas.trainers.supernet import train_supernet

    net = train_supernet(experiment.space, task, experiment.training, search.supernet,
                         feasible=lambda a: is_feasible(a, task.shape, search.budget),
                         checkpoint_dir=path.parent / "state")
    net.save(path)


def _train_on_ray(experiment: Any, search: Any, run_dir: Path, path: Path, verbose: int) -> None:
    from ray import tune

    from .search import TUNE_DIR, plugin_modules
    from .tracking import CURVES_DIR, tune_callbacks, tune_output, tune_verbosity
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
