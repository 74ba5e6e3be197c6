"""PPO over the space's decisions: a learned sampling distribution, batched clipped updates.

The policy is factorised: one vector of logits per ``Decision`` (as in TuNAS, Bender et
al. 2020), sampled define-by-run through a ``Suggester``, so only the decisions a
candidate actually asks contribute to its log-probability and entropy; inactive
(conditional) decisions are masked out simply by never being asked, and choices a space
offers as a subset of the declared options are masked to that subset. Factorised logits
learn "which option is good" per decision; interactions are left to the optional
surrogate, which screens several policy samples per ask.

Reward (``settings.reward``; with one objective every setting is ``scalar``):
- ``rank`` (default): the non-dominated sorting depth of the point among every complete
  point told so far, 1 on the front down to 0 on the deepest layer (``mo_reward``). Every
  proposal is graded, the front's extremes as much as its knee. Chosen by measurement
  (issue 27, ``benchmarks/mo_search.py``): on the synthetic ZDT1-shaped function and
  NAS-Bench-Graph cora, citeseer and photo (8 seeds, N = 200) it had the highest HV share
  on each of the four (mean 0.909, against hypervolume 0.864, chebyshev 0.851, nsga2
  0.856, random 0.698); the other datasets were kept for reporting.
- ``chebyshev``: ParEGO's augmented Chebyshev scalarisation with a weight vector drawn
  per batch, a function of (seed, update count); the reward is the share of told points
  the new one is no worse than.
- ``hypervolume``: the gain in 2-D hypervolume (first two objectives) in coordinates
  normalised to the observed box (reference point 10% beyond the worst seen), divided
  by the box's area; a point with no gain gets minus its normalised distance to the
  nearest told front point that dominates it. The plain gain is zero for almost every
  point once a front exists, too sparse a signal to learn from.
- ``scalar``: primary - flops_penalty * cost_term. The primary is the first objective
  to maximise (else the first objective, sign-flipped); the cost is the first objective
  to minimise other than the primary. ``cost_term = log2(v / min v seen)`` for cost
  metrics (FLOPs, params, memory: they span orders of magnitude), else ``v - min``.
The multi-objective rewards read every objective in the minimisation frame, cost metrics
on a log2 scale, normalised to the observed box: scale-free like the advantage.
Failed and pruned trials are not scored: their reward is the lowest reward seen so far
(0 before any).

Scale: advantage = (reward - moving-average baseline) / std of every reward told so far
(the baseline is taken before it absorbs the reward; the first reward initialises it).
Rewards told as fractions or as percentages therefore give the same advantages, up to
float noise, and so the same proposals; the entropy bonus is ``entropy_bonus`` times the
entropy divided by its maximum (uniform over the asked decisions), a number in [0, 1]
whatever the space's size, so one default suits every space and every reward scale.

Novelty: a policy sample that this policy already proposed is re-drawn, up to
``novelty_tries`` times, then replaced by a new mutant of it (``novelty``), so budget
goes to new candidates; the warm-up re-draws the same way. A mutant keeps its
log-probability under the policy as its behaviour log-probability. The first ``warmup`` proposals come from a composed ``RandomPolicy`` seeded
apart from ``random``'s own sequence (``warmup_seed``), so a PPO run and a random run with
the same seed do not share their first proposals. They also train the policy, with their
behaviour log-probability (uniform) in the importance ratio.

Every update appends ``{update, trials, clip_fraction, entropy, reward_std}`` to
``update_log`` (``entropy`` relative to the uniform policy's) and logs it at INFO.

State: logits, Adam's moments, baseline, generator state, the pending batch and the told
history, all as JSON lists; a restored policy continues identically.
"""
from __future__ import annotations

import logging
import math
import random
from typing import Any, Sequence

import numpy as np
import torch

from dynas.search_space import names
from dynas.search_space.base import Space
from dynas.search_space.settings import Objective
from dynas.search_space.suggest import RecordingSuggester

from .ppo_settings import PPOSettings
from ..policy import Outcome, Proposal
from ._common import (STATE_VERSION, Outstanding, check_outcome, check_state, derive_seed, rng_from_json,
                      rng_to_json, scored_form)
from .mo_reward import chebyshev_reward, chebyshev_weight, hypervolume_reward, minimise_form, rank_reward
from .novelty import novel_mutant
from .ppo_sampling import PolicySuggester, Sample, Step, log_probs, logp_entropy, max_entropy
from .random import RandomPolicy
from .surrogate import OneHotEncoder, RidgeSurrogate

SURROGATE_MIN_POINTS = 8                   # complete trials before the surrogate screens
WARMUP_STREAM = 0x9E3779B9                 # derive_seed stream of the warm-up's seed

