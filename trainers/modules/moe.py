"""Mixture of experts with sorted dispatch, capacity and shared experts.

Shape legend: B batch, T tokens, N = B * T flat tokens, D model, F expert hidden,
E experts, K slots per token, S routed (token, expert) slots, C capacity per expert.

Dispatch sorts the S slots by expert (a stable argsort, so earlier tokens come first
within an expert), keeps at most C slots per expert, runs each expert once on its
contiguous slice (a loop of matmuls, or with several CPU threads one padded ``bmm``
per matmul: ``grouped.py`` says when), and scatters the gated results back with
``index_add``. No expert ever sees a token that was not routed to it. A dropped slot contributes zero; the
block's residual connection carries the token through.

Host syncs: exactly one per forward, ``counts.tolist()`` (the split sizes each expert
runs on must be Python ints). Everything else stays on the input's device: slots the
dynamic router leaves unused go to a virtual expert E that sorts last and never runs
(no boolean-mask indexing), counts use ``index_add_`` (CUDA ``bincount`` reads its
maximum on the host), and the capacity cut is built from the host counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynas.search_space.arch import FFNConfig

from .grouped import grouped_mm, pad, padded_slots, unpad, use_padded
from .registry import BUILDERS, builder


class ExpertGroup(nn.Module):
    """E two-layer GELU experts, weights stored batched: (E, D, F) and (E, F, D).

    ``EXPERT_WEIGHTS`` names the stacked matmul weights, (E, in, out) each, for code
    that transforms expert matmuls (quantisation): ``expert_weights()`` returns them."""

    EXPERT_WEIGHTS = ("w_up", "w_down")

    def __init__(self, experts: int, d_model: int, hidden: int):
        super().__init__()
        self.w_up = nn.Parameter(torch.empty(experts, d_model, hidden))
        self.b_up = nn.Parameter(torch.empty(experts, hidden))
        self.w_down = nn.Parameter(torch.empty(experts, hidden, d_model))
        self.b_down = nn.Parameter(torch.empty(experts, d_model))
        for w, b, fan_in in ((self.w_up, self.b_up, d_model), (self.w_down, self.b_down, hidden)):
            bound = 1.0 / math.sqrt(fan_in)          # nn.Linear's default init
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)

    @property
    def num_experts(self) -> int:
        return self.w_up.shape[0]

    def expert_weights(self) -> dict[str, Tensor]:
        """The stacked (E, in, out) matmul weights by attribute name (biases excluded)."""
        return {name: getattr(self, name) for name in self.EXPERT_WEIGHTS}

    def forward(self, x: Tensor, counts: list[int]) -> Tensor:
        """x (S, D) sorted by expert, ``counts[e]`` rows each -> (S, D)."""
        return (self.padded if use_padded(x, counts) else self.loop)(x, counts)

    def padded(self, x: Tensor, counts: list[int]) -> Tensor:
        """``forward`` as one padded bmm per matmul (``grouped.py``)."""
        slots, cap = padded_slots(counts, x.device)
        xp = pad(x, slots, len(counts), cap)                                  # (E, C, D)
        h = F.gelu(grouped_mm(xp, self.w_up, self.b_up, slots))               # (E, C, F)
        return unpad(grouped_mm(h, self.w_down, self.b_down, slots), slots)   # (S, D)

    def loop(self, x: Tensor, counts: list[int]) -> Tensor:
        """``forward`` as a loop of per-expert matmuls."""
        # unbind once: indexing w[e] per expert would make backward build E full-size
        # zero gradients; unbind's backward stacks the E slices in one copy.
        params = zip(self.w_up.unbind(0), self.b_up.unbind(0),
                     self.w_down.unbind(0), self.b_down.unbind(0))
        outs = []
        for (w_up, b_up, w_down, b_down), chunk, n in zip(params, x.split(counts), counts):
            if n:
                h = F.gelu(torch.addmm(b_up, chunk, w_up))             # (n, F)
                chunk = torch.addmm(b_down, h, w_down)                 # (n, D)
            outs.append(chunk)
        return torch.cat(outs)


@dataclass
class MoEOutput:
    out: Tensor                           # (B, T, D)
    aux_losses: dict[str, Tensor]
    tokens_per_expert: Tensor             # (E,) slots the router assigned, before drops
    dropped_fraction: Tensor              # () share of assigned slots over capacity
    tokens_per_k: Tensor | None = None    # (K+1,) tokens that the router gave k = 0..K slots


class MoE(nn.Module):
    """Routed experts (+ an optional shared expert every token uses).

    ``capacity_factor`` 0 is dropless; otherwise each expert keeps at most
    C = ceil(capacity_factor * S / E) slots per forward (S = N * K for top-k routing).
    Routing loads are accumulated across forwards in training mode for
    ``update_router_bias`` (DeepSeek-V3 balancing) and reset by it.
    """

    def __init__(self, experts: nn.Module, router: nn.Module,
                 shared_expert: nn.Module | None = None, capacity_factor: float = 0.0):
        super().__init__()
        if router.num_experts != experts.num_experts:
            raise ValueError("router and expert group disagree on the number of experts")
        self.experts = experts
        self.router = router
        self.shared_expert = shared_expert
        self.capacity_factor = capacity_factor
        self.register_buffer("pending_load", torch.zeros(experts.num_experts), persistent=False)

    def forward(self, x: Tensor) -> MoEOutput:
        b, t, d = x.shape
        e = self.experts.num_experts
        flat = x.reshape(b * t, d)                                      # (N, D)
        route = self.router(flat)
        k = route.experts.shape[1]
        # an unused slot (dynamic k) goes to the virtual expert e: sorted last, never run
        slot_expert = route.experts.masked_fill(~route.valid, e).reshape(-1)   # (N*K,)
        slot_token = torch.arange(b * t, device=x.device).repeat_interleave(k)
        slot_weight = route.weights.reshape(-1)
        order = torch.argsort(slot_expert, stable=True)                 # (N*K,)
        counts = _count(slot_expert, e + 1)[:e]                         # (E,) assigned slots
        host = counts.tolist()                  # the one host sync: split sizes
        kept_host, kept, order = self._dispatch(order, counts, host)
        token = slot_token[order]                                       # (S_kept,)
        y = self.experts(flat.index_select(0, token), kept_host)        # (S_kept, D)
        y = (y * slot_weight[order].unsqueeze(-1)).to(flat.dtype)     # autocast-safe
        out = torch.zeros_like(flat).index_add_(0, token, y)            # (N, D)
        if self.shared_expert is not None:
            out = out + self.shared_expert(flat)
        if self.training:
            self.pending_load += counts.to(self.pending_load)
        routed = counts.sum().clamp(min=1)
        dropped = 1.0 - kept.sum().to(x.dtype) / routed
        per_k = _count(route.valid.sum(dim=1), k + 1)                   # (K+1,) realised k
        return MoEOutput(out.view(b, t, d), route.aux_losses, counts, dropped, per_k)

    def _dispatch(self, order: Tensor, counts: Tensor,
                  host: list[int]) -> tuple[list[int], Tensor, Tensor]:
        """Slots each expert keeps, as Python ints and as an (E,) tensor, and their
        positions in ``order``: the first C of each expert's sorted run (in token order)
        when there is a capacity, else every routed slot (the virtual expert's, sorted
        last, cut off)."""
        routed = sum(host)
        if self.capacity_factor <= 0:
            return host, counts, order[:routed]
        capacity = math.ceil(self.capacity_factor * routed / len(host))
        kept_host = [min(c, capacity) for c in host]
        total = sum(kept_host)
        kept = counts.clamp(max=capacity)                               # (E,)
        starts = torch.cumsum(counts, 0) - counts                       # (E,) run starts
        kept_starts = torch.cumsum(kept, 0) - kept                      # (E,) in the output
        # position i of the output belongs to expert j: starts[j] + (i - kept_starts[j])
        offset = (starts - kept_starts).repeat_interleave(kept, output_size=total)
        return kept_host, kept, order[torch.arange(total, device=order.device) + offset]

    def update_router_bias(self, rate: float) -> None:
        """Apply the loads seen since the last call to the router's selection bias."""
        # no "any load?" test: it would read the device each step, and an all-zero load
        # moves no bias (sign(mean - load) = 0)
        if self.router.bias_balance:
            self.router.update_bias(self.pending_load, rate)
        self.pending_load.zero_()


