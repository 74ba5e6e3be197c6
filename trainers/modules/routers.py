"""Routers: which experts each token uses, with what weight, and what balancing costs.

Shape legend: N tokens, D model, E experts, K slots per token (top_k, the cap for the
dynamic router).

Every router computes probabilities p = softmax(gate(x) / tau) with a learnable
temperature tau = exp(log_temperature) (the ``relu`` router gates with ReLU scores
instead and keeps p for the balance loss). Optional DeepSeek-V3 style balancing adds a
per-expert bias to the scores used for *selection only* (gate weights stay the
unbiased p); the bias is a buffer nudged after each optimiser step towards the mean
load, not trained by gradient. Aux losses are returned by name; the trainer weighs them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .registry import builder

AUX_LOSSES = ("balance", "z_loss")


@dataclass
class RouterOutput:
    """``experts``/``weights``/``valid`` are (N, K); a slot with valid False is unused
    (the dynamic router picks fewer than K for that token)."""

    experts: Tensor
    weights: Tensor
    valid: Tensor
    probs: Tensor                     # (N, E)
    aux_losses: dict[str, Tensor]


class _Router(nn.Module):
    def __init__(self, d_model: int, experts: int, top_k: int,
                 aux_losses: tuple[str, ...] = ("balance",), bias_balance: bool = False):
        super().__init__()
        unknown = set(aux_losses) - set(AUX_LOSSES)
        if unknown:
            raise ValueError(f"unknown aux losses {sorted(unknown)}; known: {AUX_LOSSES}")
        if not 1 <= top_k <= experts:
            raise ValueError(f"top_k={top_k} must be in [1, experts={experts}]")
        self.num_experts, self.top_k = experts, top_k
        self.aux_loss_names = tuple(aux_losses)
        self.gate = nn.Linear(d_model, experts, bias=False)
        nn.init.normal_(self.gate.weight, std=0.02)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.bias_balance = bias_balance
        self.register_buffer("selection_bias", torch.zeros(experts))

    def _scores(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, D) -> logits (N, E), probs (N, E), selection scores (N, E)."""
        logits = self.gate(x) / self.log_temperature.exp()
        probs = logits.softmax(dim=-1)
        select = probs + self.selection_bias if self.bias_balance else probs
        return logits, probs, select

    def _aux(self, logits: Tensor, probs: Tensor, experts: Tensor, valid: Tensor) -> dict:
        aux: dict[str, Tensor] = {}
        if "balance" in self.aux_loss_names:  # Switch: E * sum_e f_e * P_e, 1 when balanced
            # unused slots add 0 (no boolean-mask indexing: that would read the device)
            counts = torch.zeros_like(probs[0]).index_add_(
                0, experts.reshape(-1), valid.reshape(-1).to(probs.dtype))
            frac = counts / counts.sum().clamp(min=1.0)
            aux["balance"] = self.num_experts * (frac * probs.mean(dim=0)).sum()
        if "z_loss" in self.aux_loss_names:   # ST-MoE: keeps logits small and stable
            aux["z_loss"] = logits.logsumexp(dim=-1).square().mean()
        return aux

    @torch.no_grad()
    def update_bias(self, tokens_per_expert: Tensor, rate: float) -> None:
        """DeepSeek-V3: raise the bias of under-loaded experts, lower over-loaded ones."""
        load = tokens_per_expert.to(self.selection_bias)
        self.selection_bias += rate * torch.sign(load.mean() - load)


class TopKRouter(_Router):
    """The k best experts per token. Weights are p renormalised over the k chosen
    (for k = 1, the raw p as in Switch, so the gate still gets a task gradient)."""

    def forward(self, x: Tensor) -> RouterOutput:
        logits, probs, select = self._scores(x)
        experts = select.topk(self.top_k, dim=-1).indices            # (N, K)
        weights = probs.gather(1, experts)                           # (N, K)
        if self.top_k > 1:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        valid = torch.ones_like(experts, dtype=torch.bool)
        return RouterOutput(experts, weights, valid, probs,
                            self._aux(logits, probs, experts, valid))


