"""``train_supernet``: one supernet trained through a task's stream; ``TrainedSupernet``,
what candidates are scored with.

Training runs the stream through the experience loop (``trainers.loop``) that a
stand-alone ``fit`` runs, with the same ``ContinualSystem`` (curriculum, replay, aux
losses, one fresh optimiser per experience) and the same per-experience seeds; the
model is a ``SuperNet`` whose every step trains the paths its sampler draws
(``supernet.sampling``, ``supernet.system``). After each experience the shared tensors
are snapshotted: snapshot k is what a candidate's model after experience k inherits
(``supernet.scoring``). A few-shot supernet (``search.supernet.shots``) is one such
training per sub-supernet, each drawing only the paths it holds.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from torch import Tensor

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import SupernetSettings, TrainingSettings, settings_dict
from dynas.search_space.sharing import Shot, split
from dynas.search_space.space import ArchSpace

from ..checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint
from .net import SuperNet
from .sampling import Feasible, PathSampler

SUPERNET_FILE = "supernet.pt"        # the trained supernet: snapshots after each experience
STATE_FILE = "supernet-resume.pt"    # resumable training state, per experience
STATE_FORMAT = 1                     # of the resumable state (one per part)
FORMAT = 2                           # 2: one part per sub-supernet (1: the one-shot's snapshots alone)
# settings added after format 1: at these values a fingerprint leaves them out, so a
# supernet trained before they existed still matches the settings it was trained with
LATER_DEFAULTS = {"sampling": "uniform", "sandwich_paths": 2, "shots": "one"}


@dataclass
class TrainedSupernet:
    """What a candidate is scored with: per sub-supernet (one, unless few-shot), its
    shot and its shared tensors after each experience."""

    parts: list[tuple[Shot, list[dict[str, Tensor]]]]
    fingerprint: dict
    steps: int = 0
    paths: int = 0                       # paths drawn for training
    wall_time_s: float = 0.0

    @property
    def snapshots(self) -> list[dict[str, Tensor]]:
        """The one-shot supernet's snapshots (a few-shot one has one set per part)."""
        if len(self.parts) != 1:
            raise DynasError(f"a few-shot supernet holds {len(self.parts)} sub-supernets; "
                             "take a candidate's with snapshots_for(arch)")
        return self.parts[0][1]

    def snapshots_for(self, arch: ArchConfig) -> list[dict[str, Tensor]]:
        """The snapshots of the sub-supernet that holds ``arch`` (few-shot routing)."""
        for shot, snapshots in self.parts:
            if shot.contains(arch):
                return snapshots
        raise DynasError(f"no sub-supernet of this supernet holds {arch.summary()} "
                         f"(parts: {', '.join(s.label for s, _ in self.parts)})")

    def save(self, path: str | os.PathLike) -> Path:
        """Write it atomically (``trainers.checkpoint``): a reader never sees half of it."""
        parts = [{"shot": shot.to_dict(), "snapshots": snaps} for shot, snaps in self.parts]
        return save_checkpoint(path, {"format": FORMAT, "parts": parts, "fingerprint": self.fingerprint,
                                      "steps": self.steps, "paths": self.paths,
                                      "wall_time_s": self.wall_time_s})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainedSupernet":
        data = load_checkpoint(path, "supernet")
        if not isinstance(data, dict) or data.get("format") not in (1, FORMAT):
            raise DynasError(f"{path}: not a dynas supernet of format 1 or {FORMAT}")
        parts = [(Shot(), list(data["snapshots"]))] if data["format"] == 1 else \
            [(Shot(**p["shot"]), list(p["snapshots"])) for p in data["parts"]]
        return cls(parts, dict(data["fingerprint"]), int(data["steps"]), int(data["paths"]),
                   float(data["wall_time_s"]))


def fingerprint(space: ArchSpace, task, cfg: TrainingSettings, settings: SupernetSettings) -> dict:
    """What a resumed (or reused) supernet must share with the one asked for."""
    supernet = {k: v for k, v in settings_dict(settings).items() if LATER_DEFAULTS.get(k, ...) != v}
    return {"space": repr(space), "task": task.name, "experiences": task.num_experiences,
            "training": settings_dict(cfg), "supernet": supernet}


