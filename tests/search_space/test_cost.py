"""The torch-free cost model agrees with the model ``build_model`` makes: parameters
exactly, forward FLOPs within 2% of FlopCounterMode."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dynas.search_space import names
from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig,
                               RouterConfig, TaskShape)
from dynas.search_space.cost import estimate_cost, expected_k
from dynas.search_space.suggest import RandomSuggester
from dynas.search_space import kinds
from tests.kind_cases import (FFN_CASES, ROUTER_CASES, all_attentions, all_ffns,
                              moe_with_expert, moe_with_router)

torch = pytest.importorskip("torch")
from dynas.trainers.model import build_model  # noqa: E402
from dynas.trainers.modules import measured_flops  # noqa: E402

ATTENTIONS = all_attentions()
DROPLESS_FFNS = all_ffns()
SHAPES = [
    TaskShape(seq_len=21, num_classes=5, input_dim=7),
    TaskShape(seq_len=40, num_classes=3, vocab_size=13, per_token=True, causal=True),
    TaskShape(seq_len=64, num_classes=4, vocab_size=9, causal=True),
]


def random_arch(seed: int, ffns=DROPLESS_FFNS) -> ArchConfig:
    """A heterogeneous architecture drawn with the reference suggester."""
    s = RandomSuggester(seed)
    d = s.suggest_categorical("d_model", [16, 32])
    layers = tuple(
        LayerConfig(s.suggest_categorical(f"l{i}.attention", ATTENTIONS),
                    s.suggest_categorical(f"l{i}.ffn", ffns))
        for i in range(s.suggest_int("layers", 1, 3)))
    return ArchConfig(d, layers)


def _measure(arch: ArchConfig, shape: TaskShape) -> tuple[int, int]:
    """Params and FLOPs of the built model; spans computed over their whole max_span
    window, as the static cost counts them (the cropped model's effective cost is
    tested in tests/trainers/test_dynamic_compute.py)."""
    torch.manual_seed(0)
    model = build_model(arch, shape)
    for module in model.modules():
        if hasattr(module, "crop"):
            module.crop = False
    if shape.input_dim:
        x = torch.randn(1, shape.seq_len, shape.input_dim)
    else:
        x = torch.randint(0, shape.vocab_size, (1, shape.seq_len))
    return sum(p.numel() for p in model.parameters()), measured_flops(model, x)


@pytest.mark.parametrize("shape", SHAPES, ids=["patches", "lm", "causal-cls"])
@pytest.mark.parametrize("seed", range(8))
def test_params_exact_and_flops_within_2_percent(seed, shape):
    arch = random_arch(seed)
    params, flops = _measure(arch, shape)
    cost = estimate_cost(arch, shape)
    assert cost.params == params
    assert cost.flops == pytest.approx(flops, rel=0.02)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("attention", ATTENTIONS, ids=lambda a: f"{a.kind}-h{a.heads}")
def test_every_attention_kind_is_costed_exactly(attention, causal):
    arch = ArchConfig(32, (LayerConfig(attention, DROPLESS_FFNS[1]),))
    shape = TaskShape(seq_len=37, num_classes=3, input_dim=4, causal=causal)
    params, flops = _measure(arch, shape)
    cost = estimate_cost(arch, shape)
    assert (cost.params, cost.flops) == (params, pytest.approx(flops, rel=0.02))


def _ffn_cases():
    """Every FFN case, every router kind inside a MoE, every expert kind inside a MoE."""
    out = [(f"ffn-{kind}-{i}", cfg) for kind, cases in FFN_CASES.items()
           for i, cfg in enumerate(cases)]
    out += [(f"router-{kind}", moe_with_router(kind)) for kind in ROUTER_CASES]
    return out + [(f"expert-{kind}", moe_with_expert(kind)) for kind in kinds.expert_kinds()]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("ffn", [c for _, c in _ffn_cases()], ids=[n for n, _ in _ffn_cases()])
def test_every_ffn_router_and_expert_kind_is_costed_exactly(ffn, causal):
    arch = ArchConfig(32, (LayerConfig(ATTENTIONS[0], ffn),))
    shape = TaskShape(seq_len=19, num_classes=3, vocab_size=7, causal=causal)
    params, flops = _measure(arch, shape)
    cost = estimate_cost(arch, shape)
    assert (cost.params, cost.flops) == (params, pytest.approx(flops, rel=0.02))


def test_dynamic_router_estimate_holds_for_a_fresh_router():
    """A freshly initialised router is near uniform: it needs ceil(top_p * E) experts."""
    ffn = FFNConfig("moe", 2, 8, RouterConfig("dynamic", 4, 0.3), 0, 0.0, "aux_loss")
    assert expected_k(ffn) == 3
    arch = ArchConfig(32, (LayerConfig(ATTENTIONS[0], ffn),))
    shape = SHAPES[0]
    _, flops = _measure(arch, shape)
    assert estimate_cost(arch, shape).flops == pytest.approx(flops, rel=0.02)


def test_capacity_and_dynamic_routing_are_upper_bounds():
    ffns = [FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 0, 0.5, "aux_loss"),
            FFNConfig("moe", 2, 4, RouterConfig("dynamic", 4, 0.7), 1, 1.25, "bias")]
    for seed in range(4):
        arch = random_arch(seed, ffns)
        params, flops = _measure(arch, SHAPES[1])
        cost = estimate_cost(arch, SHAPES[1])
        assert cost.params == params
        assert flops <= cost.flops * 1.0001


def test_active_params_count_only_the_experts_a_token_uses():
    dense = FFNConfig("dense", 2)
    moe = FFNConfig("moe", 2, 8, RouterConfig("topk", 2), 1, 0.0, "aux_loss")
    shape = SHAPES[0]
    d_cost = estimate_cost(ArchConfig(16, (LayerConfig(ATTENTIONS[0], dense),)), shape)
    m_cost = estimate_cost(ArchConfig(16, (LayerConfig(ATTENTIONS[0], moe),)), shape)
    assert d_cost.active_params == d_cost.params
    expert = 2 * 16 * 32 + 32 + 16
    assert m_cost.params - m_cost.active_params == (8 - 2) * expert


def test_windowed_kinds_keep_less_kv_and_linear_keeps_a_constant_state():
    def kv(att: AttentionConfig, t: int) -> float:
        arch = ArchConfig(32, (LayerConfig(att, DROPLESS_FFNS[0]),))
        return estimate_cost(arch, TaskShape(t, 2, input_dim=3, causal=True)).kv_bytes

    full, sliding = AttentionConfig("full", 4), AttentionConfig("sliding_window", 4, window=16)
    linear = AttentionConfig("linear", 4)
    assert kv(full, 256) == 2 * 256 * 32 * 4
    assert kv(sliding, 256) == 2 * 32 * 32 * 4
    assert kv(linear, 64) == kv(linear, 4096)


def test_as_metrics_uses_the_metric_names():
    cost = estimate_cost(random_arch(0), SHAPES[0])
    metrics = cost.as_metrics()
    assert set(metrics) == set(names.STATIC_COST_METRICS)
    assert metrics[names.FLOPS] == cost.flops and metrics[names.PARAMS] == cost.params


def test_cost_model_imports_no_torch():
    code = ("import sys, search_space.cost; "
            "sys.exit(any(m.split('.')[0] == 'torch' for m in sys.modules))")
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
