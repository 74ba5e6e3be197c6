"""Objectives: the numbers a policy optimises, read from a trial's metrics by name.

Policies are told values in each objective's own sense (accuracy up, FLOPs down), in
the order of ``SearchSettings.objectives``. The helpers here flip them to one sense,
scalarise them (PPO's reward) and measure fronts with the exact 2-D hypervolume that
PPO's hypervolume reward and the search-quality benchmark use.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from search_space.errors import ConfigError
from search_space.settings import Objective

Point = tuple[float, float]


def objective_values(metrics: Mapping[str, float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """One float per objective, in objective order; a missing metric names what exists."""
    values = []
    for i, obj in enumerate(objectives):
        if obj.metric not in metrics:
            known = ", ".join(sorted(metrics)) or "none"
            raise ConfigError(
                f"search.objectives[{i}].metric",
                f"metric {obj.metric!r} was not produced by the trial; available: {known}",
            )
        values.append(float(metrics[obj.metric]))
    return tuple(values)


def signs(objectives: Sequence[Objective]) -> tuple[float, ...]:
    """+1 for objectives to maximise, -1 for those to minimise."""
    return tuple(1.0 if o.direction == "max" else -1.0 for o in objectives)


def to_minimise(values: Sequence[float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The same point with every objective in "smaller is better" sense."""
    _check_len(values, objectives)
    return tuple(-v if o.direction == "max" else v for v, o in zip(values, objectives))


def to_maximise(values: Sequence[float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The same point with every objective in "larger is better" sense."""
    return tuple(-v for v in to_minimise(values, objectives))


def scalarize(
    values: Sequence[float], objectives: Sequence[Objective], weights: Sequence[float] | None = None
) -> float:
    """Weighted sum in "larger is better" sense (weights default to 1 each)."""
    up = to_maximise(values, objectives)
    weights = [1.0] * len(up) if weights is None else list(weights)
    if len(weights) != len(up):
        raise ValueError(f"{len(weights)} weights for {len(up)} objectives")
    return float(sum(w * v for w, v in zip(weights, up)))


def is_finite(values: Iterable[float] | None) -> bool:
    return values is not None and all(math.isfinite(v) for v in values)


def _check_len(values: Sequence[float], objectives: Sequence[Objective]) -> None:
    if len(values) != len(objectives):
        raise ValueError(f"{len(values)} values for {len(objectives)} objectives")


# --- Pareto fronts and exact 2-D hypervolume (minimisation) ---------------------------
def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """a is no worse than b everywhere and better somewhere (minimisation)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (duplicates all kept)."""
    return [i for i, p in enumerate(points) if not any(dominates(q, p) for q in points)]


def hypervolume_2d(points: Iterable[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact area dominated by ``points`` and bounded by ``ref`` (both minimised).

    Points not strictly better than ``ref`` in both coordinates add nothing. Sorting by
    the first coordinate and sweeping horizontal slabs makes it O(n log n).
    """
    rx, ry = float(ref[0]), float(ref[1])
    inside = sorted((float(p[0]), float(p[1])) for p in points if p[0] < rx and p[1] < ry)
    area, best_y = 0.0, ry
    for x, y in inside:
        if y < best_y:
            area += (rx - x) * (best_y - y)
            best_y = y
    return area


def hypervolume_improvement_2d(
    front: Sequence[Sequence[float]], point: Sequence[float], ref: Sequence[float]
) -> float:
    """How much area ``point`` adds to the region ``front`` already dominates."""
    before = hypervolume_2d(front, ref)
    return max(0.0, hypervolume_2d(list(front) + [point], ref) - before)
