"""Contract of the whole-model kinds (tokens, stem, norm, head) and the reference MLP
on the torch side: shapes and gradients, the cost model's numbers, and what each kind
computes. (Every spec has a builder and every builder a spec: ``tests/test_registries.py``.)"""
from __future__ import annotations

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import estimate_cost
from dynas.search_space.reference import MLPReference
from dynas.trainers.model import build_model
from dynas.trainers.modules import BUILDERS, Block, DenseFFN, measured_flops
from dynas.trainers.modules.ends import Retokenise, to_image
from dynas.trainers.reference import ReferenceMLP
from dynas.trainers.tasks.images import to_patches
from tests.kind_cases import all_model_kinds

SHAPE = TaskShape(seq_len=16, num_classes=5, input_dim=4, image_side=8)   # 8x8, 2x2 patches
LAYERS = (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),
          LayerConfig(AttentionConfig("identity", 1), FFNConfig("dense", 2)))


@pytest.mark.parametrize("family,kind", all_model_kinds())
def test_each_kind_builds_trains_and_is_costed_exactly(family, kind):
    torch.manual_seed(0)
    arch = ArchConfig(16, LAYERS, **{family: kind})
    model = build_model(arch, SHAPE)
    x = torch.randn(3, 16, 4)
    out = model(x)
    assert out.logits.shape == (3, 5)
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    cost = estimate_cost(arch, SHAPE)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert measured_flops(model, x[:1]) == pytest.approx(cost.flops, rel=0.02)


def test_retokenising_recuts_the_same_pixels():
    images = torch.arange(2 * 64.0).reshape(2, 8, 8)
    x = to_patches(images, 2)
    assert torch.equal(to_image(x, 8), images)
    assert torch.equal(Retokenise(8, rows=True)(x), images)
    assert torch.equal(Retokenise(8, size=4)(x), to_patches(images, 4))
    assert torch.equal(Retokenise(8, size=8)(x), images.reshape(2, 1, 64))


def test_post_norm_block_normalises_after_each_residual():
    torch.manual_seed(0)
    ffn = DenseFFN(8, 16)
    block = Block(None, ffn, 8, post=True)
    x = torch.randn(2, 3, 8)
    assert torch.allclose(block(x).x, block.norm_ffn(x + ffn(x)))
    pre = Block(None, ffn, 8)
    assert torch.allclose(pre(x).x, x + ffn(pre.norm_ffn(x)))


def test_cls_head_prepends_its_token_and_reads_only_that_one():
    torch.manual_seed(0)
    head = BUILDERS["head"].get("cls")(16, 4, 5, False)
    h = torch.randn(2, 4, 16)
    with_cls = head.prepend(h)
    assert with_cls.shape == (2, 5, 16) and torch.equal(with_cls[:, 1:], h)
    assert torch.equal(with_cls[0, 0], head.cls[0, 0])
    assert torch.allclose(head(with_cls), with_cls[:, 0] @ head.weight.T + head.bias)


def test_flatten_head_sees_every_position_without_token_mixing():
    torch.manual_seed(0)
    model = build_model(ArchConfig(16, LAYERS[1:], head="flatten"), SHAPE)   # identity only
    x = torch.randn(1, 16, 4)
    y = x.clone()
    y[0, 5] += 1.0
    assert not torch.allclose(model(x).logits, model(y).logits)


def test_reference_mlp_is_the_textbook_network():
    ref = MLPReference(12, 2)
    model = build_model(ref, SHAPE)
    assert isinstance(model, ReferenceMLP)
    assert [m.out_features for m in model.net if isinstance(m, torch.nn.Linear)] == [12, 12, 5]
    x = torch.randn(3, 16, 4)
    assert model(x).logits.shape == (3, 5) and model(x).aux_losses == {}
    cost = estimate_cost(ref, SHAPE)
    assert cost.params == sum(p.numel() for p in model.parameters())
    assert measured_flops(model, x[:1]) == cost.flops


def test_fit_trains_with_the_settings_sampled_with_the_arch(tmp_path):
    from dynas.search_space.arch import TrainingChoices
    from dynas.search_space.settings import TaskSettings, TrainingSettings
    from dynas.trainers.fitting import STATE_FILE, fit
    from dynas.trainers.tasks import build_task

    arch = ArchConfig(8, LAYERS[1:], training=TrainingChoices(lr=0.02, dropout=0.25))
    task = build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)
    fit(arch, task, TrainingSettings(steps_per_experience=1, batch_size=8, device="cpu"),
        checkpoint_dir=tmp_path)
    used = torch.load(tmp_path / STATE_FILE, weights_only=True)["fingerprint"]["training"]
    assert (used["lr"], used["dropout"]) == (0.02, 0.25)


def test_dropout_reaches_every_residual_branch_and_mlp_layer():
    from dynas.search_space.settings import TrainingSettings, settings_dict
    from dynas.trainers.system import ContinualSystem

    for model in (ArchConfig(16, LAYERS), MLPReference(12, 2)):
        system = ContinualSystem(model.to_dict(), {"seq_len": 16, "num_classes": 5, "input_dim": 4,
                                                   "image_side": 8},
                                 settings_dict(TrainingSettings(dropout=0.3)), [[0, 1], [2, 3, 4]])
        drops = [m.p for m in system.model.modules() if isinstance(m, torch.nn.Dropout)]
        assert drops and set(drops) == {0.3}


def test_er_ace_restricts_the_incoming_batch_to_its_classes_once_replay_has_data():
    from dynas.search_space.settings import ReplaySettings, TrainingSettings, settings_dict
    from dynas.trainers.system import ContinualSystem

    cfg = TrainingSettings(replay=ReplaySettings("class_balanced", 10, loss="ace"))
    system = ContinualSystem(MLPReference(4, 1).to_dict(), {"seq_len": 16, "num_classes": 5,
                             "input_dim": 4, "image_side": 8}, settings_dict(cfg), [[0, 1], [2, 3, 4]])
    logits, y = torch.zeros(3, 5), torch.tensor([2, 3, 3])
    assert torch.equal(system._incoming(logits, y), logits)        # nothing to replay yet
    system.replay.add(torch.randn(2, 16, 4), torch.tensor([0, 1]))
    out = system._incoming(logits, y)
    assert torch.isinf(out[:, [0, 1, 4]]).all() and torch.isfinite(out[:, [2, 3]]).all()


def test_a_fit_saved_before_the_new_training_settings_still_resumes(tmp_path):
    from dynas.search_space.settings import TaskSettings, TrainingSettings
    from dynas.trainers.fitting import STATE_FILE, fit
    from dynas.trainers.tasks import build_task

    arch = ArchConfig(8, LAYERS[1:])
    task = build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)
    cfg = TrainingSettings(steps_per_experience=1, batch_size=8, device="cpu")
    first = fit(arch, task, cfg, checkpoint_dir=tmp_path)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    del state["fingerprint"]["training"]["dropout"], state["fingerprint"]["training"]["replay"]["loss"]
    torch.save(state, tmp_path / STATE_FILE)
    again = fit(arch, task, cfg, checkpoint_dir=tmp_path, resume=True)
    assert again.acc_matrix == first.acc_matrix
