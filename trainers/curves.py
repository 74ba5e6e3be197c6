"""A trial's training curves: TensorBoard event files through Lightning's logger.

``fit`` runs one ``Trainer.fit`` per experience, and each Trainer counts its steps
from 0. ``CurveLogger`` is one ``TensorBoardLogger`` shared by all of them that adds
the steps already trained (``offset``), so a trial's curves run on one axis from its
first step to its last, and the experience boundaries sit where the evaluations are.

What lands in the event files, at step = steps done in the trial:
``train/<term>`` for every loss term, ``train/loss`` and ``train/lr`` every
``training.log_every`` steps and at each experience's last step (window means,
``ContinualSystem._log_terms``); ``curriculum/val_accuracy`` at each promotion check;
``<split>/acc_exp<j>`` and ``expert_load/...`` at the end of each experience;
``curriculum/stage`` and ``curriculum/competence`` at each stage switch.
``tensorboard --logdir DIR`` (or ``read_scalars``) reads them back.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only


class CurveLogger(TensorBoardLogger):
    """Event files straight in ``log_dir`` (no ``version_N`` folders); steps offset by
    ``offset``, which ``fit`` sets before each experience."""

    def __init__(self, log_dir: str | os.PathLike):
        super().__init__(save_dir=str(log_dir), name="", version="", default_hp_metric=False)
        self.offset = 0

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}   # always 0 here
        super().log_metrics(metrics, None if step is None else int(step) + self.offset)

    @rank_zero_only
    def save(self) -> None:
        self.experiment.flush()            # no hparams.yaml (see log_hyperparams)

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None) -> None:
        # the system's hyper-parameters (arch, settings) are the trial's record already;
        # Lightning would rewrite hparams.yaml at every experience
        return None


def read_scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag under ``log_dir`` as ``[(step, value), ...]``, read with
    TensorBoard's own ``EventAccumulator`` (what ``tensorboard --logdir`` shows)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    curves: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(Path(log_dir).glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            curves.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {tag: sorted(points) for tag, points in curves.items()}
