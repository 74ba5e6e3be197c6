"""The continual-learning system: a model plus everything essential to training it.

Lightning's "systems vs models": the transformer (``build_model``) is the model; this
module owns what makes the training continual: the replay batch mixed into every step,
DER++ logit matching, the auxiliary routing losses with explicit weights, the router
bias step, the curriculum's promotion checks and its sampler, input masking, and a
fresh optimiser per experience. Callbacks only evaluate and log.

Loss of one step (each term the step has is logged under ``train/<name>``, ``_log_terms``;
a term the model or settings never produce, such as ``balance`` for a dense FFN, gets no tag)::

    loss = task + w_replay * replay + der_alpha * der
           + balance * aux_balance + z_loss * aux_z + span * aux_span
           + router_entropy * aux_router_entropy + router_l1 * aux_router_l1

``task``: CE over all classes (class-IL; task-IL restricts logits to the sample's
experience; ER-ACE, ``replay.loss: ace``, to the classes of the incoming batch). ``replay``: the same CE on a replay batch as large as the current one,
weighted 1 (``equal``) or 1/t (``inverse_t``, t = experiences seen). ``der``: MSE
between current and stored logits of the replay batch. Shape legend: B batch,
T tokens, C classes.
"""
from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

from dynas.search_space.arch import TaskShape
from dynas.search_space.reference import model_from_dict
from dynas.search_space.schema import from_mapping
from dynas.search_space.settings import TrainingSettings

from .curriculum import Curriculum, CurriculumBatchSampler, apply_input_mask, mask_ratio
from .evaluation import IGNORE, accuracy, cross_entropy, difficulty_scores, restrict
from .model import build_model
from .modules.span import DynamicSpanAttention
from .replay import ReplayBuffer
from .results import NonFiniteLoss
from .tasks.base import Experience

AUX_TERMS = ("balance", "z_loss", "span", "router_entropy", "router_l1")   # from the model, weighted
LOSS_TERMS = ("task", "replay", "der", *AUX_TERMS)
MASK_ID = 0      # token id written over masked positions (see curriculum.apply_input_mask)


