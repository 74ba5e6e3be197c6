"""Evaluators of plain decision spaces: a function of the decisions that returns metrics.

A plain space (``space: {decisions: ...}``) has no transformer to train; what a trial
measures is whatever its evaluator returns. Register one by name, then name it in the
experiment file:

    from dynas.search_space.evaluators import register_evaluator

    @register_evaluator("branin", metrics=("loss",))
    def branin(decisions, scale=1.0):          # decisions: {"x": 3, "y": 7}
        return {"loss": scale * (decisions["y"] - decisions["x"] ** 2) ** 2}

    # experiment.yaml
    space: {decisions: {x: {low: 0, high: 10}, y: {low: 0, high: 10}}}
    evaluator: {name: branin, options: {scale: 2.0}}     # or just `evaluator: branin`
    search: {objectives: [{metric: loss, direction: min}]}

Contract: ``fn(decisions: dict, **options) -> Mapping[str, float]``, called once per
trial (in a Ray worker, or in-process by the local runner). It must not keep state
between calls that changes its answers; load data once per process (``functools.cache``)
if it is expensive. An exception fails that trial only (worded by
``controllers.outcomes``; the local runner stops on a ``DynasError``, the user's).
``check_options`` binds the options to the signature before any trial, and
``metrics`` (optional) names what it returns, so objectives are checked before any
trial and ``dynas list metrics`` can show them.

Standard library only: this module sits in ``search_space`` so plugins and every layer
can import it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .registry import Registry

Evaluator = Callable[..., Mapping[str, float]]


@dataclass(frozen=True)
class EvaluatorEntry:
    name: str
    fn: Evaluator
    metrics: tuple[str, ...] = ()         # what it returns; () = not declared
    description: str = ""


EVALUATORS: Registry[EvaluatorEntry] = Registry(
    "evaluator", key="evaluator.name", contract="fn(decisions: dict, **options) -> Mapping[str, float]")

# Modules that register dynas's own evaluators (a tabular benchmark, say) on import. They
# are imported on the first lookup, on the driver and on every worker alike, so a
# built-in evaluator needs no plugin, and nothing heavy loads until one is asked for.
BUILTIN_MODULES: tuple[str, ...] = ("dynas.trainers.tabular.nasbench_graph",)
_builtins_loaded = False

__all__ = ["BUILTIN_MODULES", "EVALUATORS", "EvaluatorEntry", "check_options", "evaluate", "get_evaluator",
           "load_builtin_evaluators", "register_evaluator", "unregister_evaluator"]


def register_evaluator(name: str, *, metrics: tuple[str, ...] | list[str] = (),
                       description: str = "") -> Callable[[Evaluator], Evaluator]:
    """Decorator: make ``fn`` the evaluator ``name``; a second ``name`` is refused."""

    def add(fn: Evaluator) -> Evaluator:
        doc = (fn.__doc__ or "").strip().splitlines()
        EVALUATORS.register(name, EvaluatorEntry(name, fn, tuple(metrics), description or (doc[0] if doc else "")))
        return fn

    return add


def unregister_evaluator(name: str) -> None:
    EVALUATORS.unregister(name)


def load_builtin_evaluators() -> None:
    """Import ``BUILTIN_MODULES`` (once per process)."""
    global _builtins_loaded
    if not _builtins_loaded:
        import importlib

        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def get_evaluator(name: str, key: str = "evaluator.name") -> EvaluatorEntry:
    if name not in EVALUATORS:
        load_builtin_evaluators()
    return EVALUATORS.get(name, key)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """The options fit the evaluator's signature (``fn(decisions, **options)``)."""
    import inspect

    fn = get_evaluator(name).fn
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):     # a builtin without a signature: nothing to check
        return
    try:
        signature.bind({}, **dict(options))
    except TypeError as err:
        raise ConfigError("evaluator.options", f"{err} (evaluator {name!r})") from None


def evaluate(name: str, decisions: Mapping[str, Any],
             options: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Call the evaluator and check what it returned: a mapping of names to numbers.

    NaN/inf pass through (the driver records the trial as failed with the values);
    anything that is not a number raises ``TypeError`` naming the evaluator and key.
    """
    entry = get_evaluator(name)
    try:
        out = entry.fn(dict(decisions), **dict(options or {}))
    except TypeError as err:          # an option the function does not take
        if "unexpected keyword argument" in str(err):
            bad = str(err).split("'")[-2]
            raise ConfigError(f"evaluator.options.{bad}", f"unknown option for evaluator {name!r}") from None
        raise
    if not isinstance(out, Mapping) or not out:
        raise TypeError(f"evaluator {name!r} returned {type(out).__name__}; expected a non-empty "
                        "mapping of metric names to numbers")
    metrics = {}
    for key, value in out.items():
        try:
            if isinstance(value, (bool, str)):
                raise TypeError
            metrics[str(key)] = float(value)          # also numpy scalars and 0-d arrays
        except (TypeError, ValueError):
            raise TypeError(f"evaluator {name!r} returned {key}={value!r}; expected a number") from None
    return metrics
