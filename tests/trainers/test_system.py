"""The Lightning system: loss terms, replay mixing, task-IL masks, router biases,
checkpointed replay buffers and divergence."""
import dataclasses

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.settings import (CurriculumSettings, ReplaySettings, TaskSettings, TrainingSettings,
                                   settings_dict)
from dynas.trainers.loop import make_trainer, quiet_lightning
from dynas.trainers.results import NonFiniteLoss
from dynas.trainers.system import LOSS_TERMS, ContinualSystem
from dynas.trainers.tasks import build_task

STEPS = 12


def moe_arch(balance="aux_loss"):
    ffn = FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2), balance=balance)
    return ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), ffn),))


@pytest.fixture(scope="module")
def task():
    return build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)


def make_system(task, arch=None, scenario="class_il", **training):
    cfg = TrainingSettings(**({"steps_per_experience": STEPS, "batch_size": 16, "device": "cpu"} | training))
    torch.manual_seed(0)
    return ContinualSystem((arch or moe_arch()).to_dict(), dataclasses.asdict(task.shape),
                           settings_dict(cfg), [list(e.classes) for e in task.experiences], scenario)


def train_experience(system, task, k, steps=STEPS):
    system.begin_experience(k, task.experiences[k], steps, k + 1, seed=k)
    with quiet_lightning():
        trainer = make_trainer(system.cfg, steps)
        trainer.fit(system)
    return trainer


def test_every_loss_term_is_logged(task):
    system = make_system(task, replay=ReplaySettings("reservoir", 100, der_alpha=0.5))
    trainer = train_experience(system, task, 0)
    logged = system.last_terms
    assert {f"train/{t}" for t in LOSS_TERMS} | {"train/loss"} <= set(logged)
    assert trainer.global_step == STEPS
    assert logged["train/task"] > 0 and logged["train/balance"] > 0


def test_replay_is_mixed_into_the_next_experience(task):
    system = make_system(task, replay=ReplaySettings("class_balanced", 60, der_alpha=0.3))
    train_experience(system, task, 0)
    assert len(system.replay) == 60
    assert set(system.replay.class_counts()) <= set(task.experiences[0].classes)
    train_experience(system, task, 1)
    logged = system.last_terms
    assert logged["train/replay"] > 0 and logged["train/der"] > 0
    counts = system.replay.class_counts()
    assert set(counts) == set(range(10))          # both experiences now in memory


def test_total_loss_weights_each_term_explicitly(task):
    system = make_system(task, replay=ReplaySettings("reservoir", 10, weight="inverse_t", der_alpha=0.5))
    system.seen = 4
    terms = {name: torch.tensor(float(i + 1)) for i, name in enumerate(LOSS_TERMS)}
    w = system.cfg.loss_weights
    w = dataclasses.replace(w, router_entropy=0.25, router_l1=0.125)
    system.cfg = dataclasses.replace(system.cfg, loss_weights=w)
    expected = 1 + 2 / 4 + 0.5 * 3 + w.balance * 4 + w.z_loss * 5 + w.span * 6 + 0.25 * 7 + 0.125 * 8
    assert system._total(terms).item() == pytest.approx(expected)


def test_task_il_restricts_each_sample_to_its_experience(task):
    system = make_system(task, scenario="task_il")
    y = torch.tensor([0, 7, 4, 9])
    mask = system._task_mask(y)
    assert mask.shape == (4, 10)
    assert mask[0].nonzero().flatten().tolist() == list(task.experiences[0].classes)
    assert mask[1].nonzero().flatten().tolist() == list(task.experiences[1].classes)
    assert make_system(task)._task_mask(y) is None         # class-IL: all classes


def test_bias_balancing_moves_the_router_biases(task):
    system = make_system(task, arch=moe_arch("bias"))
    bias = [b for n, b in system.model.named_buffers() if n.endswith("selection_bias")]
    assert bias and all((b == 0).all() for b in bias)
    train_experience(system, task, 0)
    assert any((b != 0).any() for b in bias)


def test_checkpoint_carries_the_replay_buffer(task, tmp_path):
    system = make_system(task, replay=ReplaySettings("reservoir", 40))
    trainer = train_experience(system, task, 0)
    path = tmp_path / "system.ckpt"
    trainer.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["replay"]["size"] == 40
    loaded = ContinualSystem.load_from_checkpoint(path, weights_only=True)
    assert torch.equal(loaded.replay.x[:40], system.replay.x[:40])
    assert loaded.replay.seen == system.replay.seen


def test_curriculum_promotions_happen_inside_training(task):
    system = make_system(task, curriculum=CurriculumSettings(
        kind="entropy", threshold=0.0, patience=1, eval_every=3))
    train_experience(system, task, 0)
    log = system.curriculum.log
    assert [e["stage"] for e in log] == [0, 1, 2]
    assert [e["step"] for e in log] == [0, 3, 6] and log[1]["reason"] == "accuracy"


def test_huge_learning_rate_raises_non_finite_loss(task):
    system = make_system(task, lr=100.0)
    with pytest.raises(NonFiniteLoss, match="experience 0"):
        train_experience(system, task, 0)


def test_nan_loss_term_raises_non_finite_loss(task, monkeypatch):
    system = make_system(task)
    monkeypatch.setattr("dynas.trainers.system.cross_entropy", lambda logits, y: logits.sum() * float("nan"))
    with pytest.raises(NonFiniteLoss, match="task=nan"):
        train_experience(system, task, 0)


def test_random_twin_ignores_the_task_levels():
    task = build_task(TaskSettings("sorting", {"n_train": 30, "n_val": 10, "n_test": 10}), seed=0)
    assert task.experiences[0].levels is not None
    for kind, uses_task_levels in (("entropy", True), ("random", False)):
        system = make_system(task, arch=ArchConfig(16, (LayerConfig(AttentionConfig("full", 2),
                                                                    FFNConfig("dense", 2)),)),
                             scenario=task.scenario, curriculum=CurriculumSettings(kind=kind))
        system.begin_experience(0, task.experiences[0], 10, 1, seed=0)
        assert (system.curriculum.task_levels is not None) == uses_task_levels
        assert system.curriculum.num_levels == int(task.experiences[0].levels.max()) + 1
