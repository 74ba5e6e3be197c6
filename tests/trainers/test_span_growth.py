"""Learned spans move where the task needs them: from the whole window down to a
dependency's distance on ``span_range`` (fit, seeded), outward, through the
training probe, to a dependency the ramp never reached, and open again when a later
experience starts."""
import dataclasses

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import LossWeights, TaskSettings, TrainingSettings, settings_dict
from dynas.trainers.fitting import fit
from dynas.trainers.modules.span import DynamicSpanAttention
from dynas.trainers.system import ContinualSystem
from dynas.trainers.tasks import build_task

D, T, FAR = 16, 48, 20          # max_span 32: ramp 8, so FAR is 12 tokens past a span of 0


def reading_a_far_key(grow: bool, steps: int = 40) -> float:
    """One causal span layer whose projections are the identity, spans from 0: the last
    query u matches the key FAR tokens back, u + w (noise elsewhere), and the loss
    rewards reading w from it. Only the spans train; returns the longest span."""
    torch.manual_seed(0)
    attn = DynamicSpanAttention(D, 2, 32, causal=True, init_fraction=0.0, grow=grow)
    with torch.no_grad():
        attn.proj.qkv.weight.copy_(torch.eye(D).repeat(3, 1))
        attn.proj.qkv.bias.zero_()
        attn.proj.out.weight.copy_(torch.eye(D))
        attn.proj.out.bias.zero_()
    x = 0.1 * torch.randn(4, T, D)
    u, w = torch.randn(2, 4, D)
    u = 3 * u / u.norm(dim=1, keepdim=True)
    x[:, -1], x[:, -1 - FAR] = u, u + w
    opt = torch.optim.Adam([attn.span_fraction], lr=0.05)
    for _ in range(steps):
        y, _ = attn(x)
        loss = -(y[:, -1] * w).sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(attn.spans().detach().max())


def test_a_dependency_beyond_the_ramp_pulls_the_span_out_only_through_the_probe():
    grown, stuck = reading_a_far_key(True), reading_a_far_key(False)
    assert grown + 8 >= FAR          # the span's reach now covers the dependency
    assert stuck + 8 < FAR - 4       # the ramp alone never saw it


def test_spans_shrink_towards_the_needed_distance_in_a_seeded_run():
    task = build_task(TaskSettings("span_range", {"distances": [6], "seq_len": 32, "causal": True,
                                                  "n_train": 400, "n_val": 50, "n_test": 50}), seed=0)
    arch = ArchConfig(D, (LayerConfig(AttentionConfig("dynamic_span", 2, max_span=32),
                                      FFNConfig("dense", expansion=2)),))
    cfg = TrainingSettings(steps_per_experience=60, batch_size=32, lr=1e-2, seed=0, device="cpu",
                           loss_weights=LossWeights(span=0.1))
    spans = fit(arch, task, cfg).dynamics[-1]["spans"]["layers.0.attn"]["heads"]
    assert max(spans) < 32 - 8       # started at the whole window (32), moved down


def test_a_later_experience_reopens_the_spans_and_only_with_reopen():
    attn = DynamicSpanAttention(D, 2, 32, causal=True)
    attn.span_fraction.data = torch.tensor([0.1, 1.2])
    attn.new_experience()
    assert attn.span_fraction.tolist() == pytest.approx([1.0, 1.2])    # opened; a longer one kept
    kept = DynamicSpanAttention(D, 2, 32, causal=True, init_fraction=0.5, reopen=False)
    kept.span_fraction.data = torch.tensor([0.1, 0.2])
    kept.new_experience()
    assert kept.span_fraction.tolist() == pytest.approx([0.1, 0.2])


def test_the_trainer_reopens_spans_when_a_later_experience_begins_not_the_first():
    task = build_task(TaskSettings("span_range", {"distances": [3, 9], "seq_len": 16,
                                                  "n_train": 32, "n_val": 8, "n_test": 8}))
    arch = ArchConfig(D, (LayerConfig(AttentionConfig("dynamic_span", 2, max_span=16), FFNConfig("dense", expansion=2)),))
    system = ContinualSystem(arch.to_dict(), dataclasses.asdict(task.shape), settings_dict(TrainingSettings()),
                             [list(e.classes) for e in task.experiences], task.scenario)
    attn = system.model.layers[0].attn
    for index, opened in ((0, [0.25, 0.0]), (1, [1.0, 1.0])):
        attn.span_fraction.data = torch.tensor([0.25, 0.0])
        system.begin_experience(index, task.experiences[index], 4, index + 1, seed=0)
        assert attn.span_fraction.tolist() == pytest.approx(opened)
