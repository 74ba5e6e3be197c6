"""Batched no-grad passes over a dataset: accuracy, difficulty scores, expert counts.

Shared by the system (promotion checks, curriculum scores), the evaluation-matrix
callbacks (one on the validation splits, one on the test splits) and
``evaluate_checkpoint``, so every accuracy in a run is computed one way.
Shape legend: B batch, T tokens, C classes, E experts.

Device: counts and scores are summed on the model's device and read back once per
pass, not once per batch (each read waits for the GPU); ``cross_entropy`` reads
nothing back, since it runs in every training step.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .precision import autocast

IGNORE = -100     # per-token label with no loss / no accuracy


def batches(dataset: Dataset, batch_size: int, indices: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """(x, y) batches in dataset order; TensorDatasets are sliced without collation."""
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors[:2]
        if indices is not None:
            x, y = x[indices], y[indices]
        for start in range(0, len(y), batch_size):
            yield x[start:start + batch_size], y[start:start + batch_size]
        return
    if indices is not None:
        dataset = Subset(dataset, indices.tolist())
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module, precision: str = "fp32"):
    """Eval mode and no grad inside (under ``precision``'s autocast on the model's
    device); the previous mode is restored after."""
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), "cpu")
    try:
        with torch.no_grad(), autocast(precision, device):
            yield
    finally:
        model.train(was_training)


def class_mask(classes: Sequence[int], num_classes: int, device=None) -> Tensor:
    """(C,) bool: True for ``classes``."""
    mask = torch.zeros(num_classes, dtype=torch.bool, device=device)
    mask[list(classes)] = True
    return mask


def restrict(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits of classes outside ``mask`` set to -inf (task-IL heads).

    logits: (B, C) or (B, T, C); mask: (C,) or per sample (B, C).
    """
    if mask is None:
        return logits
    if mask.dim() == 2 and logits.dim() == 3:
        mask = mask.unsqueeze(1)                                    # (B, 1, C)
    return logits.masked_fill(~mask, float("-inf"))


def cross_entropy(logits: Tensor, y: Tensor, reduction: str = "mean") -> Tensor:
    """CE for (B, C) logits with (B,) labels or (B, T, C) with (B, T) (-100 ignored)."""
    if logits.dim() == 3:
        per = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none")  # (B, T)
        if reduction == "none":
            valid = (y != IGNORE).float()
            return (per * valid).sum(1) / valid.sum(1).clamp_min(1.0)   # (B,)
        # ignored positions are 0 in ``per``; no labelled token at all gives 0
        return per.sum() / (y != IGNORE).sum().clamp_min(1)
    return F.cross_entropy(logits, y, reduction=reduction)


def correct_and_count(logits: Tensor, y: Tensor) -> Tensor:
    """(2,) correct predictions and labelled items (samples, or labelled tokens),
    on the logits' device."""
    pred = logits.argmax(-1)
    valid = y != IGNORE
    return torch.stack([((pred == y) & valid).sum(), valid.sum()])


def accumulate_experts(counts: dict[str, Tensor], tokens_per_expert: dict[str, Tensor]) -> None:
    """Add each layer's tokens per expert into ``counts`` (float, on their device)."""
    for name, tokens in tokens_per_expert.items():
        tokens = tokens.detach().float()
        counts[name] = counts[name] + tokens.to(counts[name].device) if name in counts else tokens.clone()


def accuracy(model: torch.nn.Module, dataset: Dataset, *, batch_size: int, device: torch.device,
             mask: Tensor | Callable[[Tensor], Tensor] | None = None, indices: Tensor | None = None,
             expert_counts: dict[str, Tensor] | None = None, precision: str = "fp32") -> float:
    """Accuracy of ``model`` on ``dataset`` (optionally ``indices`` of it).

    ``mask`` restricts predictions (task-IL): a (C,) mask, or a function of the labels
    giving (B, C) masks; ``expert_counts`` accumulates the tokens each expert
    received, per MoE layer. ``precision``: ``training.precision`` (``eval_mode``).
    """
    tally = torch.zeros(2, dtype=torch.long, device=device)          # correct, total
    loads: dict[str, Tensor] = {}
    with eval_mode(model, precision):
        for x, y in batches(dataset, batch_size, indices):
            out = model(x.to(device))
            y = y.to(device)
            allowed = mask(y) if callable(mask) else mask
            tally += correct_and_count(restrict(out.logits, allowed), y)
            if expert_counts is not None:
                accumulate_experts(loads, out.tokens_per_expert)
    if expert_counts is not None:                                    # read back once
        accumulate_experts(expert_counts, {name: c.cpu() for name, c in loads.items()})
    correct, total = tally.tolist()
    return correct / total if total else 0.0


def difficulty_scores(model: torch.nn.Module, dataset: Dataset, *, kind: str, classes: Sequence[int],
                      num_classes: int, batch_size: int, device: torch.device,
                      generator: torch.Generator | None = None, precision: str = "fp32") -> Tensor:
    """(N,) difficulty per sample, lower = easier.

    entropy: prediction entropy over the experience's classes ``classes`` (mean over
    labelled tokens for per-token tasks); loss: cross-entropy over those classes;
    random: uniform noise (the control twin).
    """
    n = len(dataset)
    if kind not in ("entropy", "loss", "random"):
        raise ValueError(f"unknown difficulty kind {kind!r}")
    if kind == "random":
        return torch.rand(n, generator=generator)
    mask = class_mask(classes, num_classes, device)
    out: list[Tensor] = []
    with eval_mode(model, precision):
        for x, y in batches(dataset, batch_size):
            logits = restrict(model(x.to(device)).logits, mask)      # (B, C) or (B, T, C)
            y = y.to(device)
            if kind == "loss":
                out.append(cross_entropy(logits, y, reduction="none").float())
                continue
            logp = torch.log_softmax(logits.float(), dim=-1)
            ent = -(logp.exp() * logp.masked_fill(~torch.isfinite(logp), 0.0)).sum(-1)  # (B,) or (B, T)
            if ent.dim() == 2:
                valid = (y != IGNORE).float()
                ent = (ent * valid).sum(1) / valid.sum(1).clamp_min(1.0)
            out.append(ent)
    return torch.cat(out).cpu() if out else torch.empty(0)                # read back once


SPLITS = ("val", "test")     # the Experience fields an accuracy matrix can be measured on


def evaluate_row(model: torch.nn.Module, experiences: Sequence, *, scenario: str, num_classes: int,
                 batch_size: int, device: torch.device, split: str = "val",
                 precision: str = "fp32") -> tuple[list[float], dict[str, Tensor]]:
    """Accuracy on ``split`` of every experience (seen or not): one row of the matrix R.

    ``split`` is ``val`` (what a search selects on) or ``test`` (held out, only
    reported). Task-IL restricts each experience's predictions to its classes. Also
    returns the tokens each expert received over the whole pass, per MoE layer.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}; expected one of {SPLITS}")
    counts: dict[str, Tensor] = {}
    row = []
    for exp in experiences:
        mask = class_mask(exp.classes, num_classes, device) if scenario == "task_il" else None
        row.append(accuracy(model, getattr(exp, split), batch_size=batch_size, device=device,
                            mask=mask, expert_counts=counts, precision=precision))
    return row, counts


def expert_fractions(counts: dict[str, Tensor]) -> dict[str, list[float]]:
    """Tokens per expert -> fraction of the layer's routed tokens (sums to 1)."""
    return {name: (c / c.sum().clamp_min(1e-12)).tolist() for name, c in sorted(counts.items())}
