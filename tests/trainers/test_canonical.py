"""Architectures that train to the same model share one function id (issue 25, item 6).

Each rewrite of ``search_space.canonical`` is proven here the only way that counts:
both models are built from one seed, and their parameters, their outputs (bitwise),
their outputs after one identical training step, and their cost-model figures are
equal. The near misses are here too: they keep their own ids.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.canonical import canonical, function_id
from dynas.search_space.cost import estimate_cost
from dynas.trainers.model import build_model

IMAGE = TaskShape(seq_len=16, num_classes=10, input_dim=4, image_side=8)    # 8x8 image, 2x2 patches
SEQUENCE = TaskShape(seq_len=13, num_classes=3, input_dim=1)
CAUSAL = TaskShape(seq_len=13, num_classes=5, vocab_size=7, per_token=True, causal=True)


def arch(*attention: AttentionConfig, **kinds) -> ArchConfig:
    return ArchConfig(16, tuple(LayerConfig(a, FFNConfig("dense", 2)) for a in attention), **kinds)


def inputs(shape: TaskShape) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if shape.vocab_size:
        return torch.randint(0, shape.vocab_size, (3, shape.seq_len), generator=g)
    return torch.randn(3, shape.seq_len, shape.input_dim, generator=g)


def trained_outputs(a: ArchConfig, shape: TaskShape) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(initial parameters, output, output after one SGD step) of ``a`` built from seed 0."""
    torch.manual_seed(0)
    model = build_model(a, shape)
    params = [p.detach().clone() for p in model.parameters()]
    x = inputs(shape)
    out = model(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (out.logits.square().mean() + sum(out.aux_losses.values(), torch.zeros(()))).backward()
    opt.step()
    with torch.no_grad():
        after = model(x).logits
    return params, out.logits.detach(), after


def assert_same_model(a: ArchConfig, b: ArchConfig, shape: TaskShape) -> None:
    pa, ya, za = trained_outputs(a, shape)
    pb, yb, zb = trained_outputs(b, shape)
    assert [p.shape for p in pa] == [p.shape for p in pb]
    assert all(torch.equal(p, q) for p, q in zip(pa, pb))
    assert torch.equal(ya, yb) and torch.equal(za, zb)
    assert estimate_cost(a, shape) == estimate_cost(b, shape)


# --- the rewrites, each proven ------------------------------------------------------
FLATTEN_OVER_ONE_TOKEN = [
    (arch(AttentionConfig("full", 2), head="flatten", tokens="whole"),
     arch(AttentionConfig("full", 2), head="mean", tokens="whole")),
    (arch(AttentionConfig("linear", 4), AttentionConfig("identity"), head="flatten", tokens="whole", stem="mlp"),
     arch(AttentionConfig("linear", 4), AttentionConfig("identity"), head="mean", tokens="whole", stem="mlp")),
]


@pytest.mark.parametrize("flatten, mean", FLATTEN_OVER_ONE_TOKEN)
def test_a_flatten_head_over_one_token_is_the_mean_head(flatten, mean):
    assert_same_model(flatten, mean, IMAGE)
    assert flatten.arch_id != mean.arch_id
    assert function_id(flatten, IMAGE) == function_id(mean, IMAGE) == mean.arch_id
    assert function_id(flatten) == mean.arch_id          # one token on every image task


@pytest.mark.parametrize("shape", [SEQUENCE, CAUSAL], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("window", [13, 16, 64])
def test_a_window_that_covers_every_token_is_full_attention(shape, window):
    sliding = arch(AttentionConfig("sliding_window", 2, window=window), AttentionConfig("full", 4))
    full = arch(AttentionConfig("full", 2), AttentionConfig("full", 4))
    assert_same_model(sliding, full, shape)
    assert function_id(sliding, shape) == function_id(full, shape) == full.arch_id


def test_one_token_makes_every_window_full_attention_and_a_cls_token_counts():
    for head, window in (("mean", 1), ("flatten", 1), ("cls", 2)):
        sliding = arch(AttentionConfig("sliding_window", 4, window=window), head=head, tokens="whole")
        full = canonical(arch(AttentionConfig("full", 4), head=head, tokens="whole"))
        assert_same_model(sliding, full, IMAGE)
        assert function_id(sliding) == function_id(sliding, IMAGE) == full.arch_id
    short = arch(AttentionConfig("sliding_window", 4, window=1), head="cls", tokens="whole")
    assert function_id(short, IMAGE) == short.arch_id         # 2 tokens: a window of 1 is local


# --- the near misses: a different model, or the same function by another route -----
NOT_COLLAPSED = [
    # a window shorter than the sequence attends locally
    (arch(AttentionConfig("sliding_window", 2, window=4)), arch(AttentionConfig("full", 2)), SEQUENCE),
    # a flatten head over 16 tokens is position-aware, with 16 times the weights
    (arch(AttentionConfig("full", 2), head="flatten"), arch(AttentionConfig("full", 2)), IMAGE),
    # linear attention over one token is v / (1 + eps)-ish, not v: not bitwise full attention
    (arch(AttentionConfig("linear", 2), tokens="whole"), arch(AttentionConfig("full", 2), tokens="whole"), IMAGE),
    # a span past the sequence still has its own span parameters and penalty
    (arch(AttentionConfig("dynamic_span", 2, max_span=64)), arch(AttentionConfig("full", 2)), SEQUENCE),
    # heads over one token: the same outputs, but not the same activation cost figures
    (arch(AttentionConfig("full", 1), tokens="whole"), arch(AttentionConfig("full", 4), tokens="whole"), IMAGE),
]


@pytest.mark.parametrize("a, b, shape", NOT_COLLAPSED)
def test_what_is_not_the_same_model_keeps_its_own_id(a, b, shape):
    assert function_id(a, shape) == a.arch_id and function_id(b, shape) == b.arch_id
    assert function_id(a, shape) != function_id(b, shape)
    pa, ya, _ = trained_outputs(a, shape)
    pb, yb, _ = trained_outputs(b, shape)
    same_params = [p.shape for p in pa] == [p.shape for p in pb] and all(map(torch.equal, pa, pb))
    assert not (same_params and torch.equal(ya, yb) and estimate_cost(a, shape) == estimate_cost(b, shape))


def test_an_architecture_with_nothing_to_rewrite_keeps_its_arch_id():
    """Old arch_ids are function ids as they are, so nothing saved before changes."""
    plain = arch(AttentionConfig("sliding_window", 2, window=4), AttentionConfig("dynamic_span", 2, max_span=8))
    assert canonical(plain, SEQUENCE) is not None and function_id(plain, SEQUENCE) == plain.arch_id
    assert function_id(plain) == plain.arch_id                      # no shape: task tokens unknown
    tokens_elsewhere = dataclasses.replace(plain, tokens="whole")     # a task without images
    assert function_id(tokens_elsewhere, SEQUENCE) == tokens_elsewhere.arch_id
    twice = canonical(canonical(FLATTEN_OVER_ONE_TOKEN[0][0], IMAGE), IMAGE)
    assert twice == canonical(FLATTEN_OVER_ONE_TOKEN[0][0], IMAGE)    # a fixed point
