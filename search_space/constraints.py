"""Reject candidates before training: structural checks, FLOPs/params budgets and the
memory a trial may use.

A parsed ``ArchSpace`` only samples buildable architectures; these checks still run on
every candidate because archs also arrive from files, records, plugins and other
policies. ``size_problem`` is the guard against absurd sizes (``d_model: 1e9``,
``experts: 1e6``): the cost model's parameters and activations, priced as training
holds them, against the memory the trial is allowed, before any tensor exists.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from .arch import ArchConfig, TaskShape
from .base import Candidate, Space
from .cost import estimate_cost
from .errors import ConfigError, InfeasibleError
from .settings import Budget
from .suggest import RandomSuggester, Suggester


# Training keeps per parameter: the fp32 weight, its gradient and AdamW's two moments.
TRAINING_BYTES_PER_PARAM = 16


@dataclass(frozen=True)
class MemoryLimit:
    """What one trial may hold: ``limit_bytes`` for ``batch_size`` samples at a time."""

    batch_size: int
    limit_bytes: float

    @classmethod
    def per_trial(cls, batch_size: int, concurrent: int = 1, gb: float = 0.0) -> "MemoryLimit":
        """``gb`` GiB when set (``search.memory_per_trial_gb``), else this machine's
        physical memory shared by ``concurrent`` trials."""
        total = gb * 2**30 if gb > 0 else machine_memory_bytes()
        return cls(batch_size, total / max(1, concurrent))


def machine_memory_bytes() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):   # not POSIX: no limit we can know
        return float("inf")


def training_bytes(arch: ArchConfig, shape: TaskShape, batch_size: int) -> float:
    """Estimated memory to train ``arch``: parameters as training holds them plus the
    activations backward keeps for one batch (the cost model's rough estimate)."""
    cost = estimate_cost(arch, shape)
    return TRAINING_BYTES_PER_PARAM * cost.params + cost.activation_bytes * batch_size


def size_problem(arch: ArchConfig, shape: TaskShape, memory: MemoryLimit) -> str:
    """Why ``arch`` is too big to train within ``memory``, or ""."""
    need = training_bytes(arch, shape, memory.batch_size)
    if need > memory.limit_bytes:
        return (f"needs about {fmt(need / 2**30)} GiB to train ({fmt(estimate_cost(arch, shape).params)} "
                f"params, batch {memory.batch_size}), more than the {fmt(memory.limit_bytes / 2**30)} GiB "
                "a trial may use")
    return ""


def is_feasible(arch: Candidate, shape: TaskShape | None, budget: Budget | None,
                memory: MemoryLimit | None = None) -> tuple[bool, str]:
    """``(True, "")`` or ``(False, reason)``; the reason names the violated limit.

    Plain-space candidates (``Assignment``) have no structure or cost: always feasible
    (an experiment refuses budgets on a plain space at load time).
    """
    if not isinstance(arch, ArchConfig):
        return True, ""
    problem = structural_problem(arch)
    if problem:
        return False, problem
    if memory is not None and shape is not None:
        problem = size_problem(arch, shape, memory)
        if problem:
            return False, problem
    if budget is None or not (budget.max_flops or budget.max_params):
        return True, ""
    if shape is None:
        raise ValueError("a FLOPs/params budget needs the task shape")
    cost = estimate_cost(arch, shape)
    if budget.max_flops and cost.flops > budget.max_flops:
        return False, f"flops {fmt(cost.flops)} > max_flops {fmt(budget.max_flops)}"
    if budget.max_params and cost.params > budget.max_params:
        return False, f"params {fmt(cost.params)} > max_params {fmt(budget.max_params)}"
    return True, ""


def structural_problem(arch: ArchConfig) -> str:
    """The first reason ``arch`` cannot be built (heads vs d_model, top_k vs experts,
    ranges), or "". Reuses the configs' own validation, so the rules live in one place."""
    try:
        arch.validate()
        for i, layer in enumerate(arch.layers):
            layer.attention.validate(f"layers[{i}].attention")
            layer.ffn.validate(f"layers[{i}].ffn")
            if layer.ffn.router is not None:
                layer.ffn.router.validate(f"layers[{i}].ffn.router")
    except ConfigError as err:
        return str(err)
    return ""


def sample_feasible(space: Space, make_suggester: Callable[[int], Suggester],
                    shape: TaskShape | None, budget: Budget | None, tries: int = 200) -> Candidate:
    """Rejection sampling: the first feasible candidate among ``tries`` samples.

    ``make_suggester(attempt)`` gives the suggester for each attempt; to know the
    decisions of the accepted one, return a ``RecordingSuggester`` and keep the last.
    Raises ``InfeasibleError`` with an example reason when nothing passes.
    """
    if tries < 1:
        raise ValueError(f"tries must be >= 1, got {tries}")
    first_reason = ""
    for attempt in range(tries):
        candidate = space.sample(make_suggester(attempt))
        ok, reason = is_feasible(candidate, shape, budget)
        if ok:
            return candidate
        first_reason = first_reason or reason
    raise InfeasibleError(f"nothing feasible in {tries} samples: e.g. {first_reason}")


def require_feasible(space: Space, shape: TaskShape | None, budget: Budget | None, *,
                     seed: int = 0, tries: int = 200, source: str | None = None) -> None:
    """Refuse up front a budget that no sampled candidate meets, so a search never
    spends its trials on rejections. The error names the file and the limit
    (``exp.yaml: search.budget.max_flops: nothing feasible ...``)."""
    if shape is None or budget is None or not (budget.max_flops or budget.max_params):
        return
    try:
        sample_feasible(space, lambda i: RandomSuggester(seed + i), shape, budget, tries)
    except InfeasibleError as err:
        limit = "max_flops" if "> max_flops" in str(err) else "max_params"  # is_feasible's reasons
        where = f"{source}: " if source else ""
        raise InfeasibleError(f"{where}search.budget.{limit}: {err}") from None


def fmt(x: float) -> str:
    """Compact numbers for messages: 1200000 -> 1.2e6, 640 -> 640."""
    text = f"{x:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text
