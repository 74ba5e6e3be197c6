"""``evaluate_inherited``: a candidate scored with its slices of a trained supernet.

Candidate i's model after experience k is a real ``build_model`` loaded with its slices
of snapshot k of the (sub-)supernet that holds it (``sharing.inherit``), so the inherited R_val / R_test are full accuracy
matrices and every continual metric means what it means for a stand-alone trial; cost,
effective cost, bits and plugin metrics are measured the same way (``fitting.trial_values``).
``finetune_steps`` > 0 instead trains the inherited final weights briefly through the
stream (``fit`` with ``init``).
"""
from __future__ import annotations

import dataclasses
import os
import time

import torch

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import TrainingSettings

from ..results import TrialMetrics
from .sharing import inherit
from .training import TrainedSupernet


def evaluate_inherited(supernet: TrainedSupernet, arch: ArchConfig, task, cfg: TrainingSettings,
                       *, finetune_steps: int = 0, weights_dir: str | os.PathLike | None = None) -> TrialMetrics:
    """Score ``arch`` with its slices of ``supernet`` (module docstring): the same
    metrics a stand-alone ``fit`` reports, from R_val / R_test over the snapshots."""
    from ..bundle import save_bundle
    from ..dynamics import measure
    from ..evaluation import evaluate_row, expert_fractions
    from ..fitting import fit, trial_values
    from ..loop import resolve_accelerator

    arch.validate()
    snapshots = supernet.snapshots_for(arch)     # few-shot: the sub-supernet holding arch
    if len(snapshots) != task.num_experiences:
        raise DynasError(f"the supernet holds {len(snapshots)} snapshots for a task of "
                         f"{task.num_experiences} experiences")
    if finetune_steps > 0:
        final = inherit(snapshots[-1], arch, task.shape).state_dict()
        tuned = dataclasses.replace(cfg, steps_per_experience=finetune_steps)
        return fit(arch, task, tuned, init=lambda model: model.load_state_dict(final),
                   weights_dir=weights_dir)
    started = time.perf_counter()
    device = torch.device(resolve_accelerator(cfg.device))
    common = dict(scenario=task.scenario, num_classes=task.shape.num_classes,
                  batch_size=cfg.eval_batch_size, device=device)
    rows, test_rows, bits_rows, history, counts = [], [], [], [], {}
    model = None
    for k, snapshot in enumerate(snapshots):
        model = inherit(snapshot, arch, task.shape).to(device).eval()
        row, counts = evaluate_row(model, task.experiences, split="val", **common)
        test_row, _ = evaluate_row(model, task.experiences, split="test", **common)
        bits, entry = measure(model, [e.val for e in task.experiences], batch_size=cfg.eval_batch_size,
                              device=device)
        rows.append(row)
        test_rows.append(test_row)
        bits_rows.append(bits)
        history.append({"experience": k, **entry})
    values = trial_values(arch, task, model, rows, test_rows, bits_rows, history, device.type)
    if weights_dir is not None:
        save_bundle(weights_dir, model.cpu(), task, values)
    return TrialMetrics(values=values, acc_matrix=rows, test_acc_matrix=test_rows,
                        expert_load=expert_fractions(counts), bits_matrix=bits_rows, dynamics=history,
                        curriculum_log=[], steps=0, wall_time_s=time.perf_counter() - started,
                        chance_accuracy=task.chance_accuracy)