def train_supernet(space: ArchSpace, task, cfg: TrainingSettings, settings: SupernetSettings, *,
                   feasible: Feasible | None = None, checkpoint_dir: str | os.PathLike | None = None,
                   log_dir: str | os.PathLike | None = None,
                   on_experience: Callable[[int, Path | None], None] | None = None) -> TrainedSupernet:
    """Training of one supernet, or of each sub-supernet of a few-shot split in turn,
    through ``task``'s stream (module docstring).

    ``cfg`` is the experiment's training section; each (sub-)supernet takes
    ``settings.steps(cfg.steps_per_experience)`` steps per experience with seed
    ``settings.seed``, its paths drawn by ``settings.sampling``. With ``checkpoint_dir`` the
    state after each experience is saved there (a few-shot part's in ``shot-<i>``) and a
    rerun continues from it; ``on_experience(k, checkpoint_dir)`` hears of each finished
    experience, ``k`` counting on across the parts (a Ray trial reports its checkpoint there).
    """
    steps = settings.steps(cfg.steps_per_experience)
    cfg = dataclasses.replace(cfg, steps_per_experience=steps, seed=settings.seed)
    cfg.validate("training")
    shots = split(space, settings.shots)
    done = TrainedSupernet([], fingerprint(space, task, cfg, settings))
    for i, shot in enumerate(shots):
        def below(root):
            return None if root is None else Path(root) / f"shot-{i}" if len(shots) > 1 else Path(root)

        report = None if on_experience is None else \
            (lambda k, _, i=i: on_experience(i * task.num_experiences + k, checkpoint_dir))
        sampler = PathSampler(space, sampling=settings.sampling, sandwich_paths=settings.sandwich_paths,
                              shot=shot, feasible=feasible, seed=cfg.seed)
        snapshots, at, paths = _train_part(space, task, cfg, sampler, done.fingerprint,
                                           below(checkpoint_dir), below(log_dir), report)
        done.parts.append((shot, snapshots))
        done.steps, done.paths, done.wall_time_s = done.steps + at.steps, done.paths + paths, \
            done.wall_time_s + at.wall()
    return done


def _train_part(space: ArchSpace, task, cfg: TrainingSettings, sampler: PathSampler, fingerprint: dict,
                ckpt: Path | None, log_dir: Path | None, on_experience) -> tuple[list, "object", int]:
    """One (sub-)supernet through the stream: its snapshots, loop state and paths trained."""
    import lightning as L                    # lazy: the package's names import without Lightning

    from ..curves import CurveLogger
    from ..loop import LoopState, plan, run_stints
    from .system import SupernetSystem

    at = LoopState()
    L.seed_everything(cfg.seed, verbose=False)
    net = SuperNet(space, task.shape, seed=cfg.seed, dropout=cfg.dropout, sampler=sampler)
    system = SupernetSystem(net.widest.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                            [list(e.classes) for e in task.experiences], task.scenario, model=net)
    run = _SupernetRun(net, system, fingerprint, ckpt, on_experience)
    state_path = ckpt / STATE_FILE if ckpt is not None else None
    if state_path is not None and state_path.is_file():
        run.restore(state_path, at)
    curves = CurveLogger(log_dir) if log_dir is not None else None
    run_stints(system, plan(task, cfg), cfg, run, at, state_path=state_path, curves=curves)
    snapshots = run.snapshots
    if cfg.joint:                            # one evaluation stands for every row (as in fit)
        snapshots = [snapshots[-1]] * task.num_experiences
    return snapshots, at, net.sampled


class _SupernetRun:
    """The supernet's side of the experience loop (``loop.StintHooks``): path draws
    seeded per experience, a snapshot after each, its resumable state, ``on_experience``."""

    callbacks = ()                           # nothing measured while training

    def __init__(self, net: SuperNet, system, fingerprint: dict, ckpt: Path | None,
                 on_experience: Callable[[int, Path | None], None] | None):
        self.net, self.system, self.fingerprint = net, system, fingerprint
        self.ckpt, self.on_experience = ckpt, on_experience
        self.snapshots: list[dict[str, Tensor]] = []

    def begin(self, k: int, seed: int) -> None:
        self.net.reseed(seed)
        self.net.use(None)

    def end(self, k: int, stint) -> None:
        self.snapshots.append(self.net.shared_state())

    def report(self, k: int, stint) -> None:
        if self.on_experience is not None:
            self.on_experience(k, self.ckpt)

    def state(self, at) -> dict:
        """Plain tensors and containers only, so ``torch.load(weights_only=True)`` reads it."""
        replay = self.system.replay
        return {"format": STATE_FORMAT, "fingerprint": self.fingerprint, "done": at.done,
                "snapshots": self.snapshots, "model": self.net.state_dict(),
                "replay": replay.state_dict() if replay else None, "steps": at.steps,
                "wall_time_s": at.wall(), "paths": self.net.sampled, "rng": rng_state()}

    def restore(self, path: Path, at) -> None:
        """Load a saved state into this fresh run and ``at``; refuses another configuration."""
        state = load_checkpoint(path, "supernet state")
        if state.get("format") != STATE_FORMAT or state.get("fingerprint") != self.fingerprint:
            raise DynasError(f"{path}: cannot resume, the saved supernet was trained for another "
                             "space, task or training section")
        self.net.load_state_dict(state["model"])
        self.net.sampled = int(state["paths"])
        if self.system.replay is not None and state["replay"] is not None:
            self.system.replay.load_state_dict(state["replay"])
        restore_rng(state["rng"])
        at.done, at.steps, at.past_wall = int(state["done"]), int(state["steps"]), float(state["wall_time_s"])
        self.snapshots = list(state["snapshots"])
