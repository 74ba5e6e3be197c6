"""int8 (trainers.quantisation): plain Linears run on int8 units, heads and every expert
kind's stacked weights are stored int8, the saved state is int8 tensors, QAT fakes the
same scheme and converts back to plain Linears."""
import copy
import warnings

import pytest
import torch
from torch import nn

from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                                     TaskShape)
from dynas.trainers.model import build_model
from dynas.trainers.modules.registry import BUILDERS
from dynas.trainers.quantisation import (Int8Linear, convert_qat, int8_params, prepare_qat, quantise,
                                         refresh, stored_weights)

SHAPE = TaskShape(8, 5, input_dim=6)


def model_with(expert: str) -> nn.Module:
    moe = FFNConfig("moe", expansion=2, experts=3, router=RouterConfig("topk", 2), expert=expert, shared_experts=1)
    layers = (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", expansion=2)),
              LayerConfig(AttentionConfig("full", 2), moe))
    torch.manual_seed(0)
    return build_model(ArchConfig(16, layers), SHAPE).eval()


def test_int8_linear_is_the_float_linear_within_quantisation_error():
    torch.manual_seed(0)
    linear = nn.Linear(32, 24)
    x = torch.randn(5, 7, 32)
    q = Int8Linear.from_float(linear)
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max() <= 127
    expected = linear(x)
    assert q(x).shape == expected.shape
    assert (q(x) - expected).abs().max() < 0.02 * expected.abs().max()


@pytest.mark.parametrize("expert", BUILDERS["expert"].names())
def test_every_expert_kind_declares_its_stacked_weights(expert):
    """The seam: an expert group names each matmul weight it holds (EXPERT_WEIGHTS), so
    quantise stores all of them int8; a new expert kind without it fails here."""
    group = BUILDERS["expert"].get(expert)(3, 8, 12)
    matrices = {n for n, p in group.named_parameters() if p.ndim == 3}
    assert set(stored_weights(group)) == matrices


@pytest.mark.parametrize("expert", BUILDERS["expert"].names())
def test_quantise_covers_linears_heads_and_experts(expert):
    model = model_with(expert)
    q = quantise(model)
    assert not any(type(m) is nn.Linear for m in q.modules())
    assert isinstance(q.layers[0].ffn.up, Int8Linear)
    state = q.state_dict()
    assert state["head.weight_int8"].dtype == torch.int8 and "head.weight" not in state
    experts = q.layers[1].ffn.experts
    for name in stored_weights(experts):
        assert state[f"layers.1.ffn.experts.{name}_int8"].dtype == torch.int8
        assert f"layers.1.ffn.experts.{name}" not in state
    matrices = {k for k, v in state.items() if v.is_floating_point() and v.ndim >= 2 and not k.endswith("_scale")}
    assert matrices <= {"pos", "layers.1.ffn.experts.b_up", "layers.1.ffn.experts.b_down"}   # no weights
    assert int8_params(q) + sum(p.numel() for p in q.parameters()) == sum(p.numel() for p in model.parameters())
    x = torch.randn(4, 8, 6)
    with torch.no_grad():
        expected, got = model(x).logits, q(x).logits
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()
    assert next(model.parameters()).dtype == torch.float32 and type(model.layers[0].ffn.up) is nn.Linear


def test_a_fresh_quantised_model_takes_the_saved_state():
    """What rebuild does: quantise a model of other weights, load the saved int8 state,
    refresh the float copies of stored weights; the result computes the same."""
    q = quantise(model_with("glu"))
    other = model_with("glu")
    torch.manual_seed(1)
    for p in other.parameters():
        nn.init.normal_(p)
    other = quantise(other)
    other.load_state_dict(q.state_dict())
    refresh(other)
    x = torch.randn(2, 8, 6)
    with torch.no_grad():
        assert torch.equal(other(x).logits, q(x).logits)


def test_qat_fakes_quantisation_and_converts_to_plain_linears():
    model = model_with("dense")
    keys = set(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare_qat(copy.deepcopy(model))
    assert type(prepared.layers[0].ffn.up) is not nn.Linear            # fake-quantised
    x = torch.randn(4, 8, 6)
    prepared.train()
    prepared(x).logits.square().mean().backward()
    assert prepared.layers[0].ffn.up.weight.grad is not None
    converted = convert_qat(prepared)
    assert type(converted.layers[0].ffn.up) is nn.Linear and set(converted.state_dict()) == keys
    assert type(converted.head) is type(model.head)                   # heads are not swapped
