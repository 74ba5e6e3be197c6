"""``fit``: one architecture trained through a task's stream, end to end.

One ``Trainer.fit`` per experience with a fixed step budget and a fresh optimiser;
after each, every experience's validation split and test split are evaluated (a row
of R_val and of R_test: the metrics of R_val go by their plain names and are what a
search selects on; those of R_test are ``test.<name>``, held out), the resumable
state is saved (when asked) and the ``FitCallback``s hear about it. Knows nothing of
Ray: a controller passes callbacks, a checkpoint directory and a directory for the
training curves (TensorBoard event files, ``trainers.curves``).

Determinism: the global torch RNG is seeded once (``seed_everything``); the sampler,
replay draws, masking and random curriculum scores use generators seeded from
(seed, experience). On CPU two fits with one seed give equal metrics (all but the
measured ``latency_ms``), and a resumed fit equals an uninterrupted one: the resumable
state holds the model, the replay buffer (its generator included), R_val and R_test,
the curriculum log and the global RNG state.

``joint=True`` (the upper-bound control) trains once on the union of all experiences
for T * steps_per_experience steps; R then holds that one evaluation repeated in all
T rows (of both matrices), so forgetting is 0 by construction and final accuracy is the joint model's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import lightning as L
import torch
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from dynas.search_space.arch import ArchConfig
from dynas.search_space.cost import Realised, effective_metrics, estimate_cost
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.names import LATENCY_MS
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TrainingSettings, settings_dict

from .bundle import save_bundle
from .callbacks import CurriculumLogger, EvaluationMatrix, ExpertLoadLogger, ProgressBridge
from .continual import with_test
from .curves import CurveLogger
from .dynamics import DynamicsLogger, bits_metrics
from .metrics import held_out_plugin_metrics, plugin_metrics
from .evaluation import expert_fractions
from .latency import model_latency_ms
from .results import FitCallback, TrialMetrics
from .system import ContinualSystem
from .tasks.base import Experience, Task

STATE_FILE = "resume.pt"          # per-experience resumable state (torch.save, plain data)
LAST_CKPT = "last.ckpt"           # Lightning checkpoint of the final system
STATE_FORMAT = 2                  # 2: R_val and R_test (1 held R on the test splits only)


@dataclass
class Stint:
    """One ``Trainer.fit``: an experience (or the joint union) and its step budget."""

    index: int
    experience: Experience
    steps: int
    seen: int                     # experiences seen once this one is trained


def fit(arch: ArchConfig, task: Task, train_cfg: TrainingSettings,
        callbacks: Iterable[FitCallback] = (), *, checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False, seed: int | None = None, weights_dir: str | os.PathLike | None = None,
        init: Callable[[torch.nn.Module], None] | None = None,
        log_dir: str | os.PathLike | None = None) -> TrialMetrics:
    """Train ``arch`` through ``task`` and measure it; see the module docstring.

    ``seed`` overrides ``train_cfg.seed``; the training settings sampled with the
    architecture (``arch.training``, a search's per-trial decisions) override theirs. With ``checkpoint_dir`` the resumable state
    is saved after each experience (``resume.pt``) and the final system as a Lightning
    checkpoint (``last.ckpt``); ``resume=True`` continues from the saved state if there
    is one. With ``weights_dir`` the final model is written there as a bundle
    (``trainers.bundle``). ``init(model)`` runs on the fresh model before training
    (``--init-from``; a resumed run's saved state replaces it). ``latency_ms`` is
    measured once training ends. With ``log_dir`` the training curves
    are written there as TensorBoard event files, a point every ``log_every`` steps on
    one step axis across the experiences. Raises ``NonFiniteLoss`` when the loss turns
    NaN/inf.
    """
    chosen = arch.training.overrides() if getattr(arch, "training", None) else {}
    cfg = dataclasses.replace(train_cfg, seed=train_cfg.seed if seed is None else seed, **chosen)
    cfg.validate("training")
    arch.validate()
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    started = time.perf_counter()
    L.seed_everything(cfg.seed, verbose=False)
    system = ContinualSystem(arch.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                             [list(e.classes) for e in task.experiences], task.scenario)
    if init is not None:
        init(system.model)
    matrix, test_matrix = (EvaluationMatrix(task.experiences, scenario=task.scenario, split=split,
                                            num_classes=task.shape.num_classes,
                                            batch_size=cfg.eval_batch_size) for split in ("val", "test"))
    loads, curriculum = ExpertLoadLogger(matrix), CurriculumLogger()
    dynamics = DynamicsLogger(task.experiences, batch_size=cfg.eval_batch_size)
    stints = plan(task, cfg)
    fingerprint = _fingerprint(arch, task, cfg)
    done, steps, past_wall = 0, 0, 0.0
    if resume and ckpt_dir is not None and (ckpt_dir / STATE_FILE).is_file():
        done, steps, past_wall = _restore(ckpt_dir / STATE_FILE, fingerprint, system, matrix, test_matrix,
                                          curriculum, dynamics)
    bridge = ProgressBridge(callbacks, task.num_experiences)
    curves = CurveLogger(log_dir) if log_dir is not None else None
    trainer = None
    for k in range(done, len(stints)):
        stint = stints[k]
        system.begin_experience(stint.index, stint.experience, stint.steps, stint.seen,
                                seed=cfg.seed * 1_000_003 + 7919 * (k + 1))
        if curves is not None:
            curves.offset = steps
        with quiet_lightning():
            trainer = make_trainer(cfg, stint.steps, [matrix, test_matrix, loads, curriculum, dynamics],
                                   curves)
            trainer.fit(system)
        steps += trainer.global_step
        if cfg.joint:                         # one evaluation stands for every row
            for m in (matrix, test_matrix):
                m.rows = [list(m.rows[-1]) for _ in range(task.num_experiences)]
            dynamics.bits_rows = [list(dynamics.bits_rows[-1]) for _ in range(task.num_experiences)]
        if ckpt_dir is not None:
            _save_state(ckpt_dir / STATE_FILE, fingerprint, k + 1, system, matrix, test_matrix,
                        curriculum, dynamics, steps, past_wall + time.perf_counter() - started)
        reported = task.num_experiences - 1 if cfg.joint else stint.index
        bridge.report(reported, matrix.rows, test_matrix.rows, ckpt_dir)
    if trainer is not None and ckpt_dir is not None:
        # the full Lightning checkpoint (optimiser and loop state too); its content is
        # still plain tensors and containers, so torch.load(weights_only=True) reads it
        trainer.save_checkpoint(ckpt_dir / LAST_CKPT, weights_only=False)
    values = trial_values(arch, task, system.model, matrix.rows, test_matrix.rows, dynamics.bits_rows,
                          dynamics.history, resolve_accelerator(cfg.device))
    if weights_dir is not None:
        save_bundle(weights_dir, system.model, task, values)
    return TrialMetrics(values=values, acc_matrix=[list(r) for r in matrix.rows],
                        test_acc_matrix=[list(r) for r in test_matrix.rows],
                        expert_load=expert_fractions(matrix.expert_counts),
                        bits_matrix=[list(r) for r in dynamics.bits_rows],
                        dynamics=list(dynamics.history),
                        curriculum_log=list(curriculum.entries), steps=steps,
                        wall_time_s=past_wall + time.perf_counter() - started,
                        chance_accuracy=task.chance_accuracy)


def trial_values(arch: ArchConfig, task: Task, model: torch.nn.Module, rows: list, test_rows: list,
                 bits_rows: list, history: list, device: str) -> dict[str, float]:
    """Every metric of a trial from its measurements: continual metrics of R_val and
    R_test, static and effective cost, bits, latency, plugin metrics. Shared by ``fit``
    and the supernet's inherited scoring (``trainers.supernet``), so both report one set."""
    realised = Realised.from_dynamics(history[-1]) if history else Realised()
    values = (with_test(rows, test_rows) | estimate_cost(arch, task.shape).as_metrics()
              | effective_metrics(arch, task.shape, realised))
    if len(bits_rows) == len(rows):          # a state saved before B existed has none
        values |= bits_metrics(bits_rows)
    values[LATENCY_MS] = model_latency_ms(model, task.shape, 1, device)
    values |= plugin_metrics(rows, values)
    values |= held_out_plugin_metrics(test_rows, values)
    return values


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
        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        log_every_n_steps=cfg.log_every,        # what Lightning itself logs (nothing here)
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


# --- resumable state ------------------------------------------------------------------
def _fingerprint(arch: ArchConfig, task: Task, cfg: TrainingSettings) -> dict:
    """What a resumed run must share with the saved one."""
    return {"arch_id": arch.arch_id, "task": task.name, "experiences": task.num_experiences,
            "training": settings_dict(cfg)}


def _save_state(path: Path, fingerprint: dict, done: int, system: ContinualSystem,
                matrix: EvaluationMatrix, test_matrix: EvaluationMatrix, curriculum: CurriculumLogger,
                dynamics: DynamicsLogger,
                steps: int, wall: float) -> None:
    """Plain tensors and containers only, so ``torch.load(weights_only=True)`` reads it."""
    state = {
        "format": STATE_FORMAT, "fingerprint": fingerprint, "done": done,
        "model": system.model.state_dict(),
        "replay": system.replay.state_dict() if system.replay is not None else None,
        "acc_matrix": [list(r) for r in matrix.rows],
        "test_acc_matrix": [list(r) for r in test_matrix.rows], "expert_counts": dict(matrix.expert_counts),
        "curriculum_log": list(curriculum.entries), "steps": steps, "wall_time_s": wall,
        "bits_matrix": [list(r) for r in dynamics.bits_rows], "dynamics": list(dynamics.history),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:              # a full disk: leave the old state, not a temp file
        tmp.unlink(missing_ok=True)
        raise


def _restore(path: Path, fingerprint: dict, system: ContinualSystem, matrix: EvaluationMatrix,
             test_matrix: EvaluationMatrix, curriculum: CurriculumLogger,
             dynamics: DynamicsLogger) -> tuple[int, int, float]:
    """Load a saved state into the fresh run; returns (experiences done, steps, wall)."""
    state = load_state(path)
    if state.get("format") != STATE_FORMAT:
        raise DynasError(f"{path}: unsupported resume state format {state.get('format')!r}")
    saved = dict(state["fingerprint"])
    with contextlib.suppress(ConfigError, TypeError):   # saved before a setting existed: its default
        saved["training"] = settings_dict(from_mapping(TrainingSettings, saved.get("training")))
    for key, value in fingerprint.items():
        if saved.get(key) != value:
            raise DynasError(f"{path}: cannot resume, the saved run has a different {key} "
                             f"({saved.get(key)!r} != {value!r})")
    system.model.load_state_dict(state["model"])
    if system.replay is not None and state["replay"] is not None:
        system.replay.load_state_dict(state["replay"])
    matrix.rows = [list(r) for r in state["acc_matrix"]]
    test_matrix.rows = [list(r) for r in state["test_acc_matrix"]]
    matrix.expert_counts = dict(state["expert_counts"])
    curriculum.entries = list(state["curriculum_log"])
    dynamics.bits_rows = [list(r) for r in state.get("bits_matrix", [])]
    dynamics.history = list(state.get("dynamics", []))
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["done"]), int(state["steps"]), float(state["wall_time_s"])


def load_state(path: str | os.PathLike) -> dict:
    """Read a resume state safely (tensors and plain containers only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file is a user-facing problem
        raise DynasError(f"{path}: unreadable resume state ({type(err).__name__}: {err})") from None
