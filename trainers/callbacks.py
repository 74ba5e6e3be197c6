"""Callbacks: evaluation and logging only; nothing here changes what is learned.

``EvaluationMatrix`` fills an accuracy matrix after each experience's ``Trainer.fit``:
``fit`` keeps two, R_val on the validation splits and R_test on the test splits;
``ExpertLoadLogger`` and ``CurriculumLogger`` keep (and send to the trainer's logger,
when there is one) the expert load of that evaluation and the curriculum's stage
switches; ``ProgressBridge`` turns a finished experience into an ``ExperienceProgress``
for the controllers' ``FitCallback``s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import lightning as L
from torch import Tensor

from .continual import with_test
from .evaluation import evaluate_row, expert_fractions
from .results import ExperienceProgress, FitCallback


class EvaluationMatrix(L.Callback):
    """Row i of R: accuracy on every experience's ``split`` after training on experience i.

    ``rows`` may be pre-filled (a resumed run); ``expert_counts`` are the tokens per
    expert of the latest evaluation.
    """

    def __init__(self, experiences: Sequence, *, scenario: str, num_classes: int, batch_size: int,
                 split: str = "val", precision: str = "fp32"):
        self.experiences, self.scenario, self.split = experiences, scenario, split
        self.precision = precision
        self.num_classes, self.batch_size = num_classes, batch_size
        self.rows: list[list[float]] = []
        self.expert_counts: dict[str, Tensor] = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row, self.expert_counts = evaluate_row(
            pl_module.model, self.experiences, scenario=self.scenario,
            num_classes=self.num_classes, batch_size=self.batch_size, device=pl_module.device,
            split=self.split, precision=self.precision)
        self.rows.append(row)
        if trainer.logger is not None:
            trainer.logger.log_metrics({f"{self.split}/acc_exp{j}": a for j, a in enumerate(row)},
                                       step=trainer.global_step)


class ExpertLoadLogger(L.Callback):
    """Fraction of tokens per expert and MoE layer, measured by the evaluation pass.

    Must come after ``matrix`` in the callback list (callbacks run in order).
    """

    def __init__(self, matrix: EvaluationMatrix):
        self.matrix = matrix
        self.history: list[dict[str, list[float]]] = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        load = expert_fractions(self.matrix.expert_counts)
        self.history.append(load)
        if trainer.logger is not None and load:
            trainer.logger.log_metrics({f"expert_load/{layer}/{e}": f for layer, fr in load.items()
                                        for e, f in enumerate(fr)}, step=trainer.global_step)


class CurriculumLogger(L.Callback):
    """Collects the stage switches (experience, step, stage, competence, reason)."""

    def __init__(self):
        self.entries: list[dict] = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        curriculum = getattr(pl_module, "curriculum", None)
        if curriculum is None:
            return
        self.entries.extend(curriculum.log)
        if trainer.logger is not None:
            for entry in curriculum.log:
                trainer.logger.log_metrics({"curriculum/stage": entry["stage"],
                                            "curriculum/competence": entry["competence"]},
                                           step=entry["step"])


class ProgressBridge:
    """Reports each finished experience to the controllers' ``FitCallback``s."""

    def __init__(self, callbacks: Iterable[FitCallback], num_experiences: int):
        self.callbacks, self.num_experiences = tuple(callbacks), num_experiences

    def report(self, experience: int, acc_matrix: list[list[float]], test_acc_matrix: list[list[float]],
               checkpoint_dir: Path | None, measured: dict[str, float] | None = None) -> None:
        """``measured``: values known so far beyond the accuracy matrices (the effective
        cost of what the model realised on its validation pass), added to ``values``."""
        if not self.callbacks:
            return
        rows = [list(r) for r in acc_matrix[:experience + 1]]
        test_rows = [list(r) for r in test_acc_matrix[:experience + 1]]
        values = with_test(rows, test_rows) | dict(measured or {})
        progress = ExperienceProgress(experience, self.num_experiences, values,
                                      rows, test_rows, checkpoint_dir)
        for callback in self.callbacks:
            callback.on_experience_end(progress)
