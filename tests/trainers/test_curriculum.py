"""The curriculum: pacing, masking schedules, levels, the sampler and promotion."""
import math

import pytest
import torch
from torch.utils.data import TensorDataset

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.settings import CurriculumSettings
from dynas.trainers.curriculum import (Curriculum, CurriculumBatchSampler, apply_input_mask, competence,
                                 mask_ratio, quantile_levels)
from dynas.trainers.evaluation import difficulty_scores
from dynas.trainers.model import build_model


# --- pacing ------------------------------------------------------------------------------
def test_sqrt_pacing_follows_the_formula():
    c0, horizon = 0.25, 100
    for t in (0, 10, 50, 99):
        assert competence(t, horizon, c0, "sqrt") == pytest.approx(
            min(1.0, math.sqrt(c0 ** 2 + (1 - c0 ** 2) * t / horizon)))
    assert competence(0, horizon, c0, "sqrt") == pytest.approx(c0)
    assert competence(horizon, horizon, c0, "sqrt") == 1.0
    assert competence(5 * horizon, horizon, c0, "sqrt") == 1.0


def test_linear_and_step_pacing():
    assert competence(0, 100, 0.2, "linear") == pytest.approx(0.2)
    assert competence(50, 100, 0.2, "linear") == pytest.approx(0.6)
    assert competence(100, 100, 0.2, "linear") == 1.0
    # step with 3 levels: plateaus c0, (c0+1)/2, 1 on thirds of the horizon
    values = [competence(t, 90, 0.4, "step", levels=3) for t in (0, 29, 30, 59, 60, 89, 200)]
    assert values == pytest.approx([0.4, 0.4, 0.7, 0.7, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("pacing", ["sqrt", "linear", "step"])
def test_pacing_is_monotone_and_bounded(pacing):
    values = [competence(t, 40, 0.1, pacing) for t in range(60)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(0.1) and values[-1] == 1.0


# --- masking schedules ---------------------------------------------------------------------
@pytest.mark.parametrize("schedule, start, end", [
    ("none", 0.0, 0.0), ("fixed_0.15", 0.15, 0.15), ("fixed_0.40", 0.40, 0.40),
    ("0.15->0.50", 0.15, 0.50), ("0.50->0.15", 0.50, 0.15),
])
def test_mask_schedule_endpoints(schedule, start, end):
    total = 50
    assert mask_ratio(schedule, 0, total) == pytest.approx(start)
    assert mask_ratio(schedule, total - 1, total) == pytest.approx(end)
    assert mask_ratio(schedule, total // 2, total) == pytest.approx((start + end) / 2, abs=0.01)


def test_input_mask_replaces_tokens_and_zeroes_patches():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 9, (200, 50))
    masked = apply_input_mask(tokens, 0.4, g, mask_id=0)
    hit = masked == 0
    assert hit.float().mean().item() == pytest.approx(0.4, abs=0.02)
    assert torch.equal(masked[~hit], tokens[~hit])
    patches = torch.randn(100, 16, 4)
    zeroed = apply_input_mask(patches, 0.15, g)
    rows_zero = (zeroed == 0).all(-1)
    assert rows_zero.float().mean().item() == pytest.approx(0.15, abs=0.02)
    assert apply_input_mask(patches, 0.0, g) is patches


# --- levels, sampler, promotion ------------------------------------------------------------
def make_curriculum(n=90, **settings):
    base = dict(kind="entropy", pacing="linear", levels=3, start_competence=0.1,
                threshold=0.8, patience=2, eval_every=5)
    cfg = CurriculumSettings(**(base | settings))
    return Curriculum(cfg, experience=0, total_steps=200, num_train=n)


def test_quantile_levels_cut_equal_bands_easiest_first():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    assert quantile_levels(scores, 3).tolist() == [2, 0, 1, 1, 2, 0]


def test_sampler_draws_only_from_the_allowed_easiest_fraction():
    cur = make_curriculum()
    scores = torch.randperm(90).float()               # difficulty = a random permutation
    cur.begin_stage(0, scores)
    g = torch.Generator().manual_seed(0)
    # step 0: competence 0.1 -> the 9 easiest
    drawn = torch.cat([cur.draw(64, 0, g) for _ in range(20)])
    assert set(scores[drawn].tolist()) <= set(range(9))
    assert len(set(drawn.tolist())) == 9
    # later steps: pacing allows more, but stage 0 holds only the easiest third
    assert cur.allowed(10) == math.ceil((0.1 + 0.9 * 10 / 100) * 90) == 18
    drawn = torch.cat([cur.draw(64, 90, g) for _ in range(20)])
    assert scores[drawn].max().item() == 29
    cur.promote()
    cur.begin_stage(90, scores, reason="accuracy")
    drawn = torch.cat([cur.draw(64, 90, g) for _ in range(20)])
    assert scores[drawn].max().item() == 59


def test_task_levels_define_the_stages():
    levels = torch.tensor([2, 0, 1, 0, 2, 1])
    cfg = CurriculumSettings(kind="entropy", start_competence=1.0, eval_every=1)
    cur = Curriculum(cfg, experience=0, total_steps=10, num_train=6, task_levels=levels)
    assert cur.num_levels == 3
    cur.begin_stage(0, torch.zeros(6))
    g = torch.Generator().manual_seed(0)
    assert set(cur.draw(100, 5, g).tolist()) == {1, 3}


def test_promotion_needs_patience_consecutive_successes():
    cur = make_curriculum(threshold=0.8, patience=2)
    cur.begin_stage(0, torch.rand(90))
    decisions = [cur.observe(a) for a in (0.9, 0.7, 0.85, 0.95)]
    assert decisions == [False, False, False, True]


def test_checks_are_due_every_eval_every_steps_from_the_stage_start():
    cur = make_curriculum(eval_every=5)
    cur.begin_stage(0, torch.rand(90))
    assert [s for s in range(1, 21) if cur.due(s)] == [5, 10, 15, 20]
    cur.promote()
    cur.begin_stage(12, torch.rand(90), reason="accuracy")
    assert [s for s in range(13, 30) if cur.due(s)] == [17, 22, 27]
    cur.promote()
    cur.begin_stage(30, torch.rand(90), reason="accuracy")
    assert cur.last_stage and not any(cur.due(s) for s in range(31, 60))


def test_max_stage_steps_caps_a_stage():
    cur = make_curriculum(max_stage_steps=7)
    cur.begin_stage(3, torch.rand(90))
    assert not cur.capped(9) and cur.capped(10)


def test_stage_switches_are_logged():
    cur = make_curriculum()
    cur.begin_stage(0, torch.rand(90))
    cur.promote()
    cur.begin_stage(15, torch.rand(90), reason="accuracy", val_accuracy=0.85)
    assert [(e["step"], e["stage"], e["reason"]) for e in cur.log] == [(0, 0, "start"), (15, 1, "accuracy")]
    assert set(cur.log[1]) == {"experience", "step", "stage", "competence", "reason", "val_accuracy"}


def test_val_samples_fall_in_the_train_band_of_their_score():
    cur = make_curriculum(n=6)
    train = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])     # bands {0,1} {2,3} {4,5}
    cur.begin_stage(0, train, val_scores=torch.tensor([0.5, 1.0, 1.5, 3.0, 4.5, 9.0]))
    assert cur.val_levels.tolist() == [0, 0, 1, 1, 2, 2]
    assert cur.val_subset().tolist() == [0, 1]


def test_plain_sampler_is_shuffling_with_a_constant_length():
    sampler = CurriculumBatchSampler(10, 4, steps=5, seed=0)
    batches = list(sampler)
    assert len(sampler) == 5 and len(batches) == 5 and all(len(b) == 4 for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(flat[:10]) == list(range(10))           # one full pass before repeats


# --- scores -----------------------------------------------------------------------------
def test_random_twin_differs_from_the_entropy_order():
    torch.manual_seed(0)
    shape = TaskShape(seq_len=4, num_classes=4, input_dim=3)
    arch = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),))
    model = build_model(arch, shape)
    data = TensorDataset(torch.randn(64, 4, 3), torch.randint(0, 2, (64,)))
    common = dict(classes=(0, 1), num_classes=4, batch_size=16, device=torch.device("cpu"))
    entropy = difficulty_scores(model, data, kind="entropy", **common)
    again = difficulty_scores(model, data, kind="entropy", **common)
    assert torch.equal(entropy, again) and (entropy >= 0).all() and (entropy <= math.log(2) + 1e-6).all()
    g = torch.Generator().manual_seed(0)
    rand = difficulty_scores(model, data, kind="random", generator=g, **common)
    assert not torch.equal(torch.argsort(entropy), torch.argsort(rand))
    loss = difficulty_scores(model, data, kind="loss", **common)
    assert loss.shape == (64,) and (loss > 0).all()
