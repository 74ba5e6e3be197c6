"""The supernet phase of ``search.evaluation: supernet``: trained once, before any candidate.

``ensure_supernet`` makes sure ``RUN_DIR/supernet/supernet.pt`` holds a supernet
trained for this run's space, task and training section (``trainers.supernet``),
training it through the run's executor when it is missing
(``Executor.train_supernet``: one Ray Tune trial with per-experience checkpoints that
``max_failures`` retries continue, or in this process with its resumable state in
``RUN_DIR/supernet/state``).

``search.supernet.sampling`` (uniform, fair, sandwich) and ``shots`` (one, or a few-shot
split per ``d_model`` or first-layer attention kind) are the training's own
(``trainers.supernet.sampling``, ``search_space.sharing.split``); a few-shot supernet's
parts are trained in turn in the same trial and saved in the same file.

Every candidate the policy proposes is then a cheap trial through the same driver,
scored with inherited weights (``evaluate_inherited``, from the part that holds it) and records
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


def ensure_supernet(experiment: Any, search: Any, run_dir: Path, executor: Any, verbose: int = 1) -> Path | None:
    """The run's trained supernet file (None when the search is stand-alone)."""
    if search.evaluation != "supernet":
        return None
    from dynas.trainers.supernet import TrainedSupernet, fingerprint

    from .tasks import task_for

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
        settings = search.supernet
        paths = "one path" if settings.sampling != "sandwich" else \
            f"the largest, the smallest and {settings.sandwich_paths} random paths"
        parts = "" if settings.shots == "one" else f", one sub-supernet per {settings.shots}"
        print(f"supernet: training {settings.steps(experiment.training.steps_per_experience)} "
              f"steps per experience, {paths} ({settings.sampling}) per step{parts}", flush=True)
    executor.train_supernet(experiment, search, run_dir, path, verbose)
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
