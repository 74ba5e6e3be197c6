"""The training recipe: each experience's fresh AdamW warms up (``training.warmup``),
then holds ``lr`` or decays on a cosine (``lr_schedule: cosine``, ``min_lr``), and the
global gradient norm is clipped (``grad_clip``); the settings round-trip and bad values are refused in
one line naming the key."""
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import load_experiment
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TaskSettings, TrainingSettings, settings_dict
from dynas.trainers.loop import make_trainer, quiet_lightning
from dynas.trainers.system import ContinualSystem, lr_factor
from dynas.trainers.tasks import build_task

from .test_system import moe_arch

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10
EXPERIMENT = """\
space: {layers: [1], d_model: [16], layer: {attention: {kind: full, heads: 2}, ffn: {kind: dense}}}
task: {name: split_digits}
training: {steps_per_experience: 5, device: cpu, RECIPE}
"""


class _Watch(L.Callback):
    """The learning rate of every optimiser step, and the gradient norm the optimiser
    used (after Lightning's clipping: the closure that makes and clips the gradients
    runs inside ``optimizer.step``, so a post-hook sees what the update used)."""

    def __init__(self):
        self.lrs: list[float] = []
        self.norms: list[float] = []

    def on_train_start(self, trainer, pl_module):
        def after_step(optimizer, args, kwargs):
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            self.lrs.append(optimizer.param_groups[0]["lr"])
        trainer.optimizers[0].register_step_post_hook(after_step)


@pytest.fixture(scope="module")
def task():
    return build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)


def train(task, experiences=1, **training):
    cfg = TrainingSettings(**({"steps_per_experience": STEPS, "batch_size": 16, "device": "cpu",
                               "seed": 0} | training))
    torch.manual_seed(0)
    system = ContinualSystem(moe_arch().to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                             [list(e.classes) for e in task.experiences])
    watches = []
    for k in range(experiences):
        watch = _Watch()
        system.begin_experience(k, task.experiences[k], STEPS, k + 1, seed=k)
        with quiet_lightning():
            make_trainer(system.cfg, STEPS, [watch]).fit(system)
        watches.append(watch)
    return watches


def test_constant_schedule_keeps_the_learning_rate(task):
    (watch,) = train(task, lr=0.01)
    assert watch.lrs == [0.01] * STEPS


def test_cosine_warms_up_then_decays_to_min_lr_in_every_experience(task):
    first, second = train(task, experiences=2, lr=0.01, lr_schedule="cosine", warmup=0.2, min_lr=0.1)
    for watch in (first, second):              # a fresh schedule with each fresh optimiser
        lrs = watch.lrs
        assert len(lrs) == STEPS
        assert lrs[0] == pytest.approx(0.005) and lrs[1] == pytest.approx(0.01)   # 2 warm-up steps
        assert all(a > b for a, b in zip(lrs[1:], lrs[2:]))                      # then strictly down
        assert lrs[-1] == pytest.approx(0.001)                                   # to min_lr x lr


def test_constant_schedule_with_warmup_ramps_then_holds(task):
    (watch,) = train(task, lr=0.01, warmup=0.3)
    assert watch.lrs == pytest.approx([0.01 / 3, 0.02 / 3, 0.01] + [0.01] * (STEPS - 3))


def test_lr_factor_is_one_at_the_peak_and_min_lr_at_the_end():
    f = lr_factor(0.0, 0.0, 5)
    assert [round(f(t), 6) for t in range(5)] == [1.0, round(0.5 * (1 + math.cos(math.pi / 4)), 6), 0.5,
                                                  round(0.5 * (1 + math.cos(3 * math.pi / 4)), 6), 0.0]
    assert lr_factor(0.5, 0.2, 1)(0) == 1.0    # one step: no warm-up ramp below it


def test_grad_clip_bounds_the_norm_the_optimiser_sees(task):
    (free,) = train(task)
    (clipped,) = train(task, grad_clip=0.05)
    assert max(free.norms) > 0.05              # the bound binds on this run
    assert max(clipped.norms) <= 0.05 * (1 + 1e-4)


def test_recipe_settings_round_trip():
    cfg = TrainingSettings(lr_schedule="cosine", warmup=0.1, min_lr=0.05, grad_clip=1.0)
    assert from_mapping(TrainingSettings, settings_dict(cfg), "training") == cfg
    assert TrainingSettings().lr_schedule == "constant" and TrainingSettings().grad_clip == 0.0


def test_recipe_from_a_file(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT.replace("RECIPE", "lr_schedule: cosine, warmup: 0.1, grad_clip: 1.0"))
    training = load_experiment(path).training
    assert (training.lr_schedule, training.warmup, training.min_lr, training.grad_clip) == ("cosine", 0.1, 0.0, 1.0)


BAD = [
    ("warmup: 1.0", "training.warmup: must be < 1 (a fraction of each experience's steps), got 1.0"),
    ("min_lr: -0.5", "training.min_lr: must be >= 0 (a fraction of lr), got -0.5"),
    ("grad_clip: -1", "training.grad_clip: must be >= 0 (0 = no clipping), got -1.0"),
    ("lr_schedule: linear", "training.lr_schedule: "),
]


@pytest.mark.parametrize("recipe, message", BAD, ids=[b[0] for b in BAD])
def test_bad_recipe_is_refused_naming_the_key(tmp_path, recipe, message):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT.replace("RECIPE", recipe))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_bad_recipe_exits_2_with_one_line(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(EXPERIMENT.replace("RECIPE", "warmup: 1.5"))
    done = subprocess.run([sys.executable, "-m", "dynas.analysis.cli", "space", "describe", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"dynas: error: {path}: training.warmup: must be < 1 (a fraction of each experience's steps), got 1.5"]
