"""What the dynamic blocks did, measured on the validation pass after each experience.

After every experience's training, one pass over each experience's validation split
(no test data: these numbers feed ``flops_effective``, which a policy may optimise)
measures, in evaluation mode (so with spans cropped):

* **spans**: each ``dynamic_span`` layer's learned span per head (tokens) and the
  crop its evaluation runs at (``search_space.kinds.attention.cropped_span``);
* **realised k**: per MoE layer, how many tokens the router gave k = 0..K experts
  (``hist``) and their mean (``mean``), over every token of the pass;
* **expert load**: per MoE layer, each expert's share of the slots the router
  assigned over the pass (``evaluation.expert_fractions``: sums to 1), so a dead
  expert shows experience by experience, not only in the final record's
  ``expert_load`` (records written before this entry existed simply lack it);
* **bits**: the mean cross-entropy per labelled token, in bits, per experience (a row
  of the bits matrix B; bits per character on ``text_lm``).

Shape legend: B batch, T tokens, C classes, K router slots.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynas.search_space.kinds.attention import cropped_span
from dynas.search_space.names import FINAL_AVG_BPC, FORGETTING_BPC

from .evaluation import IGNORE, accumulate_experts, batches, eval_mode, expert_fractions
from .modules import MoE
from .modules.span import DynamicSpanAttention


def learned_spans(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``"layers.<i>.attn"`` -> {"heads": spans per head, "crop": evaluated window}."""
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, DynamicSpanAttention):
            spans = [float(s) for s in module.spans().detach().cpu()]
            out[name] = {"heads": spans,
                         "crop": cropped_span(max(spans), module.max_span, module.ramp)}
    return out


def _bits(logits: Tensor, y: Tensor) -> Tensor:
    """(2,) float64: sum of cross-entropy in nats and labelled items of one batch, on
    the logits' device (read back once per dataset, not per batch)."""
    if logits.dim() == 3:
        logits, y = logits.flatten(0, 1), y.flatten()            # (B*T, C), (B*T,)
    nll = F.cross_entropy(logits.float(), y, ignore_index=IGNORE, reduction="sum")
    return torch.stack([nll.double(), (y != IGNORE).sum().double()])


def measure(model: nn.Module, datasets: Sequence, *, batch_size: int,
            device: torch.device, precision: str = "fp32") -> tuple[list[float], dict[str, Any]]:
    """(bits row over ``datasets``, dynamics entry) from one no-grad pass in ``precision``."""
    k_counts: dict[str, Tensor] = {}
    expert_counts: dict[str, Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, MoE):
            def hook(_m, _inputs, out, name=name):
                accumulate_experts(expert_counts, {name: out.tokens_per_expert})   # on the device
                if out.tokens_per_k is not None:
                    per_k = out.tokens_per_k.detach()
                    k_counts[name] = k_counts[name] + per_k if name in k_counts else per_k
            hooks.append(module.register_forward_hook(hook))
    row = []
    try:
        with eval_mode(model, precision):
            for dataset in datasets:
                tally = torch.zeros(2, dtype=torch.float64, device=device)   # nats, items
                for x, y in batches(dataset, batch_size):
                    tally += _bits(model(x.to(device)).logits, y.to(device))
                nats, count = tally.tolist()
                row.append(nats / math.log(2.0) / count if count else 0.0)
    finally:
        for h in hooks:
            h.remove()
    k_counts = {name: c.cpu() for name, c in k_counts.items()}
    load = expert_fractions({name: c.cpu() for name, c in expert_counts.items()})
    return row, {"spans": learned_spans(model), "k": realised_k(k_counts), "expert_load": load}


def realised_k(k_counts: dict[str, Tensor]) -> dict[str, dict[str, Any]]:
    """Tokens per k -> {"mean": mean k, "hist": tokens with k = 0..K} per MoE layer."""
    out = {}
    for name, counts in sorted(k_counts.items()):
        counts = counts.double()
        mean = float((counts * torch.arange(len(counts))).sum() / counts.sum().clamp_min(1))
        out[name] = {"mean": mean, "hist": [int(c) for c in counts]}
    return out


def bits_metrics(rows: Sequence[Sequence[float]]) -> dict[str, float]:
    """Final average bits and forgetting in bits (how much B[j][j] rose by the end)."""
    last = len(rows) - 1
    final = rows[last][:last + 1]
    rise = [rows[last][j] - rows[j][j] for j in range(last)]
    return {FINAL_AVG_BPC: sum(final) / len(final),
            FORGETTING_BPC: sum(rise) / len(rise) if rise else 0.0}


class DynamicsLogger(L.Callback):
    """After each experience: one validation pass (``measure``) over every experience.

    ``bits_rows`` is B (row i after training experience i); ``history`` the dynamics
    entry of each experience (``{"experience", "spans", "k", "expert_load"}``); both may be pre-filled
    by a resumed run.
    """

    def __init__(self, experiences: Sequence, *, batch_size: int, precision: str = "fp32"):
        self.precision = precision
        self.experiences, self.batch_size = experiences, batch_size
        self.bits_rows: list[list[float]] = []
        self.history: list[dict[str, Any]] = []

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row, entry = measure(pl_module.model, [e.val for e in self.experiences],
                             batch_size=self.batch_size, device=pl_module.device,
                             precision=self.precision)
        self.bits_rows.append(row)
        self.history.append({"experience": len(self.history), **entry})
        if trainer.logger is not None:
            logged = {f"val/bits_exp{j}": b for j, b in enumerate(row)}
            logged |= {f"realised_k/{n}": v["mean"] for n, v in entry["k"].items()}
            logged |= {f"span_crop/{n}": v["crop"] for n, v in entry["spans"].items()}
            logged |= {f"span/{n}/head{h}": z for n, v in entry["spans"].items()
                       for h, z in enumerate(v["heads"])}
            trainer.logger.log_metrics(logged, step=trainer.global_step)
