"""Contract of the model parts: every attention and FFN kind, routers, MoE dispatch,
and the model ``build_model`` wires from an ArchConfig."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig,
                               RouterConfig, TaskShape)
from dynas.search_space import kinds
from dynas.search_space.kinds.attention import span_blocked, span_keys
from dynas.trainers.model import ModelOutput, build_model
from dynas.trainers.modules import (BUILDERS, DenseFFN, DynamicRouter, DynamicSpanAttention,
                              ExpertGroup, GLUExpertGroup, GLUFFN, LinearAttention, MoE,
                              MoEOutput, ReLURouter, SlidingWindowAttention, TopKRouter)
from tests.kind_cases import ATTENTION_CASES, FFN_CASES

D, H = 16, 2

ATTENTIONS = {kind: cases[0] for kind, cases in ATTENTION_CASES.items()}
ATTENTIONS["dynamic_span"] = AttentionConfig("dynamic_span", H, max_span=4)
FFNS = {
    **{kind: cases[0] for kind, cases in FFN_CASES.items() if kind != "moe"},
    "moe_topk": FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 0.0, "aux_loss"),
    "moe_top1_capacity": FFNConfig("moe", 2, 4, RouterConfig("topk", 1), 0, 1.0, "z_loss"),
    "moe_dynamic_bias": FFNConfig("moe", 2, 4, RouterConfig("dynamic", 3, 0.6), 0, 0.0, "bias"),
    "moe_glu": FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 0.0, "aux_loss", expert="glu"),
}


def test_the_cases_here_run_every_kind():
    """(Every kind has a builder and every builder a kind: ``tests/test_registries.py``.)"""
    assert set(ATTENTIONS) == set(kinds.ATTENTION.names())
    assert {c.kind for c in FFNS.values()} == set(kinds.FFN.names())
    assert {c.expert for c in FFNS.values() if c.kind == "moe"} == set(kinds.expert_kinds())


# --- attention ------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
@pytest.mark.parametrize("t", [3, 11])          # shorter than a block; not a multiple of it
def test_attention_shapes_and_gradients(kind, causal, t, device):
    torch.manual_seed(0)
    attn = BUILDERS["attention"].get(kind)(ATTENTIONS[kind], D, causal)
    if attn is None:                             # no token mixer: no pre-norm either
        assert not kinds.ATTENTION.get(kind).norm
        return
    if kind == "dynamic_span":
        attn.span_fraction.data.fill_(0.5)       # inside the ramp, so the span has a gradient
    attn.to(device)
    x = torch.randn(2, t, D, device=device, requires_grad=True)
    y, aux = attn(x)
    assert y.shape == x.shape and y.device == x.device
    (y.square().mean() + sum(aux.values(), torch.zeros((), device=device))).backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
def test_causal_attention_ignores_the_future(kind, device):
    torch.manual_seed(0)
    attn = BUILDERS["attention"].get(kind)(ATTENTIONS[kind], D, True)
    if attn is None:
        return                                   # identity mixes no tokens at all
    attn.to(device)
    x = torch.randn(1, 13, D, device=device)
    later = x.clone()
    later[:, 7:] = torch.randn(1, 6, D, device=device)
    assert torch.allclose(attn(x)[0][:, :7], attn(later)[0][:, :7], atol=1e-5)


def _dense_reference(attn, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Test-only reference: full T x T attention with an explicit boolean mask."""
    q, k, v = attn.proj.split(x)
    return attn.proj.merge(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t", [4, 9, 16])
def test_sliding_window_equals_masked_full_attention(causal, t, device):
    torch.manual_seed(0)
    w = 4
    attn = SlidingWindowAttention(D, H, w, causal=causal).to(device)
    x = torch.randn(2, t, D, device=device)
    i, j = torch.arange(t, device=device)[:, None], torch.arange(t, device=device)[None, :]
    allowed = (j // w == i // w) | (j // w == i // w - 1)
    if causal:
        allowed &= j <= i
    assert torch.allclose(attn(x)[0], _dense_reference(attn, x, allowed), atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("t", [3, 10])
def test_dynamic_span_at_max_equals_windowed_attention(causal, t, device):
    torch.manual_seed(0)
    s = 4
    attn = DynamicSpanAttention(D, H, s, causal=causal).to(device)
    attn.span_fraction.data.fill_(1.0)
    x = torch.randn(2, t, D, device=device)
    d = torch.arange(t, device=device)[:, None] - torch.arange(t, device=device)[None, :]
    allowed = (d >= 0) & (d < s) if causal else d.abs() < s
    y, aux = attn(x)
    assert torch.allclose(y, _dense_reference(attn, x, allowed), atol=1e-5)
    assert aux["span"].item() == pytest.approx(1.0)


def test_dynamic_span_soft_mask_matches_the_paper_formula():
    """m(d) = clamp((R + z - d) / R, 0, 1) multiplies the weights, then renormalise."""
    torch.manual_seed(0)
    s, t = 8, 13
    attn = DynamicSpanAttention(D, H, s, causal=True, ramp=2)
    attn.span_fraction.data = torch.tensor([0.3, 0.75])
    x = torch.randn(1, t, D)
    q, k, v = attn.proj.split(x)
    d = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).float()
    z = (attn.span_fraction * s).view(H, 1, 1)
    m = ((2 + z - d) / 2).clamp(0, 1) * ((d >= 0) & (d < s))
    a = (q @ k.transpose(-1, -2) / math.sqrt(D // H)).softmax(-1) * m
    ref = attn.proj.merge((a / a.sum(-1, keepdim=True)) @ v)
    assert torch.allclose(attn(x)[0], ref, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_blocked_dynamic_span_equals_the_dense_soft_mask(causal):
    """Long enough to run blocked (query blocks of c, key slabs of W, T not a multiple
    of c), the layer still computes the paper's soft mask over every query-key pair."""
    torch.manual_seed(0)
    max_span, t = 64, 200
    attn = DynamicSpanAttention(D, H, max_span, causal=causal).eval()
    attn.span_fraction.data = torch.tensor([10.0, 30.0]) / max_span
    s = attn.window()
    c, _ = span_keys(s, causal)
    assert span_blocked(t, s, causal) and t % c
    x = torch.randn(2, t, D)
    q, k, v = attn.proj.split(x)
    d = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).float()
    d = d if causal else d.abs()
    z, r = (attn.span_fraction * max_span).view(H, 1, 1), attn.ramp
    m = ((r + z - d) / r).clamp(0, 1) * (d >= 0)
    a = (q @ k.transpose(-1, -2) / math.sqrt(D // H)).softmax(-1) * m
    ref = attn.proj.merge((a / a.sum(-1, keepdim=True)) @ v)
    with torch.no_grad():
        assert torch.allclose(attn(x)[0], ref, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_equals_its_quadratic_form(causal, device):
    torch.manual_seed(0)
    t = 10
    attn = LinearAttention(D, H, causal=causal, chunk=4).to(device)   # 3 chunks, the last one padded
    x = torch.randn(2, t, D, device=device)
    q, k, v = attn.proj.split(x)
    a = (F.elu(q) + 1) @ (F.elu(k) + 1).transpose(-1, -2)    # (B, H, T, T)
    if causal:
        a = a.tril()
    ref = attn.proj.merge((a @ v) / (a.sum(-1, keepdim=True) + attn.eps))
    assert torch.allclose(attn(x)[0], ref, atol=1e-5)


# --- FFN kinds ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(FFNS))
def test_ffn_shapes_and_gradients_reach_router_and_experts(kind, device):
    torch.manual_seed(0)
    ffn = BUILDERS["ffn"].get(FFNS[kind].kind)(FFNS[kind], D).to(device)
    x = torch.randn(2, 12, D, device=device)
    out = ffn(x)
    if isinstance(out, MoEOutput):
        assert out.tokens_per_expert.shape == (4,)
        assert out.tokens_per_expert.device == out.tokens_per_k.device == x.device
        loss = out.out.square().mean() + sum(out.aux_losses.values(), torch.zeros((), device=device))
        y = out.out
    else:
        loss, y = out.square().mean(), out
    assert y.shape == x.shape and y.device == x.device
    loss.backward()
    for name, p in ffn.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_glu_ffn_and_glu_experts_follow_swiglu():
    """silu(x W1) * (x W3), then W2; each GLU expert is that FFN on its own tokens."""
    torch.manual_seed(0)
    ffn, group = GLUFFN(D, 8), GLUExpertGroup(3, D, 8)
    x = torch.randn(5, D)
    ref = (F.silu(x @ ffn.gate.weight.T) * (x @ ffn.up.weight.T)) @ ffn.down.weight.T
    assert torch.allclose(ffn(x), ref, atol=1e-6)
    y = group(x, [2, 0, 3])
    for rows, e in ((slice(0, 2), 0), (slice(2, 5), 2)):
        expected = (F.silu(x[rows] @ group.w_gate[e]) * (x[rows] @ group.w_up[e])) @ group.w_down[e]
        assert torch.allclose(y[rows], expected, atol=1e-6)


def test_identity_layer_is_its_ffn_alone():
    torch.manual_seed(0)
    arch = _arch(("identity", "dense"))
    model = build_model(arch, TaskShape(6, 3, input_dim=4))
    block = model.layers[0]
    assert block.attn is None and block.norm_attn is None
    assert all(name.startswith(("norm_ffn.", "ffn.")) for name, _ in block.named_parameters())
    h = torch.randn(2, 6, D)
    assert torch.allclose(block(h).x, h + block.ffn(block.norm_ffn(h)))


def _naive_moe(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """Every expert on every token, combined with the router's gates (test reference)."""
    flat = x.reshape(-1, x.shape[-1])
    route = moe.router(flat)
    ex = moe.experts
    every = torch.stack([
        F.gelu(flat @ ex.w_up[e] + ex.b_up[e]) @ ex.w_down[e] + ex.b_down[e]
        for e in range(ex.num_experts)])                       # (E, N, D)
    gates = torch.zeros(flat.shape[0], ex.num_experts, device=flat.device).scatter(
        1, route.experts, route.weights * route.valid)         # (N, E)
    out = torch.einsum("ne,end->nd", gates, every)
    if moe.shared_expert is not None:
        out = out + moe.shared_expert(flat)
    return out.view_as(x)


@pytest.mark.parametrize("router", ["topk", "dynamic", "relu"])
@pytest.mark.parametrize("shared", [False, True])
def test_dropless_moe_equals_naive_reference(router, shared, device):
    torch.manual_seed(0)
    e, f = 6, 24
    r = {"topk": lambda: TopKRouter(D, e, 2), "dynamic": lambda: DynamicRouter(D, e, 3, 0.4),
         "relu": lambda: ReLURouter(D, e, 3)}[router]()
    if router == "relu":
        r.gate.weight.data.normal_(std=0.5)       # some scores below zero: k varies
    moe = MoE(ExpertGroup(e, D, f), r, DenseFFN(D, f) if shared else None).to(device)
    x = torch.randn(3, 7, D, device=device)
    out = moe(x)
    assert torch.allclose(out.out, _naive_moe(moe, x), atol=1e-5)
    routed = moe.router(x.reshape(-1, D))
    assert out.tokens_per_expert.sum() == routed.valid.sum()
    assert out.dropped_fraction.item() == 0.0


def test_capacity_keeps_the_first_tokens_of_an_overloaded_expert(device):
    torch.manual_seed(0)
    e, n = 4, 16
    moe = MoE(ExpertGroup(e, D, 8), TopKRouter(D, e, 1, bias_balance=True),
              capacity_factor=1.0).to(device)
    moe.router.selection_bias[0] = 10.0        # every token picks expert 0 first
    x = torch.randn(1, n, D, device=device)
    out = moe(x)
    cap = math.ceil(1.0 * n * 1 / e)           # 4 slots
    assert out.tokens_per_expert.tolist() == [n, 0, 0, 0]
    assert out.dropped_fraction.item() == pytest.approx(1 - cap / n)
    ref = _naive_moe(moe, x)
    assert torch.allclose(out.out[0, :cap], ref[0, :cap], atol=1e-5)
    assert torch.equal(out.out[0, cap:], torch.zeros(n - cap, D, device=device))


def test_capacity_drops_exactly_the_overflow_per_expert(device):
    torch.manual_seed(1)
    e, k, cf = 4, 2, 0.75
    moe = MoE(ExpertGroup(e, D, 8), TopKRouter(D, e, k), capacity_factor=cf)
    moe.router.gate.weight.data.normal_(std=1.0)      # uneven loads
    moe.to(device)
    x = torch.randn(2, 10, D, device=device)
    out = moe(x)
    cap = math.ceil(cf * 20 * k / e)
    kept = out.tokens_per_expert.clamp(max=cap).sum().item()
    assert out.dropped_fraction.item() == pytest.approx(1 - kept / (20 * k))
    # Reference: the naive MoE with the gates of dropped slots zeroed.
    flat = x.reshape(-1, D)
    route = moe.router(flat)
    rank = torch.zeros_like(route.experts)
    seen = [0] * e
    for i in range(flat.shape[0]):             # token order decides who is kept
        for j in range(k):
            rank[i, j] = seen[route.experts[i, j]]
            seen[route.experts[i, j]] += 1
    gates = torch.zeros(flat.shape[0], e, device=device).scatter(1, route.experts, route.weights * (rank < cap))
    every = torch.stack([moe.experts(flat, [0] * i + [flat.shape[0]] + [0] * (e - i - 1))
                         for i in range(e)])
    ref = torch.einsum("ne,end->nd", gates, every)
    assert torch.allclose(out.out.reshape(-1, D), ref, atol=1e-5)


# --- routers --------------------------------------------------------------------------
def test_topk_router_weights_and_bias_only_steer_selection():
    torch.manual_seed(0)
    r = TopKRouter(D, 4, 2, bias_balance=True)
    x = torch.randn(10, D)
    out = r(x)
    assert torch.allclose(out.weights.sum(-1), torch.ones(10))
    r.selection_bias.copy_(torch.tensor([0.0, 0.0, 5.0, 5.0]))
    out = r(x)
    assert set(out.experts.flatten().tolist()) == {2, 3}
    p = out.probs.gather(1, out.experts)
    assert torch.allclose(out.weights, p / p.sum(-1, keepdim=True))


def test_dynamic_router_picks_the_fewest_experts_reaching_top_p():
    torch.manual_seed(0)
    r = DynamicRouter(D, 6, 4, 0.5)
    r.gate.weight.data.normal_(std=0.5)
    out = r(torch.randn(50, D))
    sorted_p = out.probs.sort(-1, descending=True).values
    need = ((sorted_p.cumsum(-1) < 0.5).sum(-1) + 1).clamp(max=4)
    assert torch.equal(out.valid.sum(-1), need)
    assert len(set(need.tolist())) > 1                    # k depends on the token
    assert torch.equal(out.weights, out.probs.gather(1, out.experts) * out.valid)


def test_balance_and_z_losses_follow_their_definitions():
    torch.manual_seed(0)
    r = TopKRouter(D, 4, 1, aux_losses=("balance", "z_loss"))
    x = torch.randn(20, D)
    out = r(x)
    f = torch.bincount(out.experts.flatten(), minlength=4).float() / 20
    assert out.aux_losses["balance"].item() == pytest.approx(
        (4 * (f * out.probs.mean(0)).sum()).item(), rel=1e-5)
    logits = r.gate(x) / r.log_temperature.exp()
    assert out.aux_losses["z_loss"].item() == pytest.approx(
        (logits.logsumexp(-1) ** 2).mean().item(), rel=1e-5)


def test_bias_update_moves_towards_the_mean_load():
    r = TopKRouter(D, 4, 1, bias_balance=True)
    r.update_bias(torch.tensor([10, 0, 5, 5]), rate=0.1)
    assert torch.allclose(r.selection_bias, torch.tensor([-0.1, 0.1, 0.0, 0.0]))
    assert "selection_bias" not in dict(r.named_parameters())


# --- the model ------------------------------------------------------------------------
def _arch(*layers: tuple[str, str], d: int = D) -> ArchConfig:
    return ArchConfig(d, tuple(LayerConfig(ATTENTIONS[a], FFNS[f]) for a, f in layers))


@pytest.mark.parametrize("per_token", [False, True])
def test_model_output_is_named_and_sums_aux_per_kind(per_token, device):
    torch.manual_seed(0)
    arch = _arch(("dynamic_span", "moe_topk"), ("full", "moe_topk"),
                 ("sliding_window", "moe_dynamic_bias"), ("linear", "dense"))
    shape = TaskShape(seq_len=9, num_classes=5, vocab_size=11, per_token=per_token,
                      causal=per_token)
    model = build_model(arch, shape).to(device)
    x = torch.randint(0, 11, (2, 9), device=device)
    out = model(x)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == ((2, 9, 5) if per_token else (2, 5))
    assert set(out.aux_losses) == {"balance", "span", "router_entropy"}
    assert set(out.tokens_per_expert) == {"layers.0.ffn", "layers.1.ffn", "layers.2.ffn"}
    h, balance = model.embed(x) + model.pos[:9], torch.zeros((), device=device)
    for block in model.layers:
        o = block(h)
        h, balance = o.x, balance + o.aux_losses.get("balance", torch.zeros((), device=device))
    assert out.aux_losses["balance"].item() == pytest.approx(balance.item(), rel=1e-5)


def test_model_accepts_continuous_inputs_and_shorter_sequences():
    model = build_model(_arch(("full", "dense")), TaskShape(8, 3, input_dim=5))
    assert model(torch.randn(4, 6, 5)).logits.shape == (4, 3)
    with pytest.raises(ValueError):
        model(torch.randn(1, 9, 5))


def test_update_router_biases_only_touches_bias_layers_after_training_forwards():
    torch.manual_seed(0)
    model = build_model(_arch(("full", "moe_topk"), ("full", "moe_dynamic_bias")),
                        TaskShape(8, 3, input_dim=5))
    bias_layer, plain = model.layers[1].ffn.router, model.layers[0].ffn.router
    model.eval()
    model(torch.randn(4, 8, 5))
    model.update_router_biases(0.01)
    assert not bias_layer.selection_bias.any()      # eval forwards do not count as load
    model.train()
    model(torch.randn(4, 8, 5))
    model.update_router_biases(0.01)
    assert bias_layer.selection_bias.abs().sum() > 0
    assert not plain.selection_bias.any()
    assert not model.layers[1].ffn.pending_load.any()   # reset for the next step


def test_build_model_is_deterministic_under_a_seed():
    arch = _arch(("dynamic_span", "moe_dynamic_bias"), ("sliding_window", "moe_topk"))
    shape = TaskShape(10, 4, input_dim=3)
    x = torch.randn(2, 10, 3)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        model = build_model(arch, shape)
        outs.append((model(x).logits, model(x).logits))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][0], outs[0][1])