def lr_factor(warmup: float, min_lr: float, steps: int):
    """The multiplier of ``lr`` at optimiser step ``t`` of an experience of ``steps``:
    linear from 1/w up to 1 at step w - 1 over the first w = round(warmup x steps) steps
    (no ramp when w is 0: step 0 is the peak), then a cosine from that peak down to
    ``min_lr`` at the last step."""
    w = round(warmup * steps)
    peak = max(w - 1, 0)
    decay = max(1, steps - 1 - peak)

    def factor(t: int) -> float:
        if t < peak or (t == peak and w > 0):
            return (t + 1) / w
        progress = min(1.0, (t - peak) / decay)
        return min_lr + (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


class _Batches(Dataset):
    """A TensorDataset fetched a whole batch at a time (no per-sample collation)."""

    def __init__(self, dataset: TensorDataset):
        self.x, self.y = dataset.tensors[:2]

    def __len__(self) -> int:
        return len(self.y)

    def __getitems__(self, idx: list[int]) -> tuple[Tensor, Tensor]:
        idx_t = torch.as_tensor(idx, dtype=torch.long)
        return self.x[idx_t], self.y[idx_t]


def _identity(batch):
    return batch


class ContinualSystem(L.LightningModule):
    """Trains one model through a stream of experiences, one ``Trainer.fit`` each.

    The constructor takes plain data only (saved as hyper-parameters, so a checkpoint
    loads with ``weights_only=True``). ``class_table[i]`` lists experience i's classes.
    Before each ``Trainer.fit`` the driver calls ``begin_experience``.
    """

    def __init__(self, arch: dict, shape: dict, training: dict,
                 class_table: list[list[int]], scenario: str = "class_il", model: torch.nn.Module | None = None):
        super().__init__()
        self.save_hyperparameters(ignore=["model"])
        self.arch = model_from_dict(arch)
        self.shape = TaskShape(**shape)
        self.cfg: TrainingSettings = from_mapping(TrainingSettings, training, "training")
        # ``model``: trained instead of arch's own (a weight-sharing supernet,
        # trainers.supernet, which says itself whether it uses router biases)
        self.model = build_model(self.arch, self.shape) if model is None else model
        for module in self.model.modules():     # training.dropout: every dropout of the model
            if isinstance(module, torch.nn.Dropout):
                module.p = self.cfg.dropout
        self.scenario = scenario
        self.uses_bias = getattr(model, "uses_bias", None)
        if self.uses_bias is None:
            self.uses_bias = any(l.ffn.kind == "moe" and l.ffn.balance == "bias" for l in self.arch.layers)
        r = self.cfg.replay
        self.replay = (ReplayBuffer(r.policy, r.budget, seed=self.cfg.seed)
                       if r.policy != "none" and r.budget > 0 else None)
        # task-IL: each class's experience and each experience's class mask
        c = self.shape.num_classes
        exp_of_class = torch.zeros(c, dtype=torch.long)
        masks = torch.zeros(len(class_table), c, dtype=torch.bool)
        for i, classes in enumerate(class_table):
            exp_of_class[list(classes)] = i
            masks[i, list(classes)] = True
        self.register_buffer("exp_of_class", exp_of_class, persistent=False)
        self.register_buffer("exp_masks", masks, persistent=False)
        self.experience: Experience | None = None
        self.curriculum: Curriculum | None = None

    # --- the driver's hooks ----------------------------------------------------------
    def begin_experience(self, index: int, experience: Experience, steps: int, seen: int,
                         seed: int) -> None:
        """Set up experience ``index`` (``seen`` = experiences seen including it)."""
        self.experience, self.exp_index, self.exp_steps, self.seen = experience, index, steps, seen
        self.generator = torch.Generator().manual_seed(seed)        # replay, masking, random scores
        self.sampler_seed = seed + 1
        self._sums: dict[str, Tensor] = {}
        self._count = 0
        self.last_terms: dict[str, Tensor] = {}
        for module in self.model.modules():
            if isinstance(module, DynamicSpanAttention):
                module.penalty_hold = self.cfg.loss_weights.span_hold   # no L1 until the range is learned
                if index > 0:     # a later experience: learned spans open again (modules.span)
                    module.new_experience()
        cur = self.cfg.curriculum
        self.curriculum = None
        if cur.kind != "none":
            task_levels = experience.levels
            num_levels = None
            if cur.kind == "random" and task_levels is not None:    # the twin ignores the task's order
                num_levels, task_levels = int(torch.as_tensor(task_levels).max()) + 1, None
            self.curriculum = Curriculum(cur, experience=index, total_steps=steps,
                                         num_train=len(experience.train), task_levels=task_levels,
                                         num_levels=num_levels)

    def train_dataloader(self) -> DataLoader:
        train = self.experience.train
        sampler = CurriculumBatchSampler(len(train), self.cfg.batch_size, self.exp_steps,
                                         self.sampler_seed, self.curriculum)
        if isinstance(train, TensorDataset):
            return DataLoader(_Batches(train), batch_sampler=sampler, collate_fn=_identity)
        return DataLoader(train, batch_sampler=sampler)

    def configure_optimizers(self):
        """Called by every ``Trainer.fit``: a fresh AdamW per experience, and with
        ``warmup`` > 0 a fresh linear warm-up over the first steps of that experience
        (the fresh Adam's first moment estimates meet a new task's large gradients
        gently), then ``lr`` (``constant``) or a cosine to ``min_lr`` x ``lr``
        (``cosine``), stepped every optimiser step."""
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.cfg.lr,
                                      weight_decay=self.cfg.weight_decay)
        if self.cfg.lr_schedule == "constant" and self.cfg.warmup == 0:
            return optimizer
        floor = 1.0 if self.cfg.lr_schedule == "constant" else self.cfg.min_lr
        factor = lr_factor(self.cfg.warmup, floor, self.exp_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # --- one step -------------------------------------------------------------------
    def forward(self, x: Tensor):
        return self.model(x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        n = y.shape[0]
        ratio = mask_ratio(self.cfg.curriculum.mask_schedule, self.trainer.global_step, self.exp_steps)
        inputs, labels = apply_input_mask(x, ratio, self.generator, MASK_ID), y
        stored = None
        if self.replay is not None and len(self.replay) > 0:
            rx, ry, stored = self.replay.sample(n, self.generator)
            inputs = torch.cat([inputs, rx.to(self.device)])
            labels = torch.cat([y, ry.to(self.device)])
        out = self.model(inputs)
        logits = restrict(out.logits, self._task_mask(labels))     # (B', C) or (B', T, C)
        terms = {"task": cross_entropy(self._incoming(logits[:n], y), y)}   # absent terms count as 0
        if labels.shape[0] > n:
            terms["replay"] = cross_entropy(logits[n:], labels[n:])
            if stored is not None:
                terms["der"] = F.mse_loss(out.logits[n:], stored.to(self.device))
        for name in AUX_TERMS:
            if name in out.aux_losses:
                terms[name] = out.aux_losses[name]
        loss = self._total(terms)
        if not torch.isfinite(loss):
            shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            raise NonFiniteLoss(f"loss {float(loss.detach())} at experience {self.exp_index} "
                                f"step {self.trainer.global_step} ({shown})")
        if self.replay is not None:
            self._remember(x, y, out.logits[:n])
        self._log_terms(terms | {"loss": loss})
        return loss

    def _log_terms(self, terms: dict[str, Tensor]) -> None:
        """Each term's mean over the last ``log_every`` steps (and over the experience's
        last, shorter window) as ``train/<name>``: kept in ``last_terms`` and written,
        with the learning rate (``train/lr``), to the trainer's logger at step = steps done.

        Written straight to the logger: ``self.log_dict`` costs ~2 ms per term on CPU
        (more than a tiny model's step) and only flushes on Lightning's own schedule,
        which drops an experience's last partial window. Terms are summed as tensors
        (no device sync) until a window closes.
        """
        for k, v in terms.items():
            v = v.detach()
            self._sums[k] = self._sums[k] + v if k in self._sums else v
        self._count += 1
        done = self.trainer.global_step + 1
        if done % self.cfg.log_every == 0 or done >= self.exp_steps:
            zero = self._sums["loss"].new_zeros(())
            self.last_terms = {f"train/{k}": self._sums.get(k, zero) / self._count
                               for k in (*LOSS_TERMS, "loss")}
            if self.logger is not None:       # only the terms these steps had: no constant-zero tags
                lr = self.trainer.optimizers[0].param_groups[0]["lr"]
                values = {k: float(v) for k, v in self.last_terms.items()
                          if k.removeprefix("train/") in self._sums} | {"train/lr": lr}
                self.logger.log_metrics(values, step=done)
            self._sums, self._count = {}, 0

    def _total(self, terms: dict[str, Tensor]) -> Tensor:
        """The weighted sum of the terms present (a missing term is 0)."""
        w, r = self.cfg.loss_weights, self.cfg.replay
        weights = {"task": 1.0, "replay": 1.0 if r.weight == "equal" else 1.0 / max(1, self.seen),
                   "der": r.der_alpha, "balance": w.balance, "z_loss": w.z_loss, "span": w.span,
                   "router_entropy": w.router_entropy, "router_l1": w.router_l1}
        loss = terms["task"]
        for name, value in terms.items():
            if name != "task" and weights[name]:
                loss = loss + weights[name] * value
        return loss

    def _incoming(self, logits: Tensor, y: Tensor) -> Tensor:
        """ER-ACE (``replay.loss: ace``) once there is something to replay: the
        incoming batch's logits restricted to the classes it contains."""
        if self.cfg.replay.loss != "ace" or self.replay is None or len(self.replay) == 0:
            return logits
        present = torch.zeros(logits.shape[-1], dtype=torch.bool, device=logits.device)
        present[y[y != IGNORE]] = True
        return restrict(logits, present)

    def _task_mask(self, y: Tensor) -> Tensor | None:
        """(B, C) allowed classes per sample for task-IL (from its label), else None."""
        if self.scenario != "task_il":
            return None
        if y.dim() == 2:                       # per-token: the first labelled position
            valid = y != IGNORE
            y = y.gather(1, valid.float().argmax(1, keepdim=True)).squeeze(1).clamp_min(0)
        return self.exp_masks[self.exp_of_class[y]]

    @torch.no_grad()
    def _remember(self, x: Tensor, y: Tensor, logits: Tensor) -> None:
        """Offer the (unmasked) current batch to the buffer, logits kept for DER++."""
        keep_logits = logits.detach() if self.cfg.replay.der_alpha > 0 else None
        groups = torch.full((y.shape[0],), self.exp_index) if y.dim() > 1 else None
        self.replay.add(x.detach(), y.detach(), keep_logits, groups=groups)

    # --- after the optimiser step: router biases, curriculum --------------------------
    def on_train_start(self) -> None:
        if self.curriculum is not None:
            self._begin_stage(0, "start")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.uses_bias:
            self.model.update_router_biases(self.cfg.loss_weights.bias_update_rate)
        cur = self.curriculum
        if cur is None:
            return
        step = self.trainer.global_step
        if cur.capped(step):
            cur.promote()
            self._begin_stage(step, "max_stage_steps")
        elif cur.due(step):
            acc = self._val_accuracy(cur.val_subset())
            if self.logger is not None:     # every check, not only those on a log_every step
                self.logger.log_metrics({"curriculum/val_accuracy": acc}, step=step)
            if cur.observe(acc):
                cur.promote()
                self._begin_stage(step, "accuracy", acc)

    def _val_accuracy(self, indices: Tensor | None) -> float:
        return accuracy(self.model, self.experience.val, batch_size=self.cfg.eval_batch_size,
                        device=self.device, mask=self._task_mask, indices=indices,
                        precision=self.cfg.precision)

    def _begin_stage(self, step: int, reason: str, val_accuracy: float | None = None) -> None:
        """Score the experience with the current model and freeze the stage's order."""
        exp = self.experience
        common = dict(kind=self.cfg.curriculum.kind, classes=exp.classes,
                      num_classes=self.shape.num_classes, batch_size=self.cfg.eval_batch_size,
                      device=self.device, generator=self.generator, precision=self.cfg.precision)
        train_scores = difficulty_scores(self.model, exp.train, **common)
        if self.curriculum.task_levels is not None:     # the task's levels; scores break ties
            self.curriculum.begin_stage(step, train_scores, val_levels=getattr(exp, "val_levels", None),
                                        reason=reason, val_accuracy=val_accuracy)
            return
        val_scores = difficulty_scores(self.model, exp.val, **common)
        self.curriculum.begin_stage(step, train_scores, val_scores=val_scores, reason=reason,
                                    val_accuracy=val_accuracy)

    # --- checkpoints carry the replay buffer ---------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.replay is not None:
            checkpoint["replay"] = self.replay.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.replay is not None and checkpoint.get("replay") is not None:
            self.replay.load_state_dict(checkpoint["replay"])
