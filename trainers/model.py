"""``build_model``: the one place where config kinds become modules.

Shape legend: B batch, T tokens, D model, C classes, E experts, I input features.

Builders are looked up by kind name in ``modules.BUILDERS``; each module file
registers its own (``@builder("attention", "full")``), under the name of the kind's
spec in ``search_space.kinds``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.cost import block_tokens

from .modules import BUILDERS, Block, MoE
from .output import ModelOutput
from .reference import ReferenceMLP


# --- the model -----------------------------------------------------------------------
class DynasModel(nn.Module):
    """Tokeniser, stem, positions, the blocks, a final norm and a head; the ends are
    built by kind (``arch.tokens``, ``stem``, ``norm``, ``head``, ``positions``)."""

    def __init__(self, arch: ArchConfig, shape: TaskShape, blocks: list[Block]):
        super().__init__()
        d = arch.d_model
        self.arch, self.shape = arch, shape
        t_in, width, t = block_tokens(arch, shape)
        self.tokens = BUILDERS["tokens"].get(arch.tokens)(shape)
        self.embed = BUILDERS["stem"].get(arch.stem)(width, d, shape.vocab_size)
        self.layers = nn.ModuleList(blocks)
        # the learned table (a parameter named ``pos``, as before kinds), or None: the
        # relative kinds attach themselves to the attention modules instead
        self.pos = BUILDERS["positions"].get(arch.positions)(self.layers, t, d)
        _, self.norm = BUILDERS["norm"].get(arch.norm)(d)
        self.head = BUILDERS["head"].get(arch.head)(d, t_in, shape.num_classes, shape.per_token)

    def forward(self, x: Tensor) -> ModelOutput:
        """x: (B, T, I) floats or (B, T) token ids, T <= shape.seq_len."""
        t = x.shape[1]
        if t > self.shape.seq_len:
            raise ValueError(f"sequence of {t} tokens exceeds seq_len={self.shape.seq_len}")
        h = self.head.prepend(self.embed(self.tokens(x)))         # (B, T', D)
        if self.pos is not None:
            h = h + self.pos[:h.shape[1]]
        aux: dict[str, Tensor] = {}
        loads: dict[str, Tensor] = {}
        for i, block in enumerate(self.layers):
            out = block(h)
            h = out.x
            for name, value in out.aux_losses.items():
                aux[name] = aux[name] + value if name in aux else value
            if out.tokens_per_expert is not None:
                loads[f"layers.{i}.ffn"] = out.tokens_per_expert
        return ModelOutput(self.head(self.norm(h)), aux, loads)

    def update_router_biases(self, rate: float) -> None:
        """DeepSeek-V3 bias step for every ``balance: bias`` MoE layer; call after
        each optimiser step."""
        for module in self.modules():
            if isinstance(module, MoE):
                module.update_router_bias(rate)


def build_model(arch: ArchConfig, shape: TaskShape) -> nn.Module:
    """The model of ``arch`` (or of a reference model, ``search_space.reference``)."""
    arch.validate()
    if not isinstance(arch, ArchConfig):
        return ReferenceMLP(arch, shape)
    post, _ = BUILDERS["norm"].get(arch.norm)(arch.d_model)
    blocks = []
    for layer in arch.layers:
        attn = BUILDERS["attention"].get(layer.attention.kind)(
            layer.attention, arch.d_model, shape.causal)
        ffn = BUILDERS["ffn"].get(layer.ffn.kind)(layer.ffn, arch.d_model)
        blocks.append(Block(attn, ffn, arch.d_model, post))
    return DynasModel(arch, shape, blocks)
