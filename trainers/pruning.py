"""Structured pruning of a trained model: experts, attention heads, FFN channels.

A *plan* (plain JSON) lists, per layer, the indices kept: ``experts`` (by measured
load: the tokens each expert received on the validation splits), ``heads`` and ``ffn``
channels (per expert for a mixture) by an importance. Two importances exist:
``weight`` norms (a head: ||W_out[:, head]|| * ||W_v[head]||; a channel: ||up row|| *
||down column||), which need no data, and ``taylor`` (Molchanov et al. 2019): the
squared first-order change of the loss when the head's or channel's output is zeroed,
summed over batches of training (replay) data. It is measured, not assumed, which
one keeps more accuracy (``benchmarks/pruning.py``). ``apply_plan`` performs the
surgery in place, so the same plan rebuilds a pruned model from its architecture
before its weights are loaded (``trainers.compress``); ``compose`` turns the plans of
successive rounds (iterative pruning) into one plan on the original model.
Shape legend: D model, H heads, Dh head dim, F hidden, E experts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from dynas.search_space.errors import ConfigError, DynasError

from .modules.attention import HeadProjection
from .modules.ffn import DenseFFN
from .modules.glu import GLUExpertGroup, GLUFFN
from .modules.moe import MoE, ExpertGroup


@dataclass(frozen=True)
class PruneSpec:
    """``experts``: experts kept per MoE layer (0 = all); ``heads``: heads kept per
    attention layer (0 = all); ``ffn``: fraction of FFN channels kept (1 = all)."""

    experts: int = 0
    heads: int = 0
    ffn: float = 1.0

    @classmethod
    def parse(cls, text: str) -> "PruneSpec":
        """``experts=N,heads=N,ffn=F`` (any subset)."""
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("experts", "heads", "ffn"):
                raise ConfigError("--prune", f"{part!r}: expected experts=N, heads=N or ffn=F")
            try:
                values[key] = float(value) if key == "ffn" else int(value)
            except ValueError:
                raise ConfigError(f"--prune.{key}", f"not a number: {value!r}") from None
        spec = cls(**values)
        if spec.experts < 0 or spec.heads < 0 or not 0 < spec.ffn <= 1:
            raise ConfigError("--prune", f"experts, heads >= 1 (0 = all) and 0 < ffn <= 1, got {text!r}")
        return spec


# --- importance ------------------------------------------------------------------------
def head_importance(proj: HeadProjection) -> Tensor:
    """(H,) ||W_out[:, head]|| * ||W_v[head]||."""
    h, dh = proj.heads, proj.head_dim
    out = proj.out.weight.detach().view(-1, h, dh).norm(dim=(0, 2))               # (H,)
    v = proj.qkv.weight.detach().view(3, h, dh, -1)[2].norm(dim=(1, 2))         # (H,)
    return out * v


def channel_importance(ffn: nn.Module) -> Tensor:
    """(F,) for a dense/GLU FFN, (E, F) for an expert group: ||in|| * ||out|| per channel."""
    if isinstance(ffn, (DenseFFN, GLUFFN)):
        return ffn.up.weight.detach().norm(dim=1) * ffn.down.weight.detach().norm(dim=0)
    if isinstance(ffn, (ExpertGroup, GLUExpertGroup)):
        return ffn.w_up.detach().norm(dim=1) * ffn.w_down.detach().norm(dim=2)
    raise DynasError(f"FFN pruning supports dense, glu and MoE experts, not {type(ffn).__name__}")


def gradient_importance(model: nn.Module, data: Iterable[tuple[Tensor, Tensor]],
                        loss_fn: Callable[[Tensor, Tensor], Tensor]) -> dict[str, Tensor]:
    """Taylor importance per head and FFN channel: ``{'layers.<i>.heads': (H,),
    'layers.<i>.ffn': (F,) or (E, F)}``.

    A gate g on a head's (a channel's) output has dL/dg = sum(W * dL/dW) over the
    columns of the output projection (the rows of W_down) that read it, so the score
    needs no hooks: one backward pass per batch, (dL/dg)^2 summed over batches."""
    targets: dict[str, tuple[Tensor, Callable[[Tensor], Tensor]]] = {}
    for i, block in enumerate(model.layers):
        proj = getattr(block.attn, "proj", None)
        if isinstance(proj, HeadProjection):
            h, dh = proj.heads, proj.head_dim
            targets[f"layers.{i}.heads"] = (proj.out.weight, lambda g, h=h, dh=dh: g.view(-1, h, dh).sum((0, 2)))
        group = block.ffn.experts if isinstance(block.ffn, MoE) else block.ffn
        if isinstance(group, (DenseFFN, GLUFFN)):
            targets[f"layers.{i}.ffn"] = (group.down.weight, lambda g: g.sum(0))            # (D, F) -> (F,)
        elif isinstance(group, (ExpertGroup, GLUExpertGroup)):
            targets[f"layers.{i}.ffn"] = (group.w_down, lambda g: g.sum(2))                 # (E, F, D) -> (E, F)
    scores = {name: torch.zeros(()) for name in targets}
    was_training = model.training
    model.eval()                                           # no dropout; gradients still flow
    try:
        for x, y in data:
            model.zero_grad(set_to_none=True)
            loss_fn(model(x).logits, y).backward()
            for name, (w, reduce) in targets.items():
                scores[name] = scores[name] + reduce((w * w.grad).detach()).pow(2)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return scores


def top(scores: Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, in ascending index order."""
    return sorted(scores.topk(k).indices.tolist())