class DynamicRouter(_Router):
    """Top-p routing (Huang et al., 2024): the fewest experts whose probability reaches
    ``top_p``, at most ``top_k``, so k depends on the token. Weights are the raw p of
    the chosen experts (renormalising would give single-expert tokens weight 1 and no
    gradient to the gate).

    Aux loss ``"router_entropy"``: the mean entropy of p per token, their "dynamic
    loss": a near-uniform p needs many experts to reach ``top_p``, so penalising the
    entropy is the compute penalty on k (weight ``loss_weights.router_entropy``, 0 by
    default)."""

    def __init__(self, d_model: int, experts: int, top_k: int, top_p: float, **kwargs):
        super().__init__(d_model, experts, top_k, **kwargs)
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        self.top_p = top_p

    def forward(self, x: Tensor) -> RouterOutput:
        logits, probs, select = self._scores(x)
        experts = select.topk(self.top_k, dim=-1).indices            # (N, K), best first
        weights = probs.gather(1, experts)                           # (N, K)
        mass_before = weights.detach().cumsum(dim=-1) - weights.detach()
        valid = mass_before < self.top_p       # keep adding experts until mass >= top_p
        weights = weights * valid
        aux = self._aux(logits, probs, experts, valid)
        aux["router_entropy"] = -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()
        return RouterOutput(experts, weights, valid, probs, aux)


class ReLURouter(_Router):
    """ReLU routing (ReMoE, Wang et al., ICLR 2025): gate weights
    r = ReLU(gate(x) / tau + 1); an expert serves a token while its r is positive, so
    k is however many of a token's scores stay above zero, at most ``top_k`` (the slots;
    the largest r first). k can be 0: the block's residual carries the token.

    Aux loss ``"router_l1"``: the mean over tokens of sum_e r_e (r >= 0: its L1 norm),
    ReMoE's sparsity penalty (weight ``loss_weights.router_l1``). Unlike top-p with an
    entropy penalty, nothing ties one token's k to another's: the task gradient keeps
    an expert on where its output lowers the loss, the L1 switches it off elsewhere,
    so k can follow how much a token needs the experts.

    The +1 offset starts every token dense: a fresh gate's logits are near 0, so every
    score starts near 1 and a fresh router uses the cap (the cost model's k, exact at
    initialisation, an upper bound after); the L1 then prunes, as ReMoE's dense start.
    No parameter beyond the shared gate and temperature: the gate has no bias, but the
    MoE's pre-norm bias (a direction every token shares) lets it lower all scores at
    once, down to k = 0 everywhere where the experts do not help."""

    OFFSET = 1.0

    def forward(self, x: Tensor) -> RouterOutput:
        logits = self.gate(x) / self.log_temperature.exp()             # (N, E)
        probs = logits.softmax(dim=-1)
        scores = F.relu(logits + self.OFFSET)                           # (N, E) >= 0
        select = scores + self.selection_bias if self.bias_balance else scores
        experts = select.topk(self.top_k, dim=-1).indices              # (N, K)
        weights = scores.gather(1, experts)                            # (N, K)
        valid = weights > 0
        aux = self._aux(logits, probs, experts, valid)
        aux["router_l1"] = scores.sum(dim=-1).mean()
        return RouterOutput(experts, weights, valid, probs, aux)


@builder("router", "topk")
def build_topk(cfg, d_model: int, experts: int, **balancing) -> nn.Module:
    return TopKRouter(d_model, experts, cfg.top_k, **balancing)


@builder("router", "dynamic")
def build_dynamic(cfg, d_model: int, experts: int, **balancing) -> nn.Module:
    return DynamicRouter(d_model, experts, cfg.top_k, cfg.top_p, **balancing)


@builder("router", "relu")
def build_relu(cfg, d_model: int, experts: int, **balancing) -> nn.Module:
    return ReLURouter(d_model, experts, cfg.top_k, **balancing)
