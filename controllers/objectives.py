"""Objectives: the numbers a policy optimises, read from a trial's metrics by name.

Policies are told validation values only (never a ``test.*`` metric), in each objective's own sense (accuracy up, FLOPs down), in
the order of ``SearchSettings.objectives``. Dominance and hypervolume live in
``controllers.pareto``.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from dynas.search_space.errors import ConfigError
from dynas.search_space.names import selection_metrics
from dynas.search_space.settings import Objective


def objective_values(metrics: Mapping[str, float], objectives: Sequence[Objective]) -> tuple[float, ...]:
    """One float per objective, in objective order; a missing metric names what exists.

    Objectives are validation metrics only (``Objective.validate`` refuses ``test.*``,
    checked again here for objectives built in code): a policy never hears a test value.
    """
    values = []
    for i, obj in enumerate(objectives):
        obj.validate(f"search.objectives[{i}]")
        if obj.metric not in metrics:
            known = ", ".join(sorted(selection_metrics(metrics))) or "none"
            raise ConfigError(
                f"search.objectives[{i}].metric",
                f"metric {obj.metric!r} was not produced by the trial; available: {known}",
            )
        values.append(float(metrics[obj.metric]))
    return tuple(values)


def is_finite(values: Iterable[float] | None) -> bool:
    """The one non-finite check: ``None`` or any NaN/inf value is not finite."""
    return values is not None and all(math.isfinite(v) for v in values)