def _count(index: Tensor, size: int) -> Tensor:
    """(size,) occurrences of each value of ``index``: ``bincount`` without its host read."""
    return torch.zeros(size, dtype=torch.long, device=index.device).index_add_(
        0, index, torch.ones_like(index))


@builder("expert", "dense")
def build_dense_experts(experts: int, d_model: int, hidden: int) -> nn.Module:
    return ExpertGroup(experts, d_model, hidden)


@builder("ffn", "moe")
def build_moe(cfg: FFNConfig, d_model: int) -> nn.Module:
    """Experts and shared expert of kind ``cfg.expert``, the router of its kind."""
    hidden = cfg.expansion * d_model
    losses = {"aux_loss": ("balance",), "z_loss": ("z_loss",)}.get(cfg.balance, ())
    router = BUILDERS["router"].get(cfg.router.kind)(
        cfg.router, d_model, cfg.experts, aux_losses=losses, bias_balance=cfg.balance == "bias")
    shared = None
    if cfg.shared_experts:
        wide = FFNConfig(cfg.expert, expansion=cfg.shared_experts * cfg.expansion)
        shared = BUILDERS["ffn"].get(cfg.expert)(wide, d_model)
    experts = BUILDERS["expert"].get(cfg.expert)(cfg.experts, d_model, hidden)
    return MoE(experts, router, shared, cfg.capacity_factor)
