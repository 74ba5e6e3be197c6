"""Pruning's recovery: it rehearses every experience seen, class-balanced; distillation
moves the student towards the teacher; Taylor importance drops what the loss does not
use; iterative plans compose into one plan on the original model."""
import copy

import pytest
import torch

from dynas.analysis.cli import main
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.settings import TaskSettings
from dynas.trainers.evaluation import cross_entropy
from dynas.trainers.model import build_model
from dynas.trainers.pruning import PruneSpec, apply_plan, compose, gradient_importance, make_plan
from dynas.trainers.recovery import (kl_divergence, prune_and_recover, recover, replay_sample, round_specs,
                                     teacher_logits)
from dynas.trainers.recovery_settings import RecoverySettings
from dynas.trainers.tasks import build_task

TASK = TaskSettings("split_digits", {"patch": 4})               # 5 experiences x 2 classes
DENSE = ArchConfig(16, (LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=4)),))
MOE = ArchConfig(16, (
    LayerConfig(AttentionConfig("full", 4), FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2))),
    LayerConfig(AttentionConfig("full", 4), FFNConfig("glu", expansion=4)),
))


@pytest.fixture(scope="module")
def task():
    return build_task(TASK, seed=0)


def model_of(arch, task, seed=0):
    torch.manual_seed(seed)
    return build_model(arch, task.shape).eval()


def test_the_replay_sample_is_class_balanced_over_every_seen_experience(task):
    sample = replay_sample(task, per_class=7)
    assert torch.bincount(sample.y, minlength=10).tolist() == [7] * 10
    assert torch.bincount(sample.experience).tolist() == [14] * 5
    for e, exp in enumerate(task.experiences):                    # each row is a training sample of its experience
        x = sample.x[sample.experience == e]
        train = exp.train.tensors[0].flatten(1)
        assert (x.flatten(1)[:, None] == train[None]).all(-1).any(1).all()
    early = replay_sample(task, per_class=7, seen=2)
    assert set(early.y.tolist()) == set(task.experiences[0].classes + task.experiences[1].classes)


def test_recovery_draws_its_batches_from_every_seen_experience(task):
    teacher = model_of(DENSE, task)
    student = copy.deepcopy(teacher)
    apply_plan(student, make_plan(student, PruneSpec(heads=2, ffn=0.5), {}))
    sample = replay_sample(task, per_class=5)
    seen: list[torch.Tensor] = []
    student.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach()))
    recover(student, teacher, sample, RecoverySettings(steps=10, batch_size=16))
    drawn = torch.cat(seen).flatten(1)                            # (10 * 16, ...)
    rows = torch.cdist(drawn, sample.x.flatten(1)).argmin(1)
    assert set(sample.experience[rows].tolist()) == set(range(task.num_experiences))


def test_distillation_lowers_the_kl_to_the_teacher(task):
    """Seeded: 40 steps of pure distillation halve the KL; label loss alone does not get as close."""
    teacher = model_of(DENSE, task)
    sample = replay_sample(task, per_class=10)
    targets = teacher_logits(teacher, sample.x)

    def kl_after(steps, alpha):
        student = copy.deepcopy(teacher)
        apply_plan(student, make_plan(student, PruneSpec(heads=1, ffn=0.25), {}))
        recover(student, teacher, sample, RecoverySettings(steps=steps, lr=3e-3, alpha=alpha, batch_size=32))
        with torch.no_grad():
            return float(kl_divergence(student(sample.x).logits, targets, sample.y, 2.0))

    before, distilled = kl_after(0, 1.0), kl_after(40, 1.0)
    assert distilled < 0.5 * before and distilled < kl_after(40, 0.0)


def test_taylor_importance_ranks_a_head_and_channels_the_output_never_reads_last(task):
    model = model_of(DENSE, task)
    with torch.no_grad():
        model.layers[0].attn.proj.out.weight[:, 4:8] = 0          # head 1 (Dh = 4) is never read
        model.layers[0].ffn.down.weight[:, :16] = 0               # channels 0-15 are never read
    sample = replay_sample(task, per_class=4)
    data = [(sample.x[i:i + 8], sample.y[i:i + 8]) for i in range(0, len(sample), 8)]
    scores = gradient_importance(model, data, cross_entropy)
    assert scores["layers.0.heads"][1] == 0 and (scores["layers.0.heads"][[0, 2, 3]] > 0).all()
    plan = make_plan(model, PruneSpec(heads=3, ffn=0.75), {}, scores)
    assert plan[0]["heads"] == [0, 2, 3] and plan[0]["ffn"] == list(range(16, 64))
    assert all(p.grad is None for p in model.parameters())


def test_plans_of_successive_rounds_compose_into_one_plan_on_the_original(task):
    model = model_of(MOE, task)
    loads = {"layers.0.ffn": torch.tensor([3.0, 9.0, 1.0, 5.0])}
    first = make_plan(model, PruneSpec(heads=3, ffn=0.75), {})
    stepwise = copy.deepcopy(model)
    apply_plan(stepwise, first)
    second = make_plan(stepwise, PruneSpec(experts=2, heads=2, ffn=0.5), {"layers.0.ffn": loads["layers.0.ffn"]})
    apply_plan(stepwise, second)
    direct = copy.deepcopy(model)
    apply_plan(direct, compose(first, second))
    a, b = stepwise.state_dict(), direct.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rounds_step_down_to_the_spec():
    specs = round_specs(PruneSpec(experts=2, heads=2, ffn=0.5), heads=4, rounds=2)
    assert [(s.experts, s.heads) for s in specs] == [(0, 3), (2, 2)]
    assert specs[0].ffn * specs[1].ffn == pytest.approx(0.5)
    assert round_specs(PruneSpec(ffn=0.5), heads=4, rounds=1) == [PruneSpec(ffn=0.5)]


def test_prune_and_recover_leaves_the_teacher_alone_and_returns_the_plans_model(task):
    teacher = model_of(DENSE, task)
    state = {k: v.clone() for k, v in teacher.state_dict().items()}
    plan, student = prune_and_recover(teacher, task, PruneSpec(heads=2, ffn=0.5),
                                      RecoverySettings(steps=3, per_class=3, rounds=2), {})
    assert all(torch.equal(state[k], v) for k, v in teacher.state_dict().items())
    rebuilt = model_of(DENSE, task)
    apply_plan(rebuilt, plan)
    assert rebuilt.state_dict().keys() == student.state_dict().keys()
    assert all(rebuilt.state_dict()[k].shape == v.shape for k, v in student.state_dict().items())
    assert len(plan[0]["heads"]) == 2 and len(plan[0]["ffn"]) == 32


@pytest.mark.parametrize("flags, key", [(["--distil-weight", "2"], "--distil-weight"),
                                        (["--prune-rounds", "0"], "--prune-rounds"),
                                        (["--temperature", "0"], "--temperature")])
def test_bad_recovery_flags_are_one_line(tmp_path, capsys, flags, key):
    assert main(["compress", str(tmp_path), "--prune", "ffn=0.5", "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and key in err
