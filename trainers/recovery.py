"""Recovery after pruning: distil the unpruned model into the pruned one, on replay.

Continual setting: a compressed model must keep every experience it has seen, so the
recovery data is a class-balanced replay sample of *each* seen experience's training
split (``replay_sample``), not the last experience and not the validation or test
splits (validation is what the settings are chosen on, test is only reported).

The loss (Hinton et al. 2015) mixes the teacher's soft targets and the labels:
``alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, y)``
(T^2 keeps the gradient scale of the soft term independent of T). Teacher logits
are computed once for the whole sample (the teacher is frozen, in eval mode).

``prune_and_recover`` prunes in ``rounds`` equal steps towards the spec, recomputing
importances and recovering after each (iterative pruning); one round is one-shot.
The settings are ``recovery_settings.RecoverySettings`` (torch-free, for the CLI).
Shape legend: B batch, T tokens, C classes.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .evaluation import IGNORE, cross_entropy
from .pruning import PruneSpec, apply_plan, compose, gradient_importance, make_plan
from .recovery_settings import RecoverySettings

@dataclass
class ReplaySample:
    """The recovery data: ``x``, ``y`` and the ``experience`` (B,) each row came from."""

    x: Tensor
    y: Tensor
    experience: Tensor

    def __len__(self) -> int:
        return len(self.y)


def replay_sample(task: Any, per_class: int, seen: int | None = None, seed: int = 0) -> ReplaySample:
    """Up to ``per_class`` training samples of each class of each of the first ``seen``
    experiences (all by default), drawn without replacement by ``seed``. Per-token
    labels have no single class: those experiences give ``per_class`` samples per class
    they introduce, drawn uniformly."""
    generator = torch.Generator().manual_seed(seed)
    xs, ys, exps = [], [], []
    for exp in task.experiences[:seen]:
        x, y = exp.train.tensors[:2]
        if y.dim() == 1:
            groups = [torch.nonzero(y == c).flatten() for c in exp.classes]
        else:
            groups = [torch.arange(len(y))]
        per_group = per_class if y.dim() == 1 else per_class * max(1, len(exp.classes))
        for idx in groups:
            pick = idx[torch.randperm(len(idx), generator=generator)[:per_group]]
            xs.append(x[pick])
            ys.append(y[pick])
            exps.append(torch.full((len(pick),), exp.index, dtype=torch.long))
    return ReplaySample(torch.cat(xs), torch.cat(ys), torch.cat(exps))


def _positions(logits: Tensor, y: Tensor) -> Tensor:
    """(N, C): per-sample logits, or the labelled positions of per-token logits."""
    return logits if logits.dim() == 2 else logits[y != IGNORE]


def kl_divergence(student: Tensor, teacher: Tensor, y: Tensor, temperature: float) -> Tensor:
    """Mean KL(teacher_T || student_T) over samples (labelled positions)."""
    s = F.log_softmax(_positions(student, y) / temperature, dim=-1)
    t = F.log_softmax(_positions(teacher, y) / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean")


def distillation_loss(student: Tensor, teacher: Tensor, y: Tensor, temperature: float, alpha: float) -> Tensor:
    soft = kl_divergence(student, teacher, y, temperature) * temperature ** 2
    return alpha * soft + (1 - alpha) * cross_entropy(student, y)


def teacher_logits(teacher: nn.Module, x: Tensor, batch_size: int = 256) -> Tensor:
    teacher.eval()
    with torch.no_grad():
        return torch.cat([teacher(x[i:i + batch_size]).logits for i in range(0, len(x), batch_size)])


def recover(student: nn.Module, teacher: nn.Module, sample: ReplaySample, settings: RecoverySettings,
            seed: int = 0, targets: Tensor | None = None) -> None:
    """``settings.steps`` AdamW steps of ``distillation_loss`` on batches drawn uniformly
    from ``sample`` (so class-balanced over every seen experience); ``targets``: the
    teacher's logits on ``sample`` when already computed."""
    targets = teacher_logits(teacher, sample.x) if targets is None else targets
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(student.parameters(), lr=settings.lr)
    student.train()
    for _ in range(settings.steps):
        idx = torch.randint(len(sample), (settings.batch_size,), generator=generator)
        loss = distillation_loss(student(sample.x[idx]).logits, targets[idx], sample.y[idx],
                                 settings.temperature, settings.alpha)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    student.eval()


def _batches(sample: ReplaySample, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for i in range(0, len(sample), size):
        yield sample.x[i:i + size], sample.y[i:i + size]


def round_specs(spec: PruneSpec, heads: int, rounds: int) -> list[PruneSpec]:
    """Per round, the spec relative to the model the previous round left: heads and
    experts counted down in equal steps, the FFN fraction multiplied down in equal
    steps (``heads``: the model's head count, for the intermediate counts)."""
    specs, kept = [], 1.0
    for r in range(1, rounds + 1):
        share = r / rounds
        ffn = 1 - (1 - spec.ffn) * share
        step_heads = round(heads - (heads - spec.heads) * share) if spec.heads else 0
        specs.append(PruneSpec(experts=spec.experts if r == rounds else 0, heads=step_heads, ffn=ffn / kept))
        kept = ffn
    return specs


def prune_and_recover(model: nn.Module, task: Any, spec: PruneSpec, settings: RecoverySettings,
                      loads: dict[str, Tensor], seed: int = 0) -> tuple[list[dict[str, Any]], nn.Module]:
    """(the plan on ``model``, the pruned and recovered copy); ``model`` is the teacher
    and is not changed. Importances are measured on the replay sample, never on the
    validation or test splits."""
    sample = replay_sample(task, settings.per_class, seed=seed)
    targets = teacher_logits(model, sample.x)
    heads = max((getattr(getattr(b.attn, "proj", None), "heads", 0) for b in model.layers), default=0)
    student, plan = copy.deepcopy(model), [{} for _ in model.layers]
    for r, step in enumerate(round_specs(spec, heads, settings.rounds)):
        scores = None
        if settings.importance == "taylor":
            scores = gradient_importance(student, _batches(sample, 16), cross_entropy)
        step_plan = make_plan(student, step, loads if r == settings.rounds - 1 else {}, scores)
        apply_plan(student, step_plan)
        plan = compose(plan, step_plan)
        recover(student, model, sample, settings, seed=seed + r, targets=targets)
    return plan, student
