"""The experience loop: a task's stream trained stint by stint, shared by ``fit`` and
the supernet's training (``trainers.supernet``).

A stint is one ``Trainer.fit`` with a fixed step budget and a fresh optimiser: one per
experience, or one over the union of all of them (``joint``). Per stint the loop sets
the system up for its experience with a seed derived from (seed, stint) by
``experience_seed``, trains, lets the run measure what it measures (``fit``: R_val,
R_test and the rest, through Lightning callbacks; the supernet: a snapshot of its
shared tensors), saves the run's resumable state atomically (``trainers.checkpoint``)
and tells the run's listeners. What differs between the two runs is in their
``StintHooks``; the order of what touches an RNG is here, once, so a resumed run
draws exactly what an uninterrupted one draws.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import lightning as L
import torch
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import TrainingSettings

from .checkpoint import save_checkpoint
from .curves import CurveLogger
from .precision import lightning_precision
from .tasks.base import Experience, Task


@dataclass
class Stint:
    """One ``Trainer.fit``: an experience (or the joint union) and its step budget."""

    index: int
    experience: Experience
    steps: int
    seen: int                     # experiences seen once this one is trained


def plan(task: Task, cfg: TrainingSettings) -> list[Stint]:
    """The Trainer.fit calls of a run: one per experience, or one joint stint."""
    if not cfg.joint:
        return [Stint(e.index, e, cfg.steps_per_experience, i + 1) for i, e in enumerate(task.experiences)]
    exps = task.experiences
    levels = None
    if all(e.levels is not None for e in exps):
        levels = torch.cat([torch.as_tensor(e.levels).long() for e in exps])
    union = Experience(index=0, classes=tuple(sorted({c for e in exps for c in e.classes})),
                       train=_concat([e.train for e in exps]), val=_concat([e.val for e in exps]),
                       test=_concat([e.test for e in exps]), levels=levels)
    return [Stint(0, union, cfg.steps_per_experience * len(exps), len(exps))]


def _concat(datasets: list) -> Dataset:
    """One dataset of all; TensorDatasets stay one (fast batch slicing)."""
    if all(isinstance(d, TensorDataset) for d in datasets):
        return TensorDataset(*(torch.cat(parts) for parts in zip(*(d.tensors for d in datasets))))
    return ConcatDataset(datasets)


def experience_seed(seed: int, k: int) -> int:
    """The seed of stint ``k`` of a run seeded ``seed`` (its sampler, replay draws,
    masking, random curriculum scores, a supernet's paths). Two large odd factors keep
    the seeds of neighbouring runs and stints apart; the formula is part of every
    recorded result, so changing it changes every number."""
    return seed * 1_000_003 + 7919 * (k + 1)


def resolve_accelerator(device: str) -> str:
    """``auto``: cuda when available, else cpu; an explicit cuda must exist."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device", "cuda requested but torch sees no CUDA device")
    return device


def make_trainer(cfg: TrainingSettings, steps: int, callbacks: Iterable = (),
                 logger: CurveLogger | None = None) -> L.Trainer:
    """One experience's Trainer: ``steps`` optimiser steps, no bars, summaries or
    checkpoints; with ``logger``, the curves (``ContinualSystem`` writes its loss terms
    and learning rate every ``cfg.log_every`` steps itself, not on Lightning's schedule)."""
    accelerator = resolve_accelerator(cfg.device)
    return L.Trainer(
        accelerator=accelerator, devices=1, max_steps=steps, logger=logger or False,
        precision=lightning_precision(cfg.precision),
        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        log_every_n_steps=cfg.log_every,        # what Lightning itself logs (nothing here)
        gradient_clip_val=cfg.grad_clip or None, gradient_clip_algorithm="norm",
        # "warn": deterministic kernels where they exist, a warning (not a crash) where
        # a CUDA op has none (e.g. index_add in MoE dispatch)
        deterministic="warn",
    )


@contextlib.contextmanager
def quiet_lightning():
    """Silence Lightning's banner lines and its single-process data-loader advice."""
    log = logging.getLogger("lightning.pytorch")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
            yield
    finally:
        log.setLevel(level)


# --- the loop -------------------------------------------------------------------------
@dataclass
class LoopState:
    """Where a run stands: stints done, optimiser steps and wall time so far (a resumed
    run starts from its saved ones), and the last stint's Trainer (None if none ran)."""

    done: int = 0
    steps: int = 0
    past_wall: float = 0.0                     # wall time of the runs before a resume
    started: float = field(default_factory=time.perf_counter)
    trainer: L.Trainer | None = None

    def wall(self) -> float:
        return self.past_wall + time.perf_counter() - self.started


class StintHooks(Protocol):
    """What a run adds to the loop, called in this order for every stint k."""

    callbacks: Sequence[L.Callback]            # Lightning callbacks of every stint (measuring)

    def begin(self, k: int, seed: int) -> None:
        """After the system is set up for stint k with ``seed``, before training."""

    def end(self, k: int, stint: Stint) -> None:
        """After training stint k (and the callbacks' measurements)."""

    def state(self, at: LoopState) -> dict:
        """The resumable state after stint k (``at.done == k + 1``), plain data."""

    def report(self, k: int, stint: Stint) -> None:
        """Once the state is saved: tell the run's listeners (they may stop the run)."""


def run_stints(system: L.LightningModule, stints: Sequence[Stint], cfg: TrainingSettings,
               hooks: StintHooks, at: LoopState, *, state_path: str | os.PathLike | None = None,
               curves: CurveLogger | None = None) -> LoopState:
    """Train ``system`` (a ``ContinualSystem``) through ``stints[at.done:]``; see the
    module docstring. With ``state_path`` the hooks' state is saved there after every
    stint; with ``curves`` the curves go on one step axis across the stints."""
    for k in range(at.done, len(stints)):
        stint = stints[k]
        seed = experience_seed(cfg.seed, k)
        system.begin_experience(stint.index, stint.experience, stint.steps, stint.seen, seed=seed)
        hooks.begin(k, seed)
        if curves is not None:
            curves.offset = at.steps
        with quiet_lightning():
            at.trainer = make_trainer(cfg, stint.steps, hooks.callbacks, curves)
            at.trainer.fit(system)
        at.steps += at.trainer.global_step
        at.done = k + 1
        hooks.end(k, stint)
        if state_path is not None:
            save_checkpoint(state_path, hooks.state(at))
        hooks.report(k, stint)
    return at
