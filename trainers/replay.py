"""Replay buffer: a fixed budget of past samples, rehearsed alongside new data.

Two policies decide what stays when the stream outgrows the budget:

* ``reservoir`` — Vitter's algorithm R: after n samples have been offered, every one of
  them is in the buffer with probability budget / n, whatever the experience it came
  from. Simple and unbiased, but a class that was rare in the stream stays rare.
* ``class_balanced`` — class-balancing reservoir sampling (Chrysakis & Moens, ICML
  2020): while full, a sample of a class that is not (one of) the largest evicts a
  random sample of a largest class; a sample of a largest class replaces a random
  sample of its own class with probability stored_c / seen_c (reservoir inside the
  class). The buffer converges to budget // classes seen per class.

The buffer optionally stores the model's logits at insertion time for DER++ (Buzzega
et al. 2020). Its whole state, random generator included, round-trips through
``state_dict`` so a resumed run makes the same choices. Shape legend: B batch,
N buffer slots (= budget), C classes.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import Tensor

POLICIES = ("reservoir", "class_balanced")
NO_GROUP = -1


class ReplayBuffer:
    """A fixed-size memory of (x, y[, logits]) filled from a stream of batches.

    Lifecycle: ``add`` each training batch (after the step, with its logits for DER++),
    ``sample`` a replay batch before the next step once ``len(buffer) > 0``.
    ``groups`` (B,) is what ``class_balanced`` balances: by default the class label y
    when y is one label per sample; per-token tasks must pass it (e.g. the experience
    index). Logits narrower than those already stored are zero-padded on the last
    (class) dimension, and stored ones are padded when a wider batch arrives.
    """

    def __init__(self, policy: str, budget: int, seed: int = 0):
        if policy not in POLICIES:
            raise ValueError(f"unknown replay policy {policy!r}; known: {', '.join(POLICIES)}")
        if budget < 0:
            raise ValueError(f"replay budget must be >= 0, got {budget}")
        self.policy, self.budget, self.seed = policy, budget, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.seen = 0                                  # samples offered so far
        self.size = 0                                  # slots filled
        self.x: Tensor | None = None                   # (N, ...)
        self.y: Tensor | None = None                   # (N, ...)
        self.logits: Tensor | None = None              # (N, ..., C)
        self.slot_groups: list[int] = []               # group of each filled slot
        self.slot_counts: Counter[int] = Counter()     # filled slots per group
        self.group_seen: Counter[int] = Counter()      # samples offered per group

    def __len__(self) -> int:
        return self.size

    # --- writing ------------------------------------------------------------------
    @torch.no_grad()
    def add(self, x: Tensor, y: Tensor, logits: Tensor | None = None, *, groups: Tensor | None = None) -> None:
        """Offer a batch; the policy decides which samples are kept and where."""
        batch = x.shape[0]
        group_list = self._groups(y, groups)
        if len(group_list) != batch or y.shape[0] != batch:
            raise ValueError(f"replay: batch of {batch} x with {y.shape[0]} y and {len(group_list)} groups")
        if self.budget == 0 or batch == 0:
            self.seen += batch
            return
        x, y = x.detach(), y.detach()
        logits = None if logits is None else logits.detach().float()
        self._ensure_storage(x, y, logits)
        if self.policy == "reservoir":
            slots = self._reservoir_slots(batch)
            for i, slot in enumerate(slots.tolist()):
                if slot >= 0:
                    self._set_group(slot, group_list[i])
        else:
            slots = self._balanced_slots(group_list)
        self.seen += batch
        self._write(slots, x, y, logits)

    def _groups(self, y: Tensor, groups: Tensor | None) -> list[int]:
        if groups is not None:
            return [int(g) for g in groups.reshape(-1).tolist()]
        if y.dim() == 1:
            return [int(g) for g in y.tolist()]
        if self.policy == "class_balanced":
            raise ValueError("class_balanced replay needs one class per sample: pass groups= "
                             "(e.g. the experience index) for per-token labels")
        return [NO_GROUP] * y.shape[0]

    def _reservoir_slots(self, batch: int) -> Tensor:
        """(B,) slot per sample, -1 = dropped. Algorithm R: sample number n (0-based)
        goes to slot n while n < N, else to slot j ~ U{0..n} if j < N."""
        n = self.seen + torch.arange(batch)                                       # (B,)
        j = (torch.rand(batch, generator=self.generator, dtype=torch.float64) * (n + 1)).floor().long()
        self.size = min(self.budget, self.seen + batch)
        return torch.where(n < self.budget, n, torch.where(j < self.budget, j, -1))

    def _balanced_slots(self, group_list: list[int]) -> Tensor:
        """(B,) slot per sample, -1 = dropped; sequential because each choice changes
        the class counts the next one sees."""
        slots = []
        for group in group_list:
            self.group_seen[group] += 1
            if self.size < self.budget:
                slot = self.size
                self.size += 1
            else:
                slot = self._balanced_victim(group)
            if slot >= 0:
                self._set_group(slot, group)
            slots.append(slot)
        return torch.tensor(slots, dtype=torch.long)

    def _balanced_victim(self, group: int) -> int:
        counts = self.slot_counts
        largest = max(counts.values())
        if counts[group] < largest:                    # evict from a (random) largest class
            candidates = sorted(c for c, k in counts.items() if k == largest and k > 0)
            victim = candidates[self._randint(len(candidates))]
        else:                                          # reservoir inside its own class
            keep_p = counts[group] / self.group_seen[group]
            if torch.rand(1, generator=self.generator).item() >= keep_p:
                return -1
            victim = group
        members = [i for i, g in enumerate(self.slot_groups) if g == victim]
        return members[self._randint(len(members))]

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator).item())

    def _set_group(self, slot: int, group: int) -> None:
        if slot == len(self.slot_groups):
            self.slot_groups.append(group)
        else:
            self.slot_counts[self.slot_groups[slot]] -= 1
            self.slot_groups[slot] = group
        self.slot_counts[group] += 1

    def _write(self, slots: Tensor, x: Tensor, y: Tensor, logits: Tensor | None) -> None:
        """Copy the kept samples; when two samples of a batch hit one slot the later wins."""
        last: dict[int, int] = {}
        for i, slot in enumerate(slots.tolist()):
            if slot >= 0:
                last[slot] = i
        if not last:
            return
        device = self.x.device
        dst = torch.tensor(list(last.keys()), dtype=torch.long, device=device)
        src = torch.tensor(list(last.values()), dtype=torch.long, device=device)
        self.x[dst] = x.to(device)[src]
        self.y[dst] = y.to(device)[src]
        if logits is not None:
            self.logits[dst] = _pad_last(logits.to(device), self.logits.shape[-1])[src]

    def _ensure_storage(self, x: Tensor, y: Tensor, logits: Tensor | None) -> None:
        if self.x is None:
            self.x = torch.zeros((self.budget, *x.shape[1:]), dtype=x.dtype, device=x.device)
            self.y = torch.zeros((self.budget, *y.shape[1:]), dtype=y.dtype, device=x.device)
            if logits is not None:
                self.logits = torch.zeros((self.budget, *logits.shape[1:]), device=x.device)
            return
        for name, new, old in (("x", x, self.x), ("y", y, self.y)):
            if new.shape[1:] != old.shape[1:]:
                raise ValueError(f"replay: {name} of shape {tuple(new.shape[1:])} per sample, "
                                 f"the buffer stores {tuple(old.shape[1:])}")
        if (logits is None) != (self.logits is None):
            raise ValueError("replay: add logits with every batch or with none (DER++ needs them all)")
        if logits is not None:
            if logits.shape[1:-1] != self.logits.shape[1:-1]:
                raise ValueError(f"replay: logits of shape {tuple(logits.shape[1:])} per sample, "
                                 f"the buffer stores {tuple(self.logits.shape[1:])}")
            if logits.shape[-1] > self.logits.shape[-1]:
                self.logits = _pad_last(self.logits, logits.shape[-1])

    # --- reading ------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """min(n, len) distinct stored samples, uniformly at random: (x, y, logits|None)."""
        if self.size == 0:
            raise ValueError("replay: cannot sample from an empty buffer")
        idx = torch.randperm(self.size, generator=generator or self.generator)[:n].to(self.x.device)
        logits = None if self.logits is None else self.logits[idx]
        return self.x[idx], self.y[idx], logits

    def class_counts(self) -> dict[int, int]:
        """Stored samples per group (class label, or the groups passed to ``add``)."""
        return {g: k for g, k in sorted(self.slot_counts.items()) if k > 0}

    # --- checkpointing ------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (loadable with ``torch.load(weights_only=True)``)."""
        filled = slice(0, self.size)
        return {
            "policy": self.policy, "budget": self.budget, "seed": self.seed,
            "seen": self.seen, "size": self.size,
            "x": None if self.x is None else self.x[filled].clone(),
            "y": None if self.y is None else self.y[filled].clone(),
            "logits": None if self.logits is None else self.logits[filled].clone(),
            "slot_groups": torch.tensor(self.slot_groups, dtype=torch.long),
            "group_seen": torch.tensor(sorted(self.group_seen.items()), dtype=torch.long).reshape(-1, 2),
            "rng": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["policy"] != self.policy or state["budget"] != self.budget:
            raise ValueError(f"replay: checkpoint holds a {state['policy']} buffer of {state['budget']}, "
                             f"this run configures {self.policy} with {self.budget}")
        self.seed, self.seen, self.size = state["seed"], int(state["seen"]), int(state["size"])
        self.x = _fill(state["x"], self.budget)
        self.y = _fill(state["y"], self.budget)
        self.logits = _fill(state["logits"], self.budget)
        self.slot_groups = [int(g) for g in state["slot_groups"].tolist()]
        self.slot_counts = Counter(self.slot_groups)
        self.group_seen = Counter({int(g): int(k) for g, k in state["group_seen"].tolist()})
        self.generator.set_state(state["rng"])


def _pad_last(t: Tensor, width: int) -> Tensor:
    """Zero-pad the last dimension of ``t`` to ``width``."""
    if t.shape[-1] == width:
        return t
    return torch.nn.functional.pad(t, (0, width - t.shape[-1]))


def _fill(filled: Tensor | None, budget: int) -> Tensor | None:
    """Re-allocate the full (N, ...) storage around the filled slots of a checkpoint."""
    if filled is None:
        return None
    out = torch.zeros((budget, *filled.shape[1:]), dtype=filled.dtype, device=filled.device)
    out[:len(filled)] = filled
    return out
