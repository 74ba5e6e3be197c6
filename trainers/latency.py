"""Measured forward latency: the median of repeated timed passes, in milliseconds.

Used for ``latency_ms`` (batch 1 on the trial's device, recorded with every trial and
usable as an objective next to FLOPs) and by ``dynas compress``'s before/after table.
The input is zeros of the task's shape: timing does not depend on values, except
through MoE routing, which zeros route like any other input.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from dynas.search_space.arch import TaskShape

REPEATS, WARMUP = 20, 3


def example_input(shape: TaskShape, batch: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, T, I) floats or (B, T) token ids of the task's full sequence length."""
    if shape.input_dim:
        return torch.zeros(batch, shape.seq_len, shape.input_dim, device=device)
    return torch.ones(batch, shape.seq_len, dtype=torch.long, device=device)


def median_latency_ms(model: nn.Module, x: torch.Tensor, repeats: int = REPEATS, warmup: int = WARMUP) -> float:
    """Median wall time of ``model(x)`` in eval mode without grad (CUDA synchronised)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.inference_mode():
            for i in range(warmup + repeats):
                sync()
                start = time.perf_counter()
                model(x)
                sync()
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
    return statistics.median(times)


def model_latency_ms(model: nn.Module, shape: TaskShape, batch: int = 1,
                     device: torch.device | str = "cpu", repeats: int = REPEATS) -> float:
    """``median_latency_ms`` of ``model`` moved to ``device`` (moved back after)."""
    before = next(model.parameters()).device
    model.to(device)
    try:
        return median_latency_ms(model, example_input(shape, batch, device), repeats)
    finally:
        model.to(before)


def interleaved_latency_ms(models: dict[str, nn.Module], x: torch.Tensor, repeats: int = REPEATS,
                           warmup: int = WARMUP) -> dict[str, float]:
    """Median ms of each model on ``x``, timed round-robin (CPU): on a shared machine the
    load falls evenly on all of them, so their ratios are fairer than back-to-back runs."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.eval()
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                if i >= warmup:
                    times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}