log = logging.getLogger(__name__)


def warmup_seed(seed: int) -> int:
    """The warm-up ``RandomPolicy``'s seed: a function of ``seed`` unlike ``seed`` itself."""
    return derive_seed(seed, WARMUP_STREAM)


class PPOPolicy:
    name = "ppo"

    def __init__(
        self,
        space: Space,
        objectives: Sequence[Objective],
        *,
        seed: int = 0,
        settings: PPOSettings | None = None,
    ):
        self.space = space
        self.objectives = tuple(objectives)
        self.seed = seed
        self.settings = settings or PPOSettings()
        self.settings.validate("search.ppo")
        decisions = space.decisions()
        if not decisions:
            raise ValueError("ppo needs a space that declares its decisions")
        self.encoder = OneHotEncoder(decisions)
        self._primary, self._cost = _roles(self.objectives)
        self._reset(RandomPolicy(space, objectives, seed=warmup_seed(seed)))

    def _reset(self, warmup: RandomPolicy) -> None:
        self.logits = torch.zeros(self.encoder.width, dtype=torch.float64, requires_grad=True)
        self._optimizer = torch.optim.Adam([self.logits], lr=self.settings.lr)
        self._rng = random.Random(f"ppo:{self.seed}")
        self._warmup = warmup
        self._next_id = 0
        self._outstanding = Outstanding()
        self._baseline: float | None = None
        self._buffer: list[dict[str, Any]] = []       # {steps, old_logp, advantage}
        self._history: list[dict[str, Any]] = []      # {params, state, values, reward}
        self._asked: set[str] = set()
        self._rewards = [0, 0.0, 0.0]                 # Welford: count, mean, sum of squares
        self.update_log: list[dict[str, float]] = []
        self.updates = 0

    # --- ask ---------------------------------------------------------------------------
    def ask(self) -> Proposal:
        pid = self._next_id
        if pid < self.settings.warmup:
            inner = self._warmup_sample()
            steps = self._steps_of(inner.params)
            sample = Sample(steps, -sum(math.log(len(a)) for _, _, a in steps))
            arch, params, warm_id = inner.arch, inner.params, inner.id
        else:
            arch, params, sample = self._policy_sample()
            warm_id = None
        self._next_id += 1
        self._asked.add(arch.arch_id)
        self._outstanding.add(pid, (sample, params, warm_id))
        return Proposal(pid, arch, dict(params))

    def _warmup_sample(self) -> Proposal:
        """A warm-up proposal this policy has not proposed before (bounded re-draws);
        re-drawn proposals are withdrawn from the warm-up policy, never told."""
        inner = self._warmup.ask()
        for _ in range(self.settings.novelty_tries):
            if inner.arch.arch_id not in self._asked:
                break
            self._warmup.withdraw(inner.id)
            inner = self._warmup.ask()
        return inner

    def _policy_sample(self) -> tuple[Any, dict[str, Any], Sample]:
        screen = self.settings.surrogate_screen if self._surrogate_ready() else 1
        candidates = [self._novel_draw() for _ in range(max(1, screen))]
        if len(candidates) > 1:
            fresh = [c for c in candidates if c[0].arch_id not in self._asked] or candidates
            scores = self._surrogate().predict(np.stack([self.encoder.encode(c[1]) for c in fresh]))
            return fresh[int(np.argmax(scores))]
        return candidates[0]

    def _novel_draw(self) -> tuple[Any, dict[str, Any], Sample]:
        """A policy sample not proposed before: up to ``novelty_tries`` re-draws, then a
        new mutant of the last (a converged policy keeps drawing its favourite)."""
        draw = self._draw()
        for _ in range(self.settings.novelty_tries):
            if draw[0].arch_id not in self._asked:
                return draw
            draw = self._draw()
        mutant = novel_mutant(self.space, draw[1], self._asked, self._rng)
        return draw if mutant is None else self._draw(fixed=mutant)

    def _draw(self, fixed: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any], Sample]:
        with torch.no_grad():
            logits = self.logits.detach()
            suggester = PolicySuggester(logits, self.encoder, self._rng, fixed)
            recorder = RecordingSuggester(suggester)
            arch = self.space.sample(recorder)
            logp, _ = logp_entropy(logits, self.encoder, suggester.steps)
        return arch, dict(recorder.params), Sample(suggester.steps, float(logp))

    def _steps_of(self, params: dict[str, Any]) -> list[Step]:
        """The steps a uniform draw took to produce ``params`` (every option allowed)."""
        steps = []
        for name, value in params.items():
            i = self.encoder.index[name]
            every = tuple(range(len(self.encoder.decisions[i].options)))
            steps.append((i, self.encoder.option_index(name, value), every))
        return steps

    # --- tell --------------------------------------------------------------------------
    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        check_outcome(outcome, self.objectives)
        sample, params, warm_id = self._outstanding.pop(proposal_id)
        if warm_id is not None:
            self._warmup.tell(warm_id, outcome)
        outcome = scored_form(outcome)
        scored = outcome.state == "complete"
        values = [float(v) for v in outcome.values] if scored else None
        reward = self._reward(values) if scored else self._failure_reward()
        self._history.append({"params": dict(params), "state": outcome.state, "values": values, "reward": reward})
        baseline = reward if self._baseline is None else self._baseline
        std = self._absorb(reward)
        advantage = (reward - baseline) / std if std > 0 else 0.0
        self._buffer.append({"steps": sample.steps, "old_logp": sample.logp, "advantage": advantage})
        decay = self.settings.baseline_decay
        self._baseline = decay * baseline + (1 - decay) * reward
        if len(self._buffer) >= self.settings.batch:
            self._update()

    def _absorb(self, reward: float) -> float:
        """Add ``reward`` to the running statistics; the std of all rewards so far."""
        n, mean, m2 = self._rewards
        n += 1
        delta = reward - mean
        mean += delta / n
        m2 += delta * (reward - mean)
        self._rewards = [n, mean, m2]
        return math.sqrt(m2 / n) if n > 1 else 0.0

    @staticmethod
    def _rewards_of(history: list[dict[str, Any]]) -> list[float]:
        """Welford statistics of the told rewards (count, mean, sum of squares)."""
        rewards = [h["reward"] for h in history]
        if not rewards:
            return [0, 0.0, 0.0]
        mean = sum(rewards) / len(rewards)
        return [len(rewards), mean, sum((r - mean) ** 2 for r in rewards)]

    def _update(self) -> None:
        """Clipped PPO over the pending batch, ``epochs`` full-batch Adam steps."""
        batch, self._buffer = self._buffer, []
        old = torch.tensor([b["old_logp"] for b in batch], dtype=torch.float64)   # (N,)
        adv = torch.tensor([b["advantage"] for b in batch], dtype=torch.float64)  # (N,)
        top = torch.tensor([max_entropy(b["steps"]) or 1.0 for b in batch], dtype=torch.float64)  # (N,)
        clip, clipped = self.settings.clip, 0.0
        for _ in range(self.settings.epochs):
            pairs = [logp_entropy(self.logits, self.encoder, b["steps"]) for b in batch]
            logp = torch.stack([p[0] for p in pairs])                              # (N,)
            entropy = torch.stack([p[1] for p in pairs]) / top                     # (N,) in [0, 1]
            ratio = torch.exp(logp - old)
            clipped += float(((ratio - 1).abs() > clip).double().mean()) / self.settings.epochs
            surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
            loss = -(surrogate.mean() + self.settings.entropy_bonus * entropy.mean())
            self._optimizer.zero_grad()
            loss.backward()
            self._optimizer.step()
        self.updates += 1
        self._log_update(clipped)

    def _log_update(self, clip_fraction: float) -> None:
        n, _, m2 = self._rewards
        stats = {"update": self.updates, "trials": len(self._history), "clip_fraction": clip_fraction,
                 "entropy": self.relative_entropy(), "reward_std": math.sqrt(m2 / n) if n else 0.0}
        self.update_log.append(stats)
        log.info("ppo update %(update)d after %(trials)d trials: clip fraction %(clip_fraction).2f, "
                 "entropy %(entropy).3f of uniform", stats)

    def relative_entropy(self) -> float:
        """Entropy of the whole factorised distribution / that of the uniform one."""
        probs = [torch.tensor(p, dtype=torch.float64) for p in self.probabilities().values()]
        ent = sum(float(-(p * p.clamp_min(1e-300).log()).sum()) for p in probs)
        top = sum(math.log(len(p)) for p in probs)
        return ent / top if top > 0 else 0.0

    # --- rewards -----------------------------------------------------------------------
    def _scored(self) -> list[list[float]]:
        return [h["values"] for h in self._history if h["state"] == "complete"]

    def _cost_term(self, value: float, seen: list[float]) -> float:
        metric = self.objectives[self._cost].metric
        low = min(seen)
        if metric in names.COST_METRICS and low > 0 and value > 0:
            return math.log2(value / low)
        return value - low

    def scalar_reward(self, values: Sequence[float], seen: list[list[float]] | None = None) -> float:
        """primary - flops_penalty * cost_term, relative to the cheapest point seen."""
        seen = (self._scored() if seen is None else seen) + [list(values)]
        sign = 1.0 if self.objectives[self._primary].direction == "max" else -1.0
        reward = sign * values[self._primary]
        if self._cost is not None:
            costs = [v[self._cost] for v in seen]
            reward -= self.settings.flops_penalty * self._cost_term(values[self._cost], costs)
        return reward

    def _reward(self, values: list[float]) -> float:
        if self.settings.reward == "scalar" or len(self.objectives) < 2:
            return self.scalar_reward(values)
        pts = np.array([minimise_form(v, self.objectives) for v in self._scored() + [values]])  # (N, M)
        if self.settings.reward == "chebyshev":
            return chebyshev_reward(pts, chebyshev_weight(self.seed, self.updates, len(self.objectives)))
        return rank_reward(pts) if self.settings.reward == "rank" else hypervolume_reward(pts)

    def _hypervolume_reward(self, values: list[float]) -> float:
        """The ``hypervolume`` reward of ``values`` against the told points."""
        return hypervolume_reward(np.array([minimise_form(v, self.objectives) for v in self._scored() + [values]]))

    def _failure_reward(self) -> float:
        rewards = [h["reward"] for h in self._history]
        return min(rewards) if rewards else 0.0

    # --- surrogate ---------------------------------------------------------------------
    def _surrogate_ready(self) -> bool:
        return self.settings.surrogate and len(self._scored()) >= SURROGATE_MIN_POINTS

    def _surrogate(self) -> RidgeSurrogate:
        done = [h for h in self._history if h["state"] == "complete"]
        seen = [h["values"] for h in done]
        X = np.stack([self.encoder.encode(h["params"]) for h in done])             # (N, F)
        y = np.array([self.scalar_reward(v, seen) for v in seen])                   # (N,)
        return RidgeSurrogate(alpha=1.0).fit(X, y)

    # --- inspection and state ----------------------------------------------------------
    def probabilities(self) -> dict[str, list[float]]:
        """The current sampling distribution of every decision (all options allowed)."""
        out = {}
        for i, d in enumerate(self.encoder.decisions):
            all_options = tuple(range(len(d.options)))
            out[d.name] = log_probs(self.logits.detach(), self.encoder, i, all_options).exp().tolist()
        return out

    def state_dict(self) -> dict[str, Any]:
        adam = self._optimizer.state_dict()["state"].get(0, {})
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "seed": self.seed,
            "next_id": self._next_id,
            "logits": self.logits.detach().tolist(),
            "adam": {k: {"dtype": str(t.dtype).removeprefix("torch."), "data": t.tolist()} for k, t in adam.items()},
            "rng": rng_to_json(self._rng),
            "warmup": self._warmup.state_dict(),
            "baseline": self._baseline,
            "buffer": [{**b, "steps": [[i, j, list(a)] for i, j, a in b["steps"]]} for b in self._buffer],
            "history": [dict(h) for h in self._history],
            "asked": sorted(self._asked),
            "rewards": list(self._rewards),
            "update_log": [dict(u) for u in self.update_log],
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name)
        if len(state["logits"]) != self.encoder.width:
            raise ValueError("state was saved for a space with different decisions")
        warmup = RandomPolicy(self.space, self.objectives, seed=warmup_seed(self.seed))
        warmup.load_state_dict(state["warmup"])
        self._reset(warmup)
        with torch.no_grad():
            self.logits.copy_(torch.tensor(state["logits"], dtype=torch.float64))
        if state["adam"]:
            adam = {k: torch.tensor(v["data"], dtype=getattr(torch, v["dtype"])) for k, v in state["adam"].items()}
            groups = self._optimizer.state_dict()["param_groups"]
            self._optimizer.load_state_dict({"state": {0: adam}, "param_groups": groups})
        self._rng = rng_from_json(state["rng"])
        self._next_id = int(state["next_id"])
        self._baseline = state["baseline"]
        self._buffer = [{**b, "steps": [(i, j, tuple(a)) for i, j, a in b["steps"]]} for b in state["buffer"]]
        self._history = [dict(h) for h in state["history"]]
        self._asked = set(state["asked"])
        rewards = state.get("rewards") or self._rewards_of(self._history)   # states saved before issue 15
        self._rewards = [int(rewards[0]), float(rewards[1]), float(rewards[2])]
        self.update_log = [dict(u) for u in state.get("update_log", [])]
        self.updates = int(state["updates"])


def _roles(objectives: Sequence[Objective]) -> tuple[int, int | None]:
    """Index of the primary objective and of the cost objective (None without one)."""
    maxes = [i for i, o in enumerate(objectives) if o.direction == "max"]
    primary = maxes[0] if maxes else 0
    mins = [i for i, o in enumerate(objectives) if o.direction == "min" and i != primary]
    return primary, (mins[0] if mins else None)
