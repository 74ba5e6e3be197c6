"""Metrics a plugin adds to every trial, next to the built-in ones.

    from dynas.trainers.metrics import register_metric

    @register_metric("last_task_accuracy", description="R[T-1][T-1]")
    def last_task_accuracy(acc_matrix, values):
        return acc_matrix[-1][len(acc_matrix) - 1]

``fn(acc_matrix, values) -> float``: ``acc_matrix`` is the trial's accuracy matrix
(rows as lists, as recorded), ``values`` the built-in metrics already computed
(continual metrics and cost: ``search_space.names``). ``trainers.fitting.fit`` adds
every registered metric to ``TrialMetrics.values``, so it is recorded, reported and can
be a search objective (``search.objectives: [{metric: last_task_accuracy, ...}]``,
checked before any trial by ``controllers.run.prepare``). A name that exists, built-in or
registered, is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from dynas.search_space import names
from dynas.search_space.registry import Registry, RegistryError

MetricFn = Callable[[Sequence[Sequence[float]], Mapping[str, float]], float]


@dataclass(frozen=True)
class MetricEntry:
    name: str
    fn: MetricFn
    description: str = ""


# the built-in metrics are computed by fit itself: their names are taken
METRICS: Registry[MetricEntry] = Registry(
    "metric", key="metric", contract="fn(acc_matrix, values) -> float", reserved=names.ALL_METRICS)

__all__ = ["METRICS", "MetricEntry", "held_out_plugin_metrics", "known_metrics", "plugin_metrics", "register_metric",
           "unregister_metric"]


def register_metric(name: str, description: str = "") -> Callable[[MetricFn], MetricFn]:
    """Decorator: compute ``fn`` for every trial under ``name``."""

    def add(fn: MetricFn) -> MetricFn:
        if names.is_test_metric(name):
            raise RegistryError("", f"metric {name!r}: the prefix {names.TEST_PREFIX!r} is "
                                    "reserved for test-split twins, which fit computes itself")
        METRICS.register(name, MetricEntry(name, fn, description))
        return fn

    return add


def unregister_metric(name: str) -> None:
    METRICS.unregister(name)


def known_metrics() -> tuple[str, ...]:
    """Every metric a trained trial reports: the built-ins, then the registered ones."""
    return names.ALL_METRICS + tuple(METRICS)


def plugin_metrics(acc_matrix: Sequence[Sequence[float]], values: Mapping[str, float]) -> dict[str, float]:
    rows = [list(map(float, row)) for row in acc_matrix]
    return {name: float(entry.fn(rows, dict(values))) for name, entry in METRICS.items()}


def held_out_plugin_metrics(test_matrix: Sequence[Sequence[float]], values: Mapping[str, float]) -> dict[str, float]:
    """Every registered metric on the test splits, as ``test.<name>``: ``fn`` gets R_test
    and the built-in values with their test twins in place of the validation ones."""
    if not METRICS or not test_matrix:
        return {}
    view = {k: values.get(names.as_test(k), v) for k, v in values.items() if not names.is_test_metric(k)}
    return {names.as_test(k): v for k, v in plugin_metrics(test_matrix, view).items()}
