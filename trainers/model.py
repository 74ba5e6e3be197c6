"""``build_model``: the one place where config kinds become modules.

Shape legend: B batch, T tokens, D model, C classes, E experts, I input features.

A new attention or FFN kind is one module, one entry in ``ATTENTION_BUILDERS`` or
``FFN_BUILDERS``, one case in the contract tests, and its cost in
``search_space.cost``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from search_space.arch import ArchConfig, AttentionConfig, FFNConfig, TaskShape

from .modules import (Block, DenseFFN, DynamicRouter, DynamicSpanAttention, ExpertGroup,
                      FullAttention, LinearAttention, MoE, SlidingWindowAttention,
                      TopKRouter)


# --- registries ----------------------------------------------------------------------
def _full(cfg: AttentionConfig, d: int, causal: bool) -> nn.Module:
    return FullAttention(d, cfg.heads, causal=causal)


def _sliding(cfg: AttentionConfig, d: int, causal: bool) -> nn.Module:
    return SlidingWindowAttention(d, cfg.heads, cfg.window, causal=causal)


def _span(cfg: AttentionConfig, d: int, causal: bool) -> nn.Module:
    return DynamicSpanAttention(d, cfg.heads, cfg.max_span, causal=causal)


def _linear(cfg: AttentionConfig, d: int, causal: bool) -> nn.Module:
    return LinearAttention(d, cfg.heads, causal=causal)


ATTENTION_BUILDERS: dict[str, Callable[[AttentionConfig, int, bool], nn.Module]] = {
    "full": _full,
    "sliding_window": _sliding,
    "dynamic_span": _span,
    "linear": _linear,
}


def _dense(cfg: FFNConfig, d: int) -> nn.Module:
    return DenseFFN(d, cfg.expansion * d)


def _moe(cfg: FFNConfig, d: int) -> nn.Module:
    hidden = cfg.expansion * d
    losses = {"aux_loss": ("balance",), "z_loss": ("z_loss",)}.get(cfg.balance, ())
    common = dict(aux_losses=losses, bias_balance=cfg.balance == "bias")
    r = cfg.router
    if r.kind == "dynamic":
        router = DynamicRouter(d, cfg.experts, r.top_k, r.top_p, **common)
    else:
        router = TopKRouter(d, cfg.experts, r.top_k, **common)
    shared = DenseFFN(d, cfg.shared_experts * hidden) if cfg.shared_experts else None
    return MoE(ExpertGroup(cfg.experts, d, hidden), router, shared, cfg.capacity_factor)


FFN_BUILDERS: dict[str, Callable[[FFNConfig, int], nn.Module]] = {
    "dense": _dense,
    "moe": _moe,
}


# --- the model -----------------------------------------------------------------------
@dataclass
class ModelOutput:
    logits: Tensor                               # (B, C), or (B, T, C) when per_token
    aux_losses: dict[str, Tensor]                # by kind, summed over layers
    tokens_per_expert: dict[str, Tensor]         # "layers.<i>.ffn" -> (E,)


class DynasModel(nn.Module):
    """Embedding + learned positions, the blocks, a final norm and a head."""

    def __init__(self, arch: ArchConfig, shape: TaskShape, blocks: list[Block]):
        super().__init__()
        d = arch.d_model
        self.arch, self.shape = arch, shape
        if shape.input_dim:
            self.embed: nn.Module = nn.Linear(shape.input_dim, d)
        else:
            self.embed = nn.Embedding(shape.vocab_size, d)
        self.pos = nn.Parameter(torch.zeros(shape.seq_len, d))
        nn.init.normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(blocks)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, shape.num_classes)

    def forward(self, x: Tensor) -> ModelOutput:
        """x: (B, T, I) floats or (B, T) token ids, T <= shape.seq_len."""
        t = x.shape[1]
        if t > self.shape.seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds seq_len={self.shape.seq_len}")
        h = self.embed(x) + self.pos[:t]                          # (B, T, D)
        aux: dict[str, Tensor] = {}
        loads: dict[str, Tensor] = {}
        for i, block in enumerate(self.layers):
            out = block(h)
            h = out.x
            for name, value in out.aux_losses.items():
                aux[name] = aux[name] + value if name in aux else value
            if out.tokens_per_expert is not None:
                loads[f"layers.{i}.ffn"] = out.tokens_per_expert
        h = self.norm(h)
        if not self.shape.per_token:
            h = h.mean(dim=1)                                     # (B, D)
        return ModelOutput(self.head(h), aux, loads)

    def update_router_biases(self, rate: float) -> None:
        """DeepSeek-V3 bias step for every ``balance: bias`` MoE layer; call after
        each optimiser step."""
        for module in self.modules():
            if isinstance(module, MoE):
                module.update_router_bias(rate)


def build_model(arch: ArchConfig, shape: TaskShape) -> DynasModel:
    arch.validate()
    blocks = []
    for layer in arch.layers:
        attn = ATTENTION_BUILDERS[layer.attention.kind](layer.attention, arch.d_model, shape.causal)
        ffn = FFN_BUILDERS[layer.ffn.kind](layer.ffn, arch.d_model)
        blocks.append(Block(attn, ffn, arch.d_model))
    return DynasModel(arch, shape, blocks)