def make_plan(model: nn.Module, spec: PruneSpec, loads: dict[str, Tensor],
              importance: dict[str, Tensor] | None = None) -> list[dict[str, Any]]:
    """The kept indices of every layer; ``loads['layers.<i>.ffn']`` = (E,) tokens per
    expert; ``importance``: ``gradient_importance``'s scores (else weight norms)."""
    importance = importance or {}
    plan = []
    for i, block in enumerate(model.layers):
        entry: dict[str, Any] = {}
        proj = getattr(block.attn, "proj", None)
        if spec.heads and isinstance(proj, HeadProjection) and spec.heads < proj.heads:
            scores = importance.get(f"layers.{i}.heads")
            entry["heads"] = top(head_importance(proj) if scores is None else scores, spec.heads)
        ffn = block.ffn
        if isinstance(ffn, MoE) and spec.experts and spec.experts < ffn.experts.num_experts:
            entry["experts"] = top(loads[f"layers.{i}.ffn"].float(), spec.experts)
        if spec.ffn < 1:
            group = ffn.experts if isinstance(ffn, MoE) else ffn
            scores = importance.get(f"layers.{i}.ffn")
            scores = channel_importance(group) if scores is None else scores
            if "experts" in entry:
                scores = scores[entry["experts"]]
            k = max(1, round(spec.ffn * scores.shape[-1]))
            entry["ffn"] = [top(s, k) for s in scores] if scores.dim() == 2 else top(scores, k)
        plan.append(entry)
    return plan


