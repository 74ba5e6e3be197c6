"""Dynamic compute is realised: evaluation crops learned spans without changing the
outputs, the validation pass measures spans and realised k, and the effective cost
model fed with them matches FlopCounterMode on the cropped model within 2%."""
import pytest
import torch

from dynas.search_space import names
from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig,
                               RouterConfig, TaskShape)
from dynas.search_space.cost import Realised, effective_metrics, estimate_cost
from dynas.search_space.kinds.attention import SPAN_BLOCK, cropped_span, span_ramp
from dynas.trainers.dynamics import bits_metrics, measure
from dynas.trainers.model import build_model
from dynas.trainers.modules import measured_flops
from dynas.trainers.modules.span import DynamicSpanAttention
from torch.utils.data import TensorDataset

D, H = 16, 2


def set_spans(module: DynamicSpanAttention, spans):
    module.span_fraction.data = torch.tensor(spans) / module.max_span


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("spans", [[3.0, 10.5], [0.0, 0.0], [60.0, 1.0]])
def test_cropped_evaluation_equals_the_full_window(causal, spans):
    torch.manual_seed(0)
    attn = DynamicSpanAttention(D, H, 64, causal=causal).eval()
    set_spans(attn, spans)
    x = torch.randn(2, 150, D)
    with torch.no_grad():
        cropped = attn(x)[0]
        attn.crop = False
        full = attn(x)[0]
    assert torch.allclose(cropped, full, atol=1e-5)
    attn.crop = True
    assert attn.window() == cropped_span(max(spans), 64)


def test_crop_is_longest_span_plus_ramp_in_blocks():
    assert span_ramp(64) == 16 and span_ramp(1024) == 32
    assert cropped_span(3.0, 64) == 24 and cropped_span(10.5, 64) == 32
    assert cropped_span(0.0, 1024) == 32 and cropped_span(2000.0, 1024) == 1024
    assert all(cropped_span(z, 512) % SPAN_BLOCK == 0 for z in (0.3, 7.0, 100.1))
    attn = DynamicSpanAttention(D, H, 64).eval()
    set_spans(attn, [3.0, 4.0])
    assert attn.window() == 24
    attn.train()                      # training probes 2 (z + R) farther: 4 + 40 + 16
    assert attn.window() == 64
    set_spans(attn, [1.0, 2.0])
    assert attn.window() == cropped_span(2.0 + 2 * (2.0 + 16), 64) == 56
    attn.grow = False
    assert attn.window() == 24
    attn.crop = False
    assert attn.window() == 64


@pytest.mark.parametrize("causal", [True, False])
def test_training_through_the_crop_keeps_the_soft_mask_gradients(causal):
    """Keys beyond the crop have m = 0 and dm/dz = 0: the loss and every gradient,
    the spans' included, equal those over the whole max_span window (without the
    growth probe, whose keys beyond the ramp have a gradient by design)."""
    torch.manual_seed(0)
    attn = DynamicSpanAttention(D, H, 64, causal=causal, grow=False)
    set_spans(attn, [6.0, 17.5])
    x = torch.randn(2, 150, D)
    grads = []
    for crop in (True, False):
        attn.crop = crop
        attn.zero_grad()
        y, aux = attn(x)
        (y.square().mean() + aux["span"]).backward()
        grads.append({n: p.grad.clone() for n, p in attn.named_parameters()})
    assert attn.span_fraction.grad.abs().min() > 0      # spans still learn (and can grow)
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


ARCH = ArchConfig(D, (
    LayerConfig(AttentionConfig("dynamic_span", H, max_span=64),
                FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("dynamic", 3, 0.6),
                          capacity_factor=0.0)),
    LayerConfig(AttentionConfig("dynamic_span", H, max_span=32),
                FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2),
                          capacity_factor=0.0)),
))


@pytest.mark.parametrize("causal", [True, False])
def test_effective_flops_match_the_cropped_model_within_2_percent(causal):
    shape = TaskShape(seq_len=256, num_classes=11, vocab_size=11, per_token=True, causal=causal)
    torch.manual_seed(0)
    model = build_model(ARCH, shape).eval()
    set_spans(model.layers[0].attn, [5.0, 20.0])
    set_spans(model.layers[1].attn, [2.0, 1.0])
    model.layers[0].ffn.router.log_temperature.data.fill_(-2.0)   # a sharp router: k varies
    x = torch.randint(0, 11, (1, 256))
    _, entry = measure(model, [TensorDataset(x, x)], batch_size=1, device=torch.device("cpu"))
    realised = Realised.from_dynamics(entry)
    k = entry["k"]["layers.0.ffn"]
    assert 1.0 < k["mean"] < 3.0 and sum(k["hist"]) == 256 and k["hist"][0] == 0
    assert entry["k"]["layers.1.ffn"]["mean"] == 2.0
    assert entry["spans"]["layers.0.attn"]["crop"] == 40
    effective = estimate_cost(ARCH, shape, realised).flops
    measured = measured_flops(model, x)
    assert effective == pytest.approx(measured, rel=0.02)
    # the crops (40 of 64 and 16 of 32 keys) and the realised k: the uncropped layers
    # score 96 and 64 keys per query, the cropped ones 80 and 32
    assert effective < 0.85 * estimate_cost(ARCH, shape).flops
    metrics = effective_metrics(ARCH, shape, realised)
    assert metrics[names.FLOPS_EFFECTIVE] == effective
    assert metrics[names.ACTIVE_PARAMS_EFFECTIVE] < estimate_cost(ARCH, shape).active_params


def test_nothing_measured_costs_as_the_static_model():
    shape = TaskShape(seq_len=100, num_classes=3, vocab_size=7, causal=True)
    static = estimate_cost(ARCH, shape)
    assert estimate_cost(ARCH, shape, Realised()) == static


def test_bits_matrix_metrics():
    rows = [[2.0, 5.0], [3.0, 1.5]]
    got = bits_metrics(rows)
    assert got[names.FINAL_AVG_BPC] == pytest.approx(2.25)
    assert got[names.FORGETTING_BPC] == pytest.approx(1.0)
    assert bits_metrics([[4.0]])[names.FORGETTING_BPC] == 0.0
