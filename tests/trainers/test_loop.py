"""The experience loop ``fit`` and the supernet's training share: per stint it seeds,
trains, measures, saves the state atomically, then reports; a resumed loop starts where
the saved one stopped. And the one atomic checkpoint write both use."""
import dataclasses

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import TaskSettings, TrainingSettings, settings_dict
from dynas.trainers.checkpoint import load_checkpoint, save_checkpoint, write_atomic
from dynas.trainers.loop import LoopState, experience_seed, plan, run_stints
from dynas.trainers.system import ContinualSystem
from dynas.trainers.tasks import build_task

ARCH = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", expansion=2)),))
CFG = TrainingSettings(steps_per_experience=2, batch_size=8, device="cpu", seed=3)


def test_the_seed_of_each_stint_is_the_recorded_formula():
    # every recorded result was drawn with these seeds: the numbers must never move
    assert [experience_seed(3, k) for k in range(3)] == [3_007_928, 3_015_847, 3_023_766]
    assert experience_seed(0, 0) == 7919


class Recorder:
    """StintHooks that write down what the loop did, in order."""

    callbacks = ()

    def __init__(self, state_path):
        self.events, self.state_path = [], state_path

    def begin(self, k, seed):
        self.events.append(("begin", k, seed))

    def end(self, k, stint):
        self.events.append(("end", k, stint.index))

    def state(self, at):
        return {"done": at.done, "steps": at.steps}

    def report(self, k, stint):
        saved = load_checkpoint(self.state_path, "state") if self.state_path.is_file() else None
        self.events.append(("report", k, saved))


def _system(task):
    return ContinualSystem(ARCH.to_dict(), dataclasses.asdict(task.shape), settings_dict(CFG),
                           [list(e.classes) for e in task.experiences], task.scenario)


def test_each_stint_is_seeded_trained_saved_then_reported_and_a_rerun_resumes(tmp_path):
    task = build_task(TaskSettings("split_digits", {"classes_per_experience": 4}), seed=0)
    stints, path = plan(task, CFG), tmp_path / "state.pt"
    hooks = Recorder(path)
    at = run_stints(_system(task), stints[:2], CFG, hooks, LoopState(), state_path=path)
    assert (at.done, at.steps) == (2, 4) and at.trainer is not None
    assert hooks.events == [
        ("begin", 0, experience_seed(3, 0)), ("end", 0, 0), ("report", 0, {"done": 1, "steps": 2}),
        ("begin", 1, experience_seed(3, 1)), ("end", 1, 1), ("report", 1, {"done": 2, "steps": 4})]
    rest = Recorder(path)
    at = run_stints(_system(task), stints, CFG, rest, at, state_path=path)
    assert at.done == 3 and [e[:2] for e in rest.events] == [("begin", 2), ("end", 2), ("report", 2)]
    assert rest.events[0][2] == experience_seed(3, 2)


def test_a_checkpoint_is_replaced_whole_or_not_at_all(tmp_path):
    path = save_checkpoint(tmp_path / "deep" / "state.pt", {"done": 1, "t": torch.arange(3)})
    assert load_checkpoint(path, "state")["done"] == 1

    def torn(fh):
        fh.write(b"half a state")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, torn)
    assert load_checkpoint(path, "state")["done"] == 1           # the old state, intact
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]  # and no temporary left
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DynasError, match=r"state.pt: unreadable resume state \("):
        load_checkpoint(path, "resume state")
