"""Pareto fronts, hypervolume, the knee, and the rules that pick one architecture.

Functions here take DataFrames and values in each objective's own sense; dominance and
hypervolume are ``controllers.pareto``'s (one implementation, minimisation frame: a
maximised objective is negated, so "a dominates b" is ``all(a <= b) and any(a < b)``).

Reference point rule (``reference_point``): per objective, a user-given value wins;
otherwise a maximised accuracy metric (``names.ACCURACY_METRICS``, values in [0, 1])
uses 0, its worst possible value, so its axis does not depend on which trials were
seen; every other objective uses its worst observed value over all complete trials
passed in (all runs together), moved 10% of the observed range further out (10% of
the value's magnitude when the range is 0, or 1 when the value is 0 too). FLOPs
(minimised) thus get ``max + 0.1 * (max - min)``. Computing it once over every run
loaded together keeps the hypervolumes of several runs comparable.
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dynas.controllers import pareto
from dynas.search_space import names
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import Objective

from .load import as_objectives, complete, searched

PICK_RULES = ("knee", "best-accuracy", "max-flops=X")
REFERENCE_PAD = 0.10


# --- dominance (the arithmetic is controllers.pareto's) ----------------------------------
def non_dominated_sort(values: np.ndarray, objectives: Sequence[Any]) -> np.ndarray:
    """Front rank of each row of ``values`` (N, M) in the objectives' own senses."""
    objectives = as_objectives(objectives)
    return pareto.non_dominated_sort(pareto.to_minimise(values, objectives))


def objective_matrix(df: pd.DataFrame, objectives: Sequence[Objective]) -> np.ndarray:
    """(N, M) values of ``df`` for ``objectives``; a missing metric is a DynasError."""
    missing = [o.metric for o in objectives if o.metric not in df]
    if missing:
        raise DynasError(f"no trial reports metric {missing[0]!r}; "
                         f"metrics available: {', '.join(_metric_names(df)) or 'none'}")
    return df[[o.metric for o in objectives]].to_numpy(dtype=float)


def _metric_names(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c in names.ALL_METRICS and df[c].notna().any()]


def rankable(df: pd.DataFrame, objectives: Sequence[Any]) -> pd.DataFrame:
    """Complete trials with a finite value for every objective."""
    objectives = as_objectives(objectives)
    done = complete(df)
    if done.empty or any(o.metric not in done for o in objectives):
        return done.iloc[:0]
    values = objective_matrix(done, objectives)
    return done[np.isfinite(values).all(1)]


def front_ranks(df: pd.DataFrame, objectives: Sequence[Any]) -> pd.Series:
    """Rank per row of ``df`` (0 = front); -1 for trials that cannot be ranked."""
    objectives = as_objectives(objectives)
    ranks = pd.Series(-1, index=df.index, dtype=int)
    ok = rankable(df, objectives)
    if not ok.empty:
        ranks.loc[ok.index] = non_dominated_sort(objective_matrix(ok, objectives), objectives)
    return ranks


def pareto_front(df: pd.DataFrame, objectives: Sequence[Any]) -> pd.DataFrame:
    """The non-dominated complete trials, best first on the first objective."""
    objectives = as_objectives(objectives)
    ok = rankable(df, objectives)
    if ok.empty:
        return ok
    front = ok[non_dominated_sort(objective_matrix(ok, objectives), objectives) == 0]
    first = objectives[0]
    return front.sort_values(first.metric, ascending=first.direction == "min", kind="stable")


# --- hypervolume ---------------------------------------------------------------------
def reference_point(df: pd.DataFrame, objectives: Sequence[Any],
                    given: Mapping[str, float] | Sequence[float] | None = None) -> tuple[float, ...]:
    """The reference point by the rule in the module docstring (original units)."""
    objectives = as_objectives(objectives)
    if given is not None and not isinstance(given, Mapping):
        given = {o.metric: float(v) for o, v in zip(objectives, given, strict=True)}
    given = dict(given or {})
    ok = rankable(df, objectives)
    ref = []
    for j, obj in enumerate(objectives):
        if obj.metric in given:
            ref.append(float(given[obj.metric]))
        elif obj.direction == "max" and obj.metric in names.ACCURACY_METRICS:
            ref.append(0.0)
        elif ok.empty:
            ref.append(float("nan"))
        else:
            col = ok[obj.metric].to_numpy(dtype=float)
            lo, hi = float(col.min()), float(col.max())
            pad = REFERENCE_PAD * (hi - lo) or REFERENCE_PAD * abs(hi if obj.direction == "min" else lo) or 1.0
            ref.append(hi + pad if obj.direction == "min" else lo - pad)
    return tuple(ref)


def hypervolume(values: np.ndarray, ref: Sequence[float], objectives: Sequence[Any]) -> float:
    """Exact volume dominated by ``values`` (N, M) and bounded by ``ref``, both in the
    objectives' own senses (``controllers.pareto.hypervolume`` does the arithmetic)."""
    objectives = as_objectives(objectives)
    r = pareto.to_minimise(np.asarray(ref, dtype=float), objectives)[0]
    if not np.isfinite(r).all():
        raise DynasError(f"reference point {tuple(ref)} must be finite")
    return pareto.hypervolume(pareto.to_minimise(values, objectives), r)


