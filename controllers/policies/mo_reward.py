"""Multi-objective rewards for PPO: how good a told point is against the points told before.

Every function takes ``pts`` (N, M), the complete points told so far in the minimisation
frame with the new point as the LAST row, and returns that point's reward (higher is
better). Each is computed in coordinates normalised to the observed box, so the units
and scale of the objectives do not matter, and each grades every proposal: a reward
that is zero for most proposals once the front fills (the plain hypervolume gain)
gives PPO's advantage nothing to learn from.

- ``hypervolume_reward``: the normalised gain in 2-D hypervolume when the point is
  added; a point with no gain gets minus its distance to the nearest front point that
  dominates it. The first two objectives only.
- ``rank_reward``: the point's non-dominated sorting depth among all told points,
  1 on the front down to 0 on the deepest layer (any number of objectives). Every front
  point earns the same, the extremes as much as the knee, so the policy is pulled
  toward the whole front rather than one part of it.
- ``chebyshev_reward``: ParEGO's scalarisation (Knowles 2006) with a weight vector
  drawn per PPO batch: the share of the told points whose augmented Chebyshev
  distance to the ideal point is no better than the new point's. Over batches the
  weights sweep the front.

``minimise_form`` is the frame all three use: maximised objectives are negated and cost
metrics (FLOPs, parameters, memory: they span orders of magnitude) taken as log2.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from dynas.search_space import names
from dynas.search_space.settings import Objective

from ..pareto import hypervolume_improvement, non_dominated, non_dominated_sort
from ._common import derive_seed

MO_REWARDS = ("hypervolume", "rank", "chebyshev")
CHEBYSHEV_RHO = 0.05                    # ParEGO's augmentation: ties broken by the weighted sum
CHEBYSHEV_STREAM = 0x5EED_C4EB          # derive_seed stream of the per-batch weights


def minimise_form(values: Sequence[float], objectives: Sequence[Objective]) -> list[float]:
    """One point in the frame every reward uses (min sense, cost metrics on log2)."""
    point = []
    for v, obj in zip(values, objectives):
        v = -v if obj.direction == "max" else v
        point.append(math.log2(v) if obj.metric in names.COST_METRICS and v > 0 else v)
    return point


def normalise(pts: np.ndarray) -> np.ndarray:
    """(N, M) -> (N, M) in [0, 1] per column (a constant column becomes 0)."""
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return (pts - lo) / np.where(hi > lo, hi - lo, 1.0)


def hypervolume_reward(pts: np.ndarray) -> float:
    """Normalised 2-D hypervolume gain of the last row (reference 10% beyond the worst
    seen); minus the distance to the nearest front point dominating it when no gain."""
    z = normalise(np.asarray(pts, float)[:, :2])                                 # (N, 2)
    gain = hypervolume_improvement(z[:-1], z[-1], (1.1, 1.1)) / 1.21
    if gain > 0:
        return float(gain)
    p, earlier = z[-1], z[:-1]
    front = earlier[non_dominated(earlier)] if len(earlier) else earlier
    better = [np.linalg.norm(p - q) for q in front if np.all(q <= p)]
    return -float(min(better)) if better else 0.0


def rank_reward(pts: np.ndarray) -> float:
    """1 - depth / deepest depth of the last row among all rows (1 when all share a front)."""
    depth = non_dominated_sort(np.asarray(pts, float))                           # (N,) 0 = front
    deepest = int(depth.max())
    return 1.0 - int(depth[-1]) / deepest if deepest > 0 else 1.0


def chebyshev_weight(seed: int, batch: int, m: int) -> np.ndarray:
    """The batch's weight vector, uniform on the simplex, a function of (seed, batch)."""
    rng = np.random.default_rng(derive_seed(seed, CHEBYSHEV_STREAM + batch))
    return rng.dirichlet(np.ones(m))                                             # (M,)


def chebyshev_reward(pts: np.ndarray, weight: np.ndarray) -> float:
    """Share of the rows whose augmented Chebyshev distance is >= the last row's."""
    z = normalise(np.asarray(pts, float))                                        # (N, M)
    scaled = z * weight
    dist = scaled.max(axis=1) + CHEBYSHEV_RHO * scaled.sum(axis=1)               # (N,) lower is better
    return float(np.mean(dist >= dist[-1]))
