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


def shrink_under_adam(hold: int, steps: int) -> list[float]:
    """Spans at z = max_span (every key on the mask's flat part: no task gradient) under
    Adam with only the L1 penalty: the span after each step."""
    attn = DynamicSpanAttention(D, 2, 16, causal=True, penalty_hold=hold)
    opt = torch.optim.Adam([attn.span_fraction], lr=0.05)
    x = torch.randn(2, 16, D)
    out = []
    for _ in range(steps):
        y, aux = attn(x)
        loss = y.sum() * 0 + aux["span"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(float(attn.spans().detach().max()))
    return out


def test_the_penalty_held_for_n_steps_leaves_the_span_then_shrinks_it():
    held = shrink_under_adam(hold=5, steps=10)
    assert held[:5] == [16.0] * 5                      # no gradient at all while held
    assert held[9] < held[5] < 16.0                    # then Adam's step of lr x max_span
    assert shrink_under_adam(hold=0, steps=1)[0] < 16.0   # off: the old behaviour


def test_a_ramped_l1_weight_does_not_slow_the_shrink_under_adam():
    """Why a hold and not a ramp: Adam's step does not scale with the weight. A weight
    ramped linearly from 0 over 20 steps moves the span about as far as the full weight."""
    def shrink(weights: list[float]) -> float:
        attn = DynamicSpanAttention(D, 2, 16, causal=True)
        opt = torch.optim.Adam([attn.span_fraction], lr=0.01)
        for weight in weights:
            opt.zero_grad()
            (weight * attn(torch.randn(2, 16, D))[1]["span"]).backward()
            opt.step()
        return 1.0 - float(attn.span_fraction.detach()[0])
    ramped, full = shrink([0.1 * (t + 1) / 20 for t in range(20)]), shrink([0.1] * 20)
    assert full == pytest.approx(0.2, rel=0.01)       # lr a step, 20 steps
    assert ramped > 0.8 * full                        # the ramp kept less than 20% of it


def test_the_hold_counts_training_steps_only_and_restarts_with_each_experience():
    attn = DynamicSpanAttention(D, 2, 16, causal=True, penalty_hold=2)
    x = torch.randn(1, 16, D)
    attn.eval()
    assert float(attn(x)[1]["span"].detach()) == 1.0            # evaluation: the penalty, not counted
    attn.train()
    assert [float(attn(x)[1]["span"].detach()) for _ in range(3)] == [0.0, 0.0, 1.0]
    attn.new_experience()
    assert float(attn(x)[1]["span"].detach()) == 0.0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_a_bad_penalty_hold_is_refused(bad):
    with pytest.raises(ValueError, match="penalty_hold"):
        DynamicSpanAttention(D, 2, 16, penalty_hold=bad)


@pytest.mark.parametrize("flag, bad", [("--penalty-hold", "-1"), ("--penalty-hold", "x"),
                                       ("--penalty-hold", "2.5"), ("--warmup", "1"),
                                       ("--warmup", "-0.1"), ("--warmup", "x")])
def test_the_benchmark_refuses_a_bad_hold_or_warmup_in_one_line_with_exit_2(flag, bad, capsys):
    from benchmarks import span_range
    with pytest.raises(SystemExit) as stop:
        span_range.parse([flag, bad])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and flag in err, err


def test_the_benchmark_passes_a_good_hold_and_warmup_through():
    from benchmarks import span_range
    args = span_range.parse(["--penalty-hold", "150", "--warmup", "0.05", "--lr-schedule", "cosine"])
    assert (args.penalty_hold, args.warmup, args.lr_schedule) == (150, 0.05, "cosine")
    with span_range.span_options(1.0, True, True, args.penalty_hold):
        assert DynamicSpanAttention(D, 2, 16).penalty_hold == 150
    assert DynamicSpanAttention(D, 2, 16).penalty_hold == 0


def test_a_training_config_holds_the_penalty_of_every_span_it_trains():
    task = build_task(TaskSettings("span_range", {"distances": [3, 9], "seq_len": 16,
                                                  "n_train": 32, "n_val": 8, "n_test": 8}))
    attention = AttentionConfig("dynamic_span", 2, max_span=16)
    arch = ArchConfig(D, tuple(LayerConfig(attention, FFNConfig("dense", expansion=2)) for _ in range(2)))
    for hold in (0, 7):
        cfg = TrainingSettings(loss_weights=LossWeights(span=0.1, span_hold=hold))
        system = ContinualSystem(arch.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                                 [list(e.classes) for e in task.experiences], task.scenario)
        system.begin_experience(0, task.experiences[0], 4, 1, seed=0)
        spans = [m for m in system.model.modules() if isinstance(m, DynamicSpanAttention)]
        assert len(spans) == 2 and all(m.penalty_hold == hold for m in spans)
        spans[0].train()
        assert (spans[0].penalty().item() == 0.0) == (hold > 0)    # held: no L1 in the first steps
