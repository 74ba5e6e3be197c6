"""Position kinds: RoPE makes a score depend on the query-key offset only, ALiBi adds
-m_h |i - j| to the scores in every softmax attention kind (blocked ones included),
and the relative kinds cost exactly nothing and leave no absolute table."""
import pytest
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import estimate_cost
from dynas.trainers.model import build_model
from dynas.trainers.modules import FullAttention, SlidingWindowAttention, measured_flops
from dynas.trainers.modules.positions import alibi_slopes, rotate
from dynas.trainers.modules.span import DynamicSpanAttention

D, H = 16, 2


def test_rope_scores_depend_on_the_offset_only():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    qs, ks = rotate(q.expand(1, 1, 40, 8)), rotate(k.expand(1, 1, 40, 8))   # same vector everywhere
    scores = (qs @ ks.transpose(-1, -2))[0, 0]                               # (T, T)
    for offset in (0, 3, 17):
        diagonal = torch.diagonal(scores, -offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4)
    assert not torch.allclose(scores[5, 0], scores[5, 4])


def test_alibi_slopes_are_geometric():
    assert alibi_slopes(4).tolist() == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]


def reference(attn, x, causal, allowed=None):
    """Softmax attention with ALiBi written out: scores - m_h |i - j|."""
    q, k, v = attn.proj.split(x)
    t = x.shape[1]
    pos = torch.arange(t)
    dist = pos[:, None] - pos[None, :]
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 - alibi_slopes(H).view(-1, 1, 1) * dist.abs()
    mask = torch.ones(t, t, dtype=torch.bool) if allowed is None else allowed
    if causal:
        mask = mask & (dist >= 0)
    y = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
    return attn.proj.merge(y)


@pytest.mark.parametrize("causal", [True, False])
def test_alibi_biases_full_sliding_and_span_attention_alike(causal):
    torch.manual_seed(0)
    x = torch.randn(2, 13, D)
    full = FullAttention(D, H, causal)
    window = SlidingWindowAttention(D, H, 8, causal)       # 2 blocks: the blocked path
    span = DynamicSpanAttention(D, H, 16, causal).eval()   # spans at 16 >= T: no mask left
    for attn in (full, window, span):
        attn.load_state_dict(full.state_dict(), strict=False)
        attn.alibi = True
    pos = torch.arange(13)
    block = pos // 8
    behind = block[:, None] - block[None, :]
    in_window = (behind == 0) | (behind == 1)             # own and previous block
    assert torch.allclose(full(x)[0], reference(full, x, causal), atol=1e-5)
    assert torch.allclose(window(x)[0], reference(window, x, causal, in_window), atol=1e-5)
    assert torch.allclose(span(x)[0], reference(span, x, causal), atol=1e-5)


LM = TaskShape(seq_len=24, num_classes=11, vocab_size=11, per_token=True, causal=True)
LAYERS = (LayerConfig(AttentionConfig("dynamic_span", H, max_span=16), FFNConfig("dense", 2)),
          LayerConfig(AttentionConfig("sliding_window", H, window=8), FFNConfig("dense", 2)),
          LayerConfig(AttentionConfig("linear", H), FFNConfig("dense", 2)))


@pytest.mark.parametrize("kind", ["rope", "alibi", "none"])
def test_relative_kinds_have_no_table_and_cost_exactly_what_is_built(kind):
    torch.manual_seed(0)
    arch = ArchConfig(D, LAYERS, positions=kind)
    model = build_model(arch, LM)
    assert model.pos is None
    for module in model.modules():
        if hasattr(module, "crop"):
            module.crop = False
    x = torch.randint(0, 11, (1, 24))
    cost, learned = estimate_cost(arch, LM), estimate_cost(ArchConfig(D, LAYERS), LM)
    assert cost.params == sum(p.numel() for p in model.parameters()) == learned.params - 24 * D
    assert measured_flops(model, x) == pytest.approx(cost.flops, rel=0.02)
    assert ArchConfig(D, LAYERS).arch_id != arch.arch_id
    assert "positions" not in ArchConfig(D, LAYERS).to_dict()       # old arch_ids unchanged
