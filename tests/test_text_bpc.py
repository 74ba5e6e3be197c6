"""The text_bpc benchmark's measurements on inputs whose answers are known."""
import math
import random
import zlib

import torch
from torch import nn

from benchmarks import text_bpc, text_bpc_report
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.trainers.modules.span import DynamicSpanAttention
from dynas.trainers.output import ModelOutput


class Uniform(nn.Module):
    """Equal logits over V symbols: log2 V bits on every character."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab

    def forward(self, x):
        return ModelOutput(torch.zeros(*x.shape, self.vocab), {}, {})


class Copy(Uniform):
    """Predicts that the next character repeats this one."""

    def forward(self, x):
        return ModelOutput(torch.nn.functional.one_hot(x, self.vocab).float(), {}, {})


def test_a_uniform_model_costs_log2_v_bits_per_character():
    ids = torch.randint(2, 98, (1000,), generator=torch.Generator().manual_seed(0))
    held = {c: text_bpc.heldout_windows(ids[i:], 64, 0)[0] for i, c in enumerate(("a", "b"))}
    bpc, acc, entry = text_bpc.heldout_bpc(Uniform(98), held, batch=4)
    assert all(math.isclose(v, math.log2(98), rel_tol=1e-6) for v in bpc.values())   # float32 logits
    assert set(acc) == {"a", "b", "all"} and all(v == 0.0 for v in acc.values())   # argmax id 0 never comes
    assert entry and all(v == {} for v in entry.values()), entry    # no span, no router: nothing to record


def test_heldout_windows_cover_exactly_the_scored_characters():
    ids = torch.arange(2, 2 + 100) % 98
    data, covered = text_bpc.heldout_windows(ids, 16, 0)
    x, y = data.tensors
    assert x.shape == (6, 16) and torch.equal(covered, ids[:97])
    assert torch.equal(torch.cat([x[:, :1].flatten()[:1], y.flatten()]), covered)


def test_compressed_bits_are_the_compressors_output_in_bits():
    text = b"the cat sat on the mat. " * 40
    bits = text_bpc.compressed_bits(text)
    assert bits["zlib -9"] == 8 * len(zlib.compress(text, 9))
    assert all(b / len(text) < 1.0 for b in bits.values())          # repetitive: far below 8


def test_conditional_cost_of_a_repeat_is_small_and_of_noise_is_not():
    rng = random.Random(0)
    noise, other = (bytes(rng.randrange(256) for _ in range(4000)) for _ in range(2))
    repeat = text_bpc.conditional_bits(noise, noise)
    fresh = text_bpc.conditional_bits(noise, other)
    for name in text_bpc.COMPRESSORS:
        assert fresh[name] / len(other) > 7.5                       # random bytes: ~8 bits each
        assert repeat[name] < 0.6 * fresh[name]


def test_baselines_all_is_total_bits_over_total_characters():
    covered = {"a": torch.full((500,), 5), "b": torch.arange(2, 502) % 98}
    base = text_bpc.baselines(torch.arange(300) % 98, covered, conditional=False)["alone"]
    for name in text_bpc.COMPRESSORS:
        total = sum(text_bpc.compressed_bits(text_bpc.as_bytes(v))[name] for v in covered.values())
        assert math.isclose(base["all"][name], total / 1000)
        assert base["a"][name] < base["b"][name]


def test_learning_rate_warms_up_then_decays_to_its_floor():
    f = [text_bpc.lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert math.isclose(f[0], 0.1) and math.isclose(f[9], 1.0) and math.isclose(f[10], 1.0)
    assert all(a >= b for a, b in zip(f[10:], f[11:])) and 0.1 <= f[-1] < 0.11


def test_spearman_of_monotone_reversed_and_constant_pairs():
    a = torch.tensor([1, 2, 2, 3, 4])
    assert math.isclose(text_bpc.spearman(a, a.float() ** 3), 1.0)
    assert math.isclose(text_bpc.spearman(a, -a.float()), -1.0)
    assert math.isnan(text_bpc.spearman(torch.full((5,), 2), a))


def test_a_spread_over_an_undefined_correlation_says_so():
    assert text_bpc_report.spread([math.nan, 0.5]) == "undefined"
    assert text_bpc_report.spread([1.0, 3.0], digits=1) == "2.0 ± 1.4"


def test_accuracy_is_the_share_of_next_characters_predicted_per_category_and_overall():
    same = torch.full((65,), 7)                                   # a repeat: every next character right
    alternating = torch.tensor([7, 8] * 64 + [7])                 # never a repeat
    mixed = torch.cat([torch.full((33,), 7), torch.tensor([8, 9] * 16)])    # 32 of 64 repeats
    held = {c: text_bpc.heldout_windows(ids, 16, 0)[0] for c, ids in
            (("same", same), ("alternating", alternating), ("mixed", mixed))}
    _, acc, _ = text_bpc.heldout_bpc(Copy(98), held, batch=3)       # batches cross window boundaries
    assert acc["same"] == 1.0 and acc["alternating"] == 0.0 and acc["mixed"] == 0.5
    assert math.isclose(acc["all"], (64 + 0 + 32) / (64 + 128 + 64))


def arch(att: AttentionConfig, ffn: FFNConfig) -> ArchConfig:
    return ArchConfig(64, (LayerConfig(att, ffn),) * 2, positions="rope")


def test_model_flops_are_static_without_dynamics_and_fall_with_realised_k_and_spans():
    moe = FFNConfig("moe", expansion=1, experts=8, router=RouterConfig("dynamic", 4, 0.5), capacity_factor=0.0)
    no_dynamics = {"spans": {}, "k_hist": {}}
    dense = text_bpc.model_flops(arch(AttentionConfig("full", 4), FFNConfig("dense", expansion=4)), 1024, no_dynamics)
    assert dense["model_flops"] == dense["model_flops_effective"]
    k1 = {"spans": {}, "k_hist": {f"layers.{i}.ffn": [0, 100, 0, 0, 0] for i in range(2)}}
    k2 = {"spans": {}, "k_hist": {f"layers.{i}.ffn": [0, 0, 100, 0, 0] for i in range(2)}}
    one, two = (text_bpc.model_flops(arch(AttentionConfig("full", 4), moe), 256, r) for r in (k1, k2))
    assert one["model_flops"] == two["model_flops"] and one["model_flops_effective"] < two["model_flops_effective"]
    span = arch(AttentionConfig("dynamic_span", 4, max_span=1024), FFNConfig("dense", expansion=4))
    short = {"spans": {f"layers.{i}.attn": [16.0] * 4 for i in range(2)}, "k_hist": {}}
    flops = text_bpc.model_flops(span, 1024, short)
    assert flops["model_flops_effective"] < 0.6 * flops["model_flops"]
    full = text_bpc.model_flops(arch(AttentionConfig("full", 4), FFNConfig("dense", expansion=4)), 1024, no_dynamics)
    assert flops["attention_flops"] < 0.1 * full["attention_flops"] == 0.1 * dense["attention_flops"]


def row(name: str, seed: int, bpc: float, **extra) -> dict:
    return {"name": name, "seed": seed, "bpc": {"all": bpc}, "spans": {}, "crops": {}, **extra}


def test_the_attention_study_checks_claim_a_on_the_seeds_both_models_ran(capsys):
    rows = [row("full", 0, 2.0, attention_flops=100.0, model_flops_effective=1000.0, accuracy={"all": 0.5}),
            row("full", 1, 2.2, attention_flops=100.0, model_flops_effective=1000.0, accuracy={"all": 0.5}),
            row("dynamic_span", 0, 2.1, attention_flops=58.0, model_flops_effective=800.0, accuracy={"all": 0.4935}),
            row("full", 9, 9.9, attention_flops=100.0, model_flops_effective=1000.0, accuracy={"all": 0.1})]
    by = {n: [r for r in rows if r["name"] == n] for n in ("full", "dynamic_span")}
    text_bpc_report.attention_study(text_bpc_report.paired(by, "full", "dynamic_span"), 10)
    out = capsys.readouterr().out
    assert "dynamic_span: 42.0% less attention FLOPs at 98.7% of full's next-character accuracy, +0.100 bpc; " \
           "seeds [0]" in out
    assert "0.800" in out                                         # model FLOPs per token vs full


def test_the_router_study_says_whether_dynamic_k_lowered_the_bits(capsys):
    hist = {"layers.0.ffn": 0.1}
    rows = [row("top2", 0, 3.0, expert_flops_per_token=2.0, realised_k=2.0, model_flops_effective=100.0,
                spearman_k_loss={"layers.0.ffn": math.nan}),
            row("dynamic_k", 0, 3.1, expert_flops_per_token=1.3, realised_k=1.3, model_flops_effective=93.0,
                spearman_k_loss=hist)]
    by = {n: [r for r in rows if r["name"] == n] for n in ("top2", "dynamic_k")}
    text_bpc_report.router_study(by, ["top2", "dynamic_k"], 1)
    out = capsys.readouterr().out
    assert "dynamic_k: 35.0% fewer expert FLOPs, 7.0% fewer model FLOPs per token, +0.100 bpc vs top2 (not lower)" in out


def test_a_few_training_steps_of_every_model_run_and_log_the_span_crops(capsys):
    args = text_bpc.parser().parse_args(["--seq-len", "32", "--batch", "2", "--steps", "2", "--log-every", "1",
                                         "--d-model", "16", "--heads", "2", "--window", "8"])
    stream = torch.arange(400) % 98
    for name, (spec, weights) in text_bpc.architectures(args).items():
        model = text_bpc.train(spec, weights, stream, args, seed=0)
        assert not model.training, name
    out = capsys.readouterr().out
    assert out.count("step 2: train loss") == 6 and out.count("crops {'layers.0.attn': 32, 'layers.1.attn': 32}") == 2


def test_the_span_hold_reaches_the_span_model_and_keeps_its_penalty_off():
    args = text_bpc.parser().parse_args(["--seq-len", "32", "--batch", "2", "--steps", "3", "--log-every", "1",
                                         "--d-model", "16", "--heads", "2", "--span-hold", "5"])
    spec, weights = text_bpc.architectures(args)["dynamic_span"]
    assert weights.span_hold == 5 and text_bpc.architectures(args)["full"][1].span_hold == 0
    model = text_bpc.train(spec, weights, torch.arange(400) % 98, args, seed=0)
    spans = [m for m in model.modules() if isinstance(m, DynamicSpanAttention)]
    assert spans and all(m.penalty_hold == 5 and 0 < m.trained_steps <= 5 for m in spans)
