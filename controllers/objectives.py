"""Objectives: the numbers a policy optimises, read from a trial's metrics by name.

Policies are told values in each objective's own sense (accuracy up, FLOPs down), in
the order of ``SearchSettings.objectives``. Dominance and hypervolume live in
``controllers.pareto``.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from search_space.errors import ConfigError
from search_space.settings import Objective


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


def check_objectives(objectives: Sequence[Objective], reported: Sequence[str],
                     key: str = "search.objectives") -> None:
    """Refuse, before any trial, an objective whose metric the trainer never reports:
    every trial would fail on it. (A metric named twice is refused by
    ``SearchSettings.validate``.)"""
    for i, obj in enumerate(objectives):
        if obj.metric not in reported:
            raise ConfigError(f"{key}[{i}].metric", f"unknown metric {obj.metric!r}; the trainer "
                              f"reports: {', '.join(reported)}")


def is_finite(values: Iterable[float] | None) -> bool:
    """The one non-finite check: ``None`` or any NaN/inf value is not finite."""
    return values is not None and all(math.isfinite(v) for v in values)
