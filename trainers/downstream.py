"""Downstream training of an exported architecture (what ``dynas train`` runs).

An output directory holds: ``arch.json``; ``resume.pt`` (state after each
experience, for ``--resume``); ``last.ckpt`` (Lightning checkpoint of the final
system, readable with ``weights_only=True``); ``metrics.json`` (``TrialMetrics`` plus
arch, seeds and settings); ``acc_matrix.csv`` (R on the validation splits) and
``test_acc_matrix.csv`` (R on the held-out test splits: the numbers to quote for a
downstream model); the final model as a bundle (``weights.safetensors`` + ``model.json``
beside ``arch.json``, ``trainers.bundle``) and ``curves/`` (TensorBoard event files, ``trainers.curves``), so ``load_model(out)`` and ``dynas train
--init-from out`` read it. ``evaluate_checkpoint`` rebuilds the model from
``last.ckpt`` and recomputes the final row of R_val and R_test.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from dynas.search_space.arch import ArchConfig
from dynas.search_space.cost import estimate_cost
from dynas.search_space.errors import DynasError
from dynas.search_space.names import FINAL_AVG_ACCURACY, as_test
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TaskSettings, TrainingSettings, settings_dict

from .bundle import ARCH_FILE, MODEL_FILE, WEIGHTS_FILE
from .checkpoint import write_atomic
from .evaluation import evaluate_row, expert_fractions
from .fitting import LAST_CKPT, STATE_FILE, fit
from .loop import resolve_accelerator
from .results import FitCallback, TrialMetrics
from .tasks import build_task, task_shape
from .transfer import initialiser, plan_transfer

METRICS_FILE, MATRIX_FILE = "metrics.json", "acc_matrix.csv"
TEST_MATRIX_FILE = "test_acc_matrix.csv"
RESULT_FILES = (METRICS_FILE, MATRIX_FILE, LAST_CKPT, STATE_FILE, WEIGHTS_FILE, MODEL_FILE)
CURVES_DIR = "curves"


def default_out_dir(arch: ArchConfig) -> Path:
    return Path("runs") / f"train-{arch.arch_id}"


def train_arch(arch: ArchConfig, task_settings: TaskSettings, training: TrainingSettings, *,
               out_dir: str | os.PathLike, seed: int | None = None, resume: bool = False,
               force: bool = False, callbacks: Iterable[FitCallback] = (),
               init_from: str | os.PathLike | None = None) -> TrialMetrics:
    """Train ``arch`` on the task and write the results (a model bundle among them,
    ``trainers.bundle``) into ``out_dir``.

    The task's data split is drawn with ``training.seed``; ``seed`` (default the same)
    seeds the training. ``init_from``: a bundle of the same architecture to start from
    (``trainers.transfer`` says what transfers). An existing result is never
    overwritten unless ``force``; ``resume`` continues from the saved per-experience state.
    """
    out = Path(out_dir)
    existing = [name for name in RESULT_FILES if (out / name).exists()]
    if existing and not (resume or force):
        raise DynasError(f"{out} already holds results ({', '.join(existing)}); "
                         "pass --resume to continue that run or --force to overwrite it")
    if resume and (out / ARCH_FILE).is_file() and ArchConfig.load(out / ARCH_FILE) != arch:
        raise DynasError(f"{out}: cannot resume, it was trained with another architecture "
                         f"({ArchConfig.load(out / ARCH_FILE).arch_id} != {arch.arch_id})")
    # checked before anything in out_dir changes
    plan = plan_transfer(init_from, arch, task_shape(task_settings)) if init_from is not None else None
    if force and not resume:                   # a forced run starts from scratch
        (out / STATE_FILE).unlink(missing_ok=True)
        shutil.rmtree(out / CURVES_DIR, ignore_errors=True)
    seed = training.seed if seed is None else seed
    task = build_task(task_settings, seed=training.seed)
    out.mkdir(parents=True, exist_ok=True)
    arch.save(out / ARCH_FILE)
    metrics = fit(arch, task, training, callbacks, checkpoint_dir=out, resume=resume, seed=seed,
                  weights_dir=out, init=initialiser(plan) if plan is not None else None,
                  log_dir=out / CURVES_DIR)
    record = metrics.to_dict() | {
        "init_from": None if plan is None else {"path": str(plan.bundle.path.resolve()),
                                                "reinitialised": list(plan.reinitialised)},
        "arch": arch.to_dict(), "arch_id": arch.arch_id, "seed": seed, "task_seed": training.seed,
        "settings": {"task": settings_dict(task_settings),
                     "training": settings_dict(dataclasses.replace(training, seed=seed))},
    }
    _write_atomic(out / METRICS_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    _write_atomic(out / MATRIX_FILE, matrix_csv(metrics.acc_matrix))
    _write_atomic(out / TEST_MATRIX_FILE, matrix_csv(metrics.test_acc_matrix))
    return metrics


def matrix_csv(matrix: list[list[float]]) -> str:
    """R as CSV: one row per trained experience, one column per evaluated one."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    width = len(matrix[0]) if matrix else 0
    writer.writerow(["after"] + [f"exp{j}" for j in range(width)])
    for i, row in enumerate(matrix):
        writer.writerow([i] + [f"{a:.6f}" for a in row])
    return buf.getvalue()


def evaluate_checkpoint(out_dir: str | os.PathLike, device: str = "auto") -> TrialMetrics:
    """Reload ``last.ckpt`` of a ``dynas train`` directory and re-measure the final row.

    Returns a ``TrialMetrics`` whose ``acc_matrix`` (validation) and ``test_acc_matrix``
    are that one row, with the final average accuracy of each (``test.`` for the test
    splits), the cost metrics and the expert load of the validation pass.
    """
    from .system import ContinualSystem

    out = Path(out_dir)
    for name in (METRICS_FILE, LAST_CKPT):
        if not (out / name).is_file():
            raise DynasError(f"{out}: no {name}; is this a `dynas train` output directory?")
    meta = json.loads((out / METRICS_FILE).read_text())
    system = ContinualSystem.load_from_checkpoint(out / LAST_CKPT, map_location="cpu", weights_only=True)
    training: TrainingSettings = system.cfg
    task = build_task(from_mapping(TaskSettings, meta["settings"]["task"], "task"), seed=meta["task_seed"])
    import torch

    dev = torch.device(resolve_accelerator(device))
    model = system.model.to(dev)
    (row, counts), (test_row, _) = (
        evaluate_row(model, task.experiences, scenario=task.scenario, num_classes=task.shape.num_classes,
                     batch_size=training.eval_batch_size, device=dev, split=split)
        for split in ("val", "test"))
    values = {FINAL_AVG_ACCURACY: sum(row) / len(row), as_test(FINAL_AVG_ACCURACY): sum(test_row) / len(test_row)}
    values |= estimate_cost(system.arch, task.shape).as_metrics()
    return TrialMetrics(values=values, acc_matrix=[row], test_acc_matrix=[test_row],
                        expert_load=expert_fractions(counts),
                        steps=int(meta.get("steps", 0)))


def _write_atomic(path: Path, text: str) -> None:
    """A result file written whole or not at all (``checkpoint.write_atomic``)."""
    write_atomic(path, lambda fh: fh.write(text.encode()))
