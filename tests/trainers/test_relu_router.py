"""The ``relu`` router (ReMoE): an expert serves a token while its ReLU gate score is
positive, at most ``top_k`` of them; a fresh router uses its cap (the cost model's k)
and a trained one is charged its realised k; ``router_l1`` is the mean L1 norm of the
scores and, weighted by ``loss_weights.router_l1``, prunes experts; a space can pick
the router; and in a seeded short run on ``hard_easy`` the realised k differs from
token to token."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                                     TaskShape)
from dynas.search_space.errors import ConfigError
from dynas.search_space.cost import Realised, estimate_cost
from dynas.search_space.settings import LossWeights, TaskSettings, TrainingSettings
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester
from dynas.trainers.dynamics import measure
from dynas.trainers.fitting import STATE_FILE, fit, load_state
from dynas.trainers.model import build_model
from dynas.trainers.modules import BUILDERS, ReLURouter, measured_flops
from dynas.trainers.tasks import build_task

D = 16


def scores_of(r: ReLURouter, x: torch.Tensor) -> torch.Tensor:
    """The definition: r = ReLU(gate(x) / tau + 1), (N, E)."""
    return F.relu(r.gate(x) / r.log_temperature.exp() + ReLURouter.OFFSET)


def test_relu_router_keeps_the_positive_scores_up_to_the_cap():
    torch.manual_seed(0)
    r = ReLURouter(D, 6, 4)
    r.gate.weight.data.normal_(std=0.5)
    r.gate.weight.data += torch.randn(D)              # a shared direction: some tokens lose every expert
    x = torch.randn(64, D)
    out = r(x)
    scores = scores_of(r, x)
    k = (scores > 0).sum(-1).clamp(max=4)
    assert torch.equal(out.valid.sum(-1), k)
    assert len(set(k.tolist())) > 1                   # k depends on the token
    assert (k == 0).any()                             # and may be 0
    assert torch.equal(out.weights, scores.gather(1, out.experts))   # the raw scores
    assert (out.weights[out.valid] > 0).all() and (out.weights[~out.valid] == 0).all()
    assert torch.allclose(out.weights, scores.topk(4, dim=-1).values)   # the largest first
    assert out.aux_losses["router_l1"].item() == pytest.approx(scores.sum(-1).mean().item(), rel=1e-6)


def test_a_fresh_relu_router_uses_its_cap():
    """What the cost model charges for an untrained ``relu`` router."""
    torch.manual_seed(0)
    r = BUILDERS["router"].get("relu")(RouterConfig("relu", 3), D, 8, aux_losses=("balance",))
    out = r(torch.randn(500, D))
    assert (out.valid.sum(-1) == 3).all()


def test_selection_bias_only_steers_which_experts():
    torch.manual_seed(0)
    r = ReLURouter(D, 4, 2, bias_balance=True)
    r.selection_bias.copy_(torch.tensor([0.0, 0.0, 5.0, 5.0]))
    x = torch.randn(10, D)
    out = r(x)
    assert set(out.experts.flatten().tolist()) == {2, 3}
    assert torch.equal(out.weights, scores_of(r, x).gather(1, out.experts))   # unbiased


def test_the_l1_term_alone_switches_experts_off():
    """With a shared component in the tokens (what a pre-norm's bias gives the gate, which
    has no bias of its own), the L1 alone prunes every expert of every token."""
    torch.manual_seed(0)
    r = ReLURouter(D, 4, 4)
    x = torch.randn(128, D) + 1.0
    opt = torch.optim.SGD(r.parameters(), lr=0.5)
    before = r(x).valid.sum(-1).float().mean()
    for _ in range(50):
        opt.zero_grad()
        r(x).aux_losses["router_l1"].backward()
        opt.step()
    assert before == 4 and r(x).valid.sum(-1).float().mean() < 1


def test_the_realised_k_is_what_the_effective_cost_charges():
    """``flops_effective`` costs a relu layer at its measured mean k, down to tokens with
    no expert at all; FlopCounterMode on the same forward agrees within 2%."""
    ffn = FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("relu", 3))
    arch = ArchConfig(D, (LayerConfig(AttentionConfig("full", 2), ffn),) * 2)
    shape = TaskShape(seq_len=128, num_classes=11, vocab_size=11, per_token=True, causal=True)
    torch.manual_seed(0)
    model = build_model(arch, shape).eval()
    for layer in model.layers:
        gate = layer.ffn.router.gate.weight.data
        gate.normal_(std=0.5).add_(torch.randn(D))    # a shared direction: some tokens get no expert
    x = torch.randint(0, 11, (1, 128))
    _, entry = measure(model, [TensorDataset(x, x)], batch_size=1, device=torch.device("cpu"))
    hist = entry["k"]["layers.0.ffn"]["hist"]
    assert hist[0] > 0 and hist[3] > 0 and 0.5 < entry["k"]["layers.0.ffn"]["mean"] < 2.5
    effective = estimate_cost(arch, shape, Realised.from_dynamics(entry)).flops
    assert effective == pytest.approx(measured_flops(model, x), rel=0.02)
    assert effective < estimate_cost(arch, shape).flops            # the static cost: the cap, 3 per token


def test_a_space_can_pick_the_relu_router_without_a_top_p():
    space = parse_space({"layers": 1, "d_model": 8, "layer": {
        "attention": [{"kind": "full", "heads": 2}],
        "ffn": [{"kind": "moe", "experts": 4, "top_k": [2, 3], "router": ["topk", "relu"]}]}})
    routers = {space.sample(RandomSuggester(seed)).layers[0].ffn.router for seed in range(20)}
    assert {r.kind for r in routers} == {"topk", "relu"}
    relu = next(r for r in routers if r.kind == "relu")
    assert relu.top_p == RouterConfig().top_p            # unused: held at its default
    arch = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2), FFNConfig("moe", 1, 4, relu)),))
    assert "relu" in arch.describe()
    shape = TaskShape(seq_len=5, num_classes=3, vocab_size=7)
    assert estimate_cost(arch, shape).params == sum(p.numel() for p in build_model(arch, shape).parameters())


def test_router_l1_weight_is_checked():
    LossWeights(router_l1=0.5).validate("training.loss_weights")
    with pytest.raises(ConfigError, match="training.loss_weights.router_l1"):
        LossWeights(router_l1=-1.0).validate("training.loss_weights")


def test_a_seeded_short_run_gives_tokens_different_k():
    """Trained on ``hard_easy`` with the L1 on, the router has pruned below its cap
    and realises different k for different tokens of the validation split."""
    options = {"n_experiences": 1, "hard_terms": 2, "n_train": 400, "n_val": 64, "n_test": 8}
    task = build_task(TaskSettings("hard_easy", options), seed=0)
    ffn = FFNConfig("moe", expansion=1, experts=4, router=RouterConfig("relu", 4))
    arch = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), ffn),))
    cfg = TrainingSettings(steps_per_experience=120, batch_size=32, lr=3e-3, seed=0, device="cpu",
                           loss_weights=LossWeights(router_l1=0.01))
    x, _ = task.experiences[0].val.tensors
    with tempfile.TemporaryDirectory() as tmp:
        fit(arch, task, cfg, checkpoint_dir=tmp)
        model = build_model(arch, task.shape)
        fresh_k = realised_k(model, x)
        model.load_state_dict(load_state(Path(tmp) / STATE_FILE)["model"])
    k = realised_k(model, x)
    assert (fresh_k == 4).all()
    assert k.float().mean() < 4 and len(set(k.tolist())) > 1


def realised_k(model, x: torch.Tensor) -> torch.Tensor:
    """(N*T,) experts the one MoE layer gave each token of ``x``."""
    router = next(m for m in model.modules() if isinstance(m, ReLURouter))
    seen = []
    hook = router.register_forward_hook(lambda _m, _i, out: seen.append(out.valid.sum(-1)))
    with torch.no_grad():
        model.eval()(x)
    hook.remove()
    return seen[0]
