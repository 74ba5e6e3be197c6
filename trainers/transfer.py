"""``--init-from``: start training from a bundle's weights, on the same or another task.

What transfers (the README's table says the same):

* the blocks (attention, FFN / MoE experts and routers) and the final norm: always,
  since they depend only on the architecture, which must be the bundle's own;
* the input embedding: when the input kind and size match (same patch size / vocab);
* the learned positions: when the sequence length matches;
* the head: when the number of classes matches.

A part that does not transfer keeps its fresh initialisation (seeded as usual).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from torch import nn

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.errors import DynasError

from .bundle import Bundle, load_weights, read_bundle, read_weights

PARTS = {"embed": "embed.", "positions": "pos", "head": "head."}


@dataclass
class TransferPlan:
    bundle: Bundle
    reinitialised: tuple[str, ...]          # parts of PARTS left fresh, with why

    def describe(self) -> str:
        fresh = ", ".join(self.reinitialised) or "nothing"
        return f"initialised from {self.bundle.path}: blocks and norm loaded; re-initialised: {fresh}"


def plan_transfer(path: str | os.PathLike, arch: ArchConfig, shape: TaskShape) -> TransferPlan:
    """Check the bundle fits ``arch`` and decide what transfers to a model of ``shape``."""
    bundle = read_bundle(path)
    if bundle.arch != arch:
        raise DynasError(f"--init-from {bundle.path}: holds architecture {bundle.arch.arch_id}, not "
                         f"{arch.arch_id}; pass --arch {bundle.path / 'arch.json'} or leave --arch out")
    old = bundle.shape
    fresh = []
    if (old.input_dim, old.vocab_size) != (shape.input_dim, shape.vocab_size):
        fresh.append(f"embed (input {old.input_dim or old.vocab_size} -> {shape.input_dim or shape.vocab_size})")
    if old.seq_len != shape.seq_len:
        fresh.append(f"positions (seq_len {old.seq_len} -> {shape.seq_len})")
    if old.num_classes != shape.num_classes or old.per_token != shape.per_token:
        fresh.append(f"head (classes {old.num_classes} -> {shape.num_classes})")
    return TransferPlan(bundle, tuple(fresh))


def initialiser(plan: TransferPlan) -> Callable[[nn.Module], None]:
    """``fit(init=...)``: load the transferable tensors into the fresh model."""
    skip = tuple(PARTS[r.split()[0]] for r in plan.reinitialised)

    def init(model: nn.Module) -> None:
        tensors = read_weights(plan.bundle.weights_path, plan.bundle.arch.arch_id)
        tensors = {k: v for k, v in tensors.items() if not k.startswith(skip)}
        load_weights(model, tensors, plan.bundle.weights_path, skip=skip)

    return init
