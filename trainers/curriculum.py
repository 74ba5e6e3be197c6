"""A progressive curriculum inside one experience: score, pace, sample, promote.

How the parts fit (one ``Curriculum`` per experience):

* **Levels.** Train samples are split into ``L`` difficulty levels. The task's own
  ``levels`` are used when it gives them; otherwise the samples are ranked by a score
  (prediction entropy of the current model over the experience's classes, per-sample
  loss, or uniform noise for the ``random`` control twin) and cut into ``L`` equal
  quantile bands. Scores are computed at the start of each stage and frozen for it.
* **Stages.** Stage ``s`` trains on levels ``<= s``. The stage ends when held-out (val)
  accuracy on level ``s`` reaches ``threshold`` for ``patience`` consecutive checks (one
  check every ``eval_every`` steps), or when it has lasted ``max_stage_steps``.
* **Pacing.** Independently of the stage, competence ``c(t)`` (the fraction of the
  easiest samples allowed) grows with the step ``t`` of the experience; its horizon is
  ``PACING_HORIZON`` of the experience. The sampler draws uniformly from the easiest
  ``min(c(t), stage share)`` of the data: promotion says the model is ready, pacing
  says how fast the data may grow, and both must agree.
* **Sampler.** ``CurriculumBatchSampler`` has a constant length (one batch per step), so
  Lightning's ``max_steps`` and the sampler never disagree; it reads the curriculum's
  state when each batch is drawn, so a promotion takes effect on the next step.

Masking-ratio schedules (``mask_ratio``) are applied as *input masking* of the current
experience's batches (``apply_input_mask``): a fraction ``r(t)`` of the positions is
replaced, token ids by ``mask_id`` and continuous patches by zeros. We chose input
masking over an extra reconstruction loss because our models emit class logits, not
vocabulary logits; the task loss on the corrupted input is the denoising signal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch.utils.data import Sampler

from dynas.search_space.settings import CurriculumSettings

PACING_HORIZON = 0.5     # competence reaches 1 halfway through the experience


# --- schedules -------------------------------------------------------------------------
def competence(t: int, horizon: int, c0: float, pacing: str, levels: int = 3) -> float:
    """Fraction of the easiest samples allowed at step ``t`` (Platanios et al., 2019).

    sqrt: ``min(1, sqrt(c0^2 + (1 - c0^2) t / T))``; linear: ``min(1, c0 + (1 - c0) t / T)``;
    step: ``levels`` plateaus from c0 to 1, the last one reached at ``(levels-1)/levels T``.
    """
    frac = min(1.0, max(0.0, t / max(1, horizon)))
    if pacing == "sqrt":
        return min(1.0, math.sqrt(c0 * c0 + (1.0 - c0 * c0) * frac))
    if pacing == "linear":
        return min(1.0, c0 + (1.0 - c0) * frac)
    if pacing == "step":
        if levels <= 1:
            return 1.0
        plateau = min(levels - 1, math.floor(levels * frac))
        return min(1.0, c0 + (1.0 - c0) * plateau / (levels - 1))
    raise ValueError(f"unknown pacing {pacing!r}")


def mask_ratio(schedule: str, t: int, total: int) -> float:
    """Masking ratio at step ``t`` of ``total``: ``fixed_R`` or ``A->B`` (linear)."""
    if schedule == "none":
        return 0.0
    if schedule.startswith("fixed_"):
        return float(schedule[len("fixed_"):])
    start, end = (float(v) for v in schedule.split("->"))
    frac = min(1.0, max(0.0, t / max(1, total - 1)))
    return start + (end - start) * frac


def apply_input_mask(x: torch.Tensor, ratio: float, generator: torch.Generator,
                     mask_id: int = 0) -> torch.Tensor:
    """Replace a ``ratio`` fraction of positions: token ids by ``mask_id``, vectors by 0.

    x: (B, T) long tokens or (B, T, D) float patches; returns a new tensor.
    """
    if ratio <= 0.0:
        return x
    hit = torch.rand(x.shape[:2], generator=generator) < ratio          # (B, T)
    hit = hit.to(x.device)
    if x.dtype == torch.long:
        return x.masked_fill(hit, mask_id)
    return x.masked_fill(hit.unsqueeze(-1), 0.0)


# --- the stage machine -------------------------------------------------------------------
@dataclass
class Event:
    """A stage switch, as logged in ``TrialMetrics.curriculum_log``."""

    experience: int
    step: int
    stage: int
    competence: float
    reason: str                  # start | accuracy | max_stage_steps
    val_accuracy: float | None = None

    def to_dict(self) -> dict:
        row = {"experience": self.experience, "step": self.step, "stage": self.stage,
               "competence": round(self.competence, 6), "reason": self.reason}
        if self.val_accuracy is not None:
            row["val_accuracy"] = round(self.val_accuracy, 6)
        return row


def quantile_levels(scores: torch.Tensor, levels: int) -> torch.Tensor:
    """Level of each sample: its rank (easiest first) cut into ``levels`` equal bands.

    scores: (N,) lower = easier; returns (N,) long in [0, levels).
    """
    n = scores.numel()
    ranks = torch.empty(n, dtype=torch.long)
    ranks[torch.argsort(scores, stable=True)] = torch.arange(n)
    return torch.clamp(ranks * levels // max(1, n), max=levels - 1)


class Curriculum:
    """Stage, pacing and promotion state of one experience; the system drives it.

    The system calls ``begin_stage`` with fresh scores at step 0 and after each
    promotion, ``allowed``/``draw`` through the sampler, ``due`` + ``observe`` every
    ``eval_every`` steps, and ``capped`` every step.
    """

    def __init__(self, settings: CurriculumSettings, *, experience: int, total_steps: int,
                 num_train: int, task_levels: torch.Tensor | None = None,
                 num_levels: int | None = None):
        self.settings = settings
        self.experience = experience
        self.total_steps = total_steps
        self.horizon = max(1, round(PACING_HORIZON * total_steps))
        self.num_train = num_train
        self.task_levels = None if task_levels is None else torch.as_tensor(task_levels).long()
        if num_levels is None:
            num_levels = (int(self.task_levels.max()) + 1 if self.task_levels is not None
                          else settings.levels)
        self.num_levels = num_levels
        self.stage = 0
        self.stage_start = 0
        self.streak = 0
        self.order = torch.arange(num_train)          # easiest first within allowed levels
        self.stage_share = num_train                  # samples in levels <= stage
        self.val_levels: torch.Tensor | None = None
        self.log: list[dict] = []

    @property
    def last_stage(self) -> bool:
        return self.stage >= self.num_levels - 1

    def begin_stage(self, step: int, train_scores: torch.Tensor, *,
                    val_scores: torch.Tensor | None = None,
                    val_levels: torch.Tensor | None = None, reason: str = "start",
                    val_accuracy: float | None = None) -> Event:
        """Freeze this stage's ordering from (N,) scores, lower = easier.

        Val levels: the task's (``val_levels``) with task levels, else the train band
        each ``val_scores`` entry falls in; None means promotion checks all of val.
        """
        train_scores = train_scores.float().cpu()
        by_score = torch.argsort(train_scores, stable=True)
        if self.task_levels is not None:
            levels = self.task_levels
            self.val_levels = None if val_levels is None else torch.as_tensor(val_levels).long()
        else:
            levels = quantile_levels(train_scores, self.num_levels)
            self.val_levels = (None if val_scores is None
                               else self._band_of(train_scores[by_score], levels[by_score], val_scores))
        # easiest first: by level, and by score inside a level (task levels: ties)
        self.order = by_score[torch.argsort(levels[by_score], stable=True)]
        self.stage_share = int((levels <= self.stage).sum())
        self.stage_start, self.streak = step, 0
        event = Event(self.experience, step, self.stage, self.competence(step), reason, val_accuracy)
        self.log.append(event.to_dict())
        return event

    def _band_of(self, sorted_scores: torch.Tensor, sorted_levels: torch.Tensor,
                 val_scores: torch.Tensor) -> torch.Tensor:
        """Level of each val sample: the train quantile band its score falls in."""
        if self.num_levels == 1:
            return torch.zeros(len(val_scores), dtype=torch.long)
        last = [int((sorted_levels <= s).sum()) - 1 for s in range(self.num_levels - 1)]
        edges = sorted_scores[torch.tensor([max(0, i) for i in last], dtype=torch.long)]
        return torch.bucketize(val_scores.float().cpu(), edges)

    def competence(self, step: int) -> float:
        s = self.settings
        return competence(step, self.horizon, s.start_competence, s.pacing, self.num_levels)

    def allowed(self, step: int) -> int:
        """How many of the easiest samples the sampler may draw from at ``step``."""
        paced = math.ceil(self.competence(step) * self.num_train)
        return max(1, min(paced, self.stage_share))

    def draw(self, n: int, step: int, generator: torch.Generator) -> torch.Tensor:
        """n train indices, uniform over the allowed easiest prefix (zero weight beyond)."""
        k = self.allowed(step)
        return self.order[torch.randint(k, (n,), generator=generator)]

    def val_subset(self) -> torch.Tensor | None:
        """Val indices of the current level (or of levels <= stage if that is empty)."""
        if self.val_levels is None:
            return None
        for chosen in (self.val_levels == self.stage, self.val_levels <= self.stage):
            idx = torch.nonzero(chosen).flatten()
            if idx.numel():
                return idx
        return None

    def due(self, step: int) -> bool:
        return (not self.last_stage and step > self.stage_start
                and (step - self.stage_start) % self.settings.eval_every == 0)

    def observe(self, val_accuracy: float) -> bool:
        """Record a promotion check; True when the stage should end."""
        self.streak = self.streak + 1 if val_accuracy >= self.settings.threshold else 0
        return self.streak >= self.settings.patience

    def capped(self, step: int) -> bool:
        cap = self.settings.max_stage_steps
        return not self.last_stage and cap > 0 and step - self.stage_start >= cap

    def promote(self) -> None:
        """Advance the stage; the caller re-scores and calls ``begin_stage``."""
        self.stage = min(self.stage + 1, self.num_levels - 1)


# --- sampling ----------------------------------------------------------------------------
class CurriculumBatchSampler(Sampler[list[int]]):
    """Yields ``steps`` batches of indices; with a curriculum, from its allowed prefix.

    Batch i is drawn for step i (pacing reads i); the stage is read when the batch is
    drawn, so a promotion shows from the next batch the loader fetches. Without a
    curriculum (``kind: none``) it is plain shuffling: concatenated random
    permutations, so every sample is seen once per pass.
    """

    def __init__(self, num_samples: int, batch_size: int, steps: int, seed: int,
                 curriculum: Curriculum | None = None):
        self.num_samples, self.batch_size, self.steps = num_samples, batch_size, steps
        self.curriculum = curriculum
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        if self.curriculum is not None:
            for step in range(self.steps):
                yield self.curriculum.draw(self.batch_size, step, self.generator).tolist()
            return
        pool = torch.empty(0, dtype=torch.long)
        for _ in range(self.steps):
            while pool.numel() < self.batch_size:
                pool = torch.cat([pool, torch.randperm(self.num_samples, generator=self.generator)])
            batch, pool = pool[: self.batch_size], pool[self.batch_size:]
            yield batch.tolist()
