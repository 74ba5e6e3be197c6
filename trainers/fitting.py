"""``fit``: one architecture trained through a task's stream, end to end.

One ``Trainer.fit`` per experience with a fixed step budget and a fresh optimiser
(the experience loop, ``trainers.loop``, which the supernet's training shares); after each, every experience's validation split and test split are evaluated (a row
of R_val and of R_test: the metrics of R_val go by their plain names and are what a
search selects on; those of R_test are ``test.<name>``, held out), the resumable
state is saved (when asked) and the ``FitCallback``s hear about it. Knows nothing of
Ray: a controller passes callbacks, a checkpoint directory and a directory for the
training curves (TensorBoard event files, ``trainers.curves``).

Determinism: the global torch RNG is seeded once (``seed_everything``); the sampler,
replay draws, masking and random curriculum scores use generators seeded from
(seed, experience) (``loop.experience_seed``). On CPU two fits with one seed give equal metrics (all but the
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
import os
from pathlib import Path
from typing import Callable, Iterable

import lightning as L
import torch

from dynas.search_space.arch import ArchConfig
from dynas.search_space.cost import Realised, effective_metrics, estimate_cost
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.names import LATENCY_MS
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TrainingSettings, settings_dict

from .bundle import save_bundle
from .callbacks import CurriculumLogger, EvaluationMatrix, ExpertLoadLogger, ProgressBridge
from .checkpoint import load_checkpoint, restore_rng, rng_state
from .continual import with_test
from .curves import CurveLogger
from .dynamics import DynamicsLogger, bits_metrics
from .evaluation import expert_fractions
from .latency import model_latency_ms
from .loop import LoopState, Stint, plan, resolve_accelerator, run_stints
from .metrics import held_out_plugin_metrics, plugin_metrics
from .precision import autocast
from .results import FitCallback, TrialMetrics
from .system import ContinualSystem
from .tasks.base import Task

STATE_FILE = "resume.pt"          # per-experience resumable state (torch.save, plain data)
LAST_CKPT = "last.ckpt"           # Lightning checkpoint of the final system
STATE_FORMAT = 2                  # 2: R_val and R_test (1 held R on the test splits only)


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
    at = LoopState()
    L.seed_everything(cfg.seed, verbose=False)
    system = ContinualSystem(arch.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                             [list(e.classes) for e in task.experiences], task.scenario)
    if init is not None:
        init(system.model)
    run = _FitRun(arch, task, cfg, system, ProgressBridge(callbacks, task.num_experiences), ckpt_dir)
    state_path = ckpt_dir / STATE_FILE if ckpt_dir is not None else None
    if resume and state_path is not None and state_path.is_file():
        run.restore(state_path, at)
    curves = CurveLogger(log_dir) if log_dir is not None else None
    run_stints(system, plan(task, cfg), cfg, run, at, state_path=state_path, curves=curves)
    if at.trainer is not None and ckpt_dir is not None:
        # the full Lightning checkpoint (optimiser and loop state too); its content is
        # still plain tensors and containers, so torch.load(weights_only=True) reads it
        at.trainer.save_checkpoint(ckpt_dir / LAST_CKPT, weights_only=False)
    return run.metrics(at, weights_dir)


def trial_values(arch: ArchConfig, task: Task, model: torch.nn.Module, rows: list, test_rows: list,
                 bits_rows: list, history: list, device: str,
                 precision: str = "fp32") -> dict[str, float]:
    """Every metric of a trial from its measurements: continual metrics of R_val and
    R_test, static and effective cost, bits, latency (in ``precision``), plugin metrics.
    Shared by ``fit`` and the supernet's inherited scoring (``trainers.supernet``), so
    both report one set."""
    realised = Realised.from_dynamics(history[-1]) if history else Realised()
    values = (with_test(rows, test_rows) | estimate_cost(arch, task.shape).as_metrics()
              | effective_metrics(arch, task.shape, realised))
    if len(bits_rows) == len(rows):          # a state saved before B existed has none
        values |= bits_metrics(bits_rows)
    with autocast(precision, device):
        values[LATENCY_MS] = model_latency_ms(model, task.shape, 1, device)
    values |= plugin_metrics(rows, values)
    values |= held_out_plugin_metrics(test_rows, values)
    return values


# --- one run's measurements and resumable state --------------------------------------
class _FitRun:
    """``fit``'s side of the experience loop (``loop.StintHooks``): the recorders that
    measure after each stint, the joint control's rows, the resumable state, and the
    ``FitCallback``s (through ``bridge``)."""

    def __init__(self, arch: ArchConfig, task: Task, cfg: TrainingSettings, system: ContinualSystem,
                 bridge: ProgressBridge, ckpt_dir: Path | None):
        self.arch, self.task, self.cfg, self.system = arch, task, cfg, system
        self.bridge, self.ckpt_dir = bridge, ckpt_dir
        self.matrix, self.test_matrix = (
            EvaluationMatrix(task.experiences, scenario=task.scenario, split=split,
                             num_classes=task.shape.num_classes, batch_size=cfg.eval_batch_size,
                             precision=cfg.precision)
            for split in ("val", "test"))
        self.loads, self.curriculum = ExpertLoadLogger(self.matrix), CurriculumLogger()
        self.dynamics = DynamicsLogger(task.experiences, batch_size=cfg.eval_batch_size,
                                       precision=cfg.precision)
        self.callbacks = [self.matrix, self.test_matrix, self.loads, self.curriculum, self.dynamics]
        self.fingerprint = {"arch_id": arch.arch_id, "task": task.name,    # what a resume must share
                            "experiences": task.num_experiences, "training": settings_dict(cfg)}

    def begin(self, k: int, seed: int) -> None:
        pass                                  # the system's own seeding is all a fit needs

    def end(self, k: int, stint: Stint) -> None:
        if self.cfg.joint:                    # one evaluation stands for every row
            n = self.task.num_experiences
            for m in (self.matrix, self.test_matrix):
                m.rows = [list(m.rows[-1]) for _ in range(n)]
            self.dynamics.bits_rows = [list(self.dynamics.bits_rows[-1]) for _ in range(n)]

    def report(self, k: int, stint: Stint) -> None:
        reported = self.task.num_experiences - 1 if self.cfg.joint else stint.index
        # the effective cost so far (spans and k of the validation pass just made), so a
        # scheduler or a fidelity search can rank on it mid-trial as on the final record
        history = self.dynamics.history
        measured = effective_metrics(self.arch, self.task.shape, Realised.from_dynamics(history[-1])) \
            if history else {}
        self.bridge.report(reported, self.matrix.rows, self.test_matrix.rows, self.ckpt_dir, measured)

    def state(self, at: LoopState) -> dict:
        """Plain tensors and containers only, so ``torch.load(weights_only=True)`` reads it."""
        replay = self.system.replay
        return {
            "format": STATE_FORMAT, "fingerprint": self.fingerprint, "done": at.done,
            "model": self.system.model.state_dict(),
            "replay": replay.state_dict() if replay is not None else None,
            "acc_matrix": [list(r) for r in self.matrix.rows],
            "test_acc_matrix": [list(r) for r in self.test_matrix.rows],
            "expert_counts": dict(self.matrix.expert_counts),
            "curriculum_log": list(self.curriculum.entries), "steps": at.steps, "wall_time_s": at.wall(),
            "bits_matrix": [list(r) for r in self.dynamics.bits_rows], "dynamics": list(self.dynamics.history),
            "rng": rng_state(),
        }

    def restore(self, path: Path, at: LoopState) -> None:
        """Load a saved state into this fresh run and ``at``; refuses another configuration."""
        state = load_state(path)
        if state.get("format") != STATE_FORMAT:
            raise DynasError(f"{path}: unsupported resume state format {state.get('format')!r}")
        saved = dict(state["fingerprint"])
        with contextlib.suppress(ConfigError, TypeError):   # saved before a setting existed: its default
            saved["training"] = settings_dict(from_mapping(TrainingSettings, saved.get("training")))
        for key, value in self.fingerprint.items():
            if saved.get(key) != value:
                raise DynasError(f"{path}: cannot resume, the saved run has a different {key} "
                                 f"({saved.get(key)!r} != {value!r})")
        self.system.model.load_state_dict(state["model"])
        if self.system.replay is not None and state["replay"] is not None:
            self.system.replay.load_state_dict(state["replay"])
        self.matrix.rows = [list(r) for r in state["acc_matrix"]]
        self.test_matrix.rows = [list(r) for r in state["test_acc_matrix"]]
        self.matrix.expert_counts = dict(state["expert_counts"])
        self.curriculum.entries = list(state["curriculum_log"])
        self.dynamics.bits_rows = [list(r) for r in state.get("bits_matrix", [])]
        self.dynamics.history = list(state.get("dynamics", []))
        restore_rng(state["rng"])
        at.done, at.steps, at.past_wall = int(state["done"]), int(state["steps"]), float(state["wall_time_s"])

    def metrics(self, at: LoopState, weights_dir: str | os.PathLike | None) -> TrialMetrics:
        """What the run measured, as ``TrialMetrics``; the model saved as a bundle if asked."""
        rows, test_rows, dynamics = self.matrix.rows, self.test_matrix.rows, self.dynamics
        model = self.system.model
        values = trial_values(self.arch, self.task, model, rows, test_rows, dynamics.bits_rows,
                              dynamics.history, resolve_accelerator(self.cfg.device),
                              self.cfg.precision)
        if weights_dir is not None:
            save_bundle(weights_dir, model, self.task, values)
        return TrialMetrics(values=values, acc_matrix=[list(r) for r in rows],
                            test_acc_matrix=[list(r) for r in test_rows],
                            expert_load=expert_fractions(self.matrix.expert_counts),
                            bits_matrix=[list(r) for r in dynamics.bits_rows],
                            dynamics=list(dynamics.history),
                            curriculum_log=list(self.curriculum.entries), steps=at.steps,
                            wall_time_s=at.wall(), chance_accuracy=self.task.chance_accuracy)


def load_state(path: str | os.PathLike) -> dict:
    """Read a resume state safely (tensors and plain containers only)."""
    return load_checkpoint(path, "resume state")