# --- surgery ---------------------------------------------------------------------------
def _linear(weight: Tensor, bias: Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


def _keep_heads(attn: nn.Module, keep: list[int]) -> None:
    proj: HeadProjection = attn.proj
    h, dh = proj.heads, proj.head_dim
    idx = torch.tensor(keep)
    rows = (torch.arange(3)[:, None, None] * h * dh + idx[None, :, None] * dh
            + torch.arange(dh)[None, None, :]).reshape(-1)                      # q, k, v rows of kept heads
    cols = (idx[:, None] * dh + torch.arange(dh)[None, :]).reshape(-1)
    qkv, out = proj.qkv, proj.out
    proj.qkv = _linear(qkv.weight.detach()[rows], None if qkv.bias is None else qkv.bias.detach()[rows])
    proj.out = _linear(out.weight.detach()[:, cols], None if out.bias is None else out.bias.detach())
    proj.heads = len(keep)
    for name, p in list(attn.named_parameters(recurse=False)):                # per-head parameters
        if p.shape[:1] == (h,):
            setattr(attn, name, nn.Parameter(p.detach()[idx].clone()))


def _keep_experts(moe: MoE, keep: list[int]) -> None:
    idx = torch.tensor(keep)
    group, router = moe.experts, moe.router
    for name, p in list(group.named_parameters(recurse=False)):
        setattr(group, name, nn.Parameter(p.detach()[idx].clone()))
    router.gate = _linear(router.gate.weight.detach()[idx], None)
    router.selection_bias = router.selection_bias[idx].clone()
    router.num_experts, router.top_k = len(keep), min(router.top_k, len(keep))
    moe.pending_load = moe.pending_load[idx].clone()


def _keep_channels(ffn: nn.Module, keep: list[int] | list[list[int]]) -> None:
    if isinstance(ffn, (DenseFFN, GLUFFN)):
        idx = torch.tensor(keep)
        for name in ("gate", "up"):
            layer = getattr(ffn, name, None)
            if layer is not None:
                setattr(ffn, name, _linear(layer.weight.detach()[idx], None if layer.bias is None else layer.bias.detach()[idx]))
        ffn.down = _linear(ffn.down.weight.detach()[:, idx], None if ffn.down.bias is None else ffn.down.bias.detach())
        return
    idx = torch.tensor(keep)                                                     # (E, F')
    for name, p in list(ffn.named_parameters(recurse=False)):
        w = p.detach()
        if name == "w_down":                                                    # (E, F, D)
            w = torch.stack([w[e, idx[e]] for e in range(len(idx))])
        elif name == "b_up":                                                    # (E, F)
            w = torch.stack([w[e, idx[e]] for e in range(len(idx))])
        elif name.startswith("w_"):                                             # (E, D, F)
            w = torch.stack([w[e][:, idx[e]] for e in range(len(idx))])
        setattr(ffn, name, nn.Parameter(w.clone()))


def apply_plan(model: nn.Module, plan: list[dict[str, Any]]) -> None:
    """Cut ``model`` (a ``DynasModel``) to the plan's kept indices, in place."""
    if len(plan) != len(model.layers):
        raise DynasError(f"pruning plan has {len(plan)} layers, the model {len(model.layers)}")
    for block, entry in zip(model.layers, plan):
        if "heads" in entry:
            _keep_heads(block.attn, entry["heads"])
        if "experts" in entry:
            _keep_experts(block.ffn, entry["experts"])
        if "ffn" in entry:
            _keep_channels(block.ffn.experts if isinstance(block.ffn, MoE) else block.ffn, entry["ffn"])


def compose(first: list[dict[str, Any]], second: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One plan on the original model equal to applying ``first`` and then ``second``
    (whose indices count the layers as ``first`` left them)."""
    return [_compose_entry(a, b) for a, b in zip(first, second)]


def _compose_entry(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    def through(outer: list[int] | None, inner: list[int]) -> list[int]:
        return list(inner) if outer is None else [outer[j] for j in inner]

    entry = dict(a)
    if "heads" in b:
        entry["heads"] = through(a.get("heads"), b["heads"])
    if "experts" in b:
        entry["experts"] = through(a.get("experts"), b["experts"])
    old, new = a.get("ffn"), b.get("ffn")
    per_expert = isinstance((new or old or [None])[0], list)
    if per_expert:
        n = len(old) if old is not None else len(new)
        chosen = b.get("experts", range(n))                  # current experts b keeps, in order
        if new is None:
            entry["ffn"] = [old[k] for k in chosen]
        else:
            entry["ffn"] = [through(None if old is None else old[k], new[j]) for j, k in enumerate(chosen)]
    elif new is not None:
        entry["ffn"] = through(old, new)
    return entry