def running_hypervolume(df: pd.DataFrame, objectives: Sequence[Any],
                        ref: Sequence[float]) -> pd.DataFrame:
    """Per run and trial index: hypervolume and best value so far of each objective.

    Failed and pruned trials keep the previous values, so the x axis is the number of
    trials spent, whatever their outcome. Columns: run, strategy, trial, hypervolume,
    ``best.<metric>`` for every objective.
    """
    objectives = as_objectives(objectives)
    df = searched(df)                       # baselines are no trials of the search
    ok_index = set(rankable(df, objectives).index)
    signs = pareto.to_minimise(np.ones(len(objectives)), objectives)[0]
    out = []
    for run, group in df.groupby("run", sort=False):
        group = group.sort_values("trial", kind="stable")
        front = np.zeros((0, len(objectives)))  # non-dominated so far, original units
        best = np.full(len(objectives), np.inf)  # minimisation frame
        hv = 0.0
        for idx, row in group.iterrows():
            if idx in ok_index:
                v = np.array([row[o.metric] for o in objectives], dtype=float)
                best = np.minimum(best, v * signs)
                mv, mf = v * signs, front * signs
                if not (mf <= mv).all(1).any():  # v adds volume only when not covered
                    keep = ~((mv <= mf).all(1) & (mv < mf).any(1))
                    front = np.vstack([front[keep], v])
                    hv = hypervolume(front, ref, objectives)
            entry = {"run": run, "strategy": row["strategy"], "trial": int(row["trial"]),
                     "hypervolume": hv}
            entry.update({f"best.{o.metric}": (b * s if np.isfinite(b) else math.nan)
                          for o, b, s in zip(objectives, best, signs)})
            out.append(entry)
    return pd.DataFrame(out, columns=["run", "strategy", "trial", "hypervolume"]
                        + [f"best.{o.metric}" for o in objectives])


# --- choosing one ----------------------------------------------------------------------
def knee_index(values: np.ndarray, objectives: Sequence[Any]) -> int:
    """Row of the knee of a front (N, M) of objective values (``controllers.pareto.knee_of``)."""
    pts = pareto.to_minimise(values, as_objectives(objectives))
    if len(pts) == 0:
        raise DynasError("the front is empty: no knee")
    return pareto.knee_of(pts)


def parse_flops(text: str) -> float:
    """``1e6``, ``2.5M``, ``300k``, ``1.2G`` -> FLOPs as a float."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([kKmMgGtT]?)\s*", text)
    if not match:
        raise DynasError(f"max-flops={text}: expected a number such as 2e6 or 2.5M")
    scale = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}[match.group(2).lower()]
    return float(match.group(1)) * scale


def accuracy_metric(objectives: Sequence[Objective]) -> str:
    """The accuracy that ``best-accuracy`` maximises: the first maximised accuracy
    objective, else the final average accuracy."""
    for o in objectives:
        if o.direction == "max" and o.metric in names.ACCURACY_METRICS:
            return o.metric
    return names.FINAL_AVG_ACCURACY


def pick(df: pd.DataFrame, rule: str, objectives: Sequence[Any] | None = None) -> pd.Series:
    """One complete trial chosen by ``rule``: ``knee``, ``best-accuracy`` or
    ``max-flops=X`` (best accuracy with FLOPs <= X). Ties go to fewer FLOPs."""
    objectives = as_objectives(objectives)
    rule = rule.strip()
    if rule == "knee":
        front = pareto_front(df, objectives)
        if front.empty:
            raise DynasError("no complete trial with every objective: nothing to pick")
        return front.iloc[knee_index(objective_matrix(front, objectives), objectives)]
    acc = accuracy_metric(objectives)
    done = complete(df)
    if acc not in done:
        raise DynasError(f"no trial reports {acc}")
    done = done[done[acc].notna()]
    if done.empty:
        raise DynasError(f"no complete trial reports {acc}: nothing to pick")
    if rule == "best-accuracy":
        return _best(done, acc)
    if rule.startswith("max-flops="):
        budget = parse_flops(rule.split("=", 1)[1])
        costed = done[done[names.FLOPS].notna()] if names.FLOPS in done else done.iloc[:0]
        if costed.empty:
            raise DynasError("no complete trial reports flops: max-flops cannot apply")
        within = costed[costed[names.FLOPS] <= budget]
        if within.empty:
            cheapest = costed[names.FLOPS].min()
            raise DynasError(f"no complete trial has flops <= {budget:.4g}; "
                             f"the cheapest has {cheapest:.4g}")
        return _best(within, acc)
    raise DynasError(f"unknown pick rule {rule!r}; rules: {', '.join(PICK_RULES)}")


def _best(df: pd.DataFrame, acc: str) -> pd.Series:
    keys = [acc] + ([names.FLOPS] if names.FLOPS in df else [])
    ordered = df.sort_values(keys, ascending=[False] + [True] * (len(keys) - 1),
                             kind="stable", na_position="last")
    return ordered.iloc[0]
