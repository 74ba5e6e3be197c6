"""Seed repeats: each confirmed candidate as a mean and a spread, and what survives it.

A run holds a candidate's first measurement (the trial the policy was told) and,
after ``dynas confirm`` or ``search.remeasure``, seed repeats of it (``repeat_of`` =
its proposal id). ``seed_summary`` turns them into one row per candidate with two or
more complete measurements: ``<metric>`` holds the mean over seeds, ``std.<metric>``
the sample standard deviation (ddof 1) and ``single.<metric>`` the first draw, for
every objective and its ``test.`` twin; ``n_seeds`` counts the measurements. The
other columns are the first measurement's, so ``pareto_front``, ``pick`` and the plots
work on it unchanged: the confirmed front is the front of the means.

In a supernet search (``search.evaluation: supernet``) the first measurement is an
inherited score and the repeats are stand-alone trainings: the two are never averaged.
The mean, std and ``n_seeds`` are then over the stand-alone repeats alone, and
``inherited.<metric>`` keeps the inherited score (``supernet_comparison``).

``noise`` is the seed-to-seed spread of each objective: the mean over candidates of
their std. ``within_noise`` lists the pick's front neighbours over which its advantage
on some noisy objective (how much better it is there, in that objective's sense) is
no larger than that spread: against those, the pick is not a finding.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from dynas.search_space import names

from .load import as_objectives, at_top_rung


def measurements(df: pd.DataFrame) -> pd.DataFrame:
    """Complete trained rows (first measurements and seed repeats), ``original`` set
    to the proposal id each one measures."""
    done = df[(df["state"] == "complete") & df["cached_from"].isna() & at_top_rung(df)]   # one budget
    original = done["repeat_of"].where(done["repeat_of"].notna(), done["proposal_id"])
    return done.assign(original=original.astype(int))


def has_repeats(df: pd.DataFrame) -> bool:
    return not df.empty and bool(df["repeat_of"].notna().any())


def seed_summary(df: pd.DataFrame, objectives: Sequence[Any]) -> pd.DataFrame:
    """One row per candidate measured with two or more seeds (module docstring)."""
    objectives = as_objectives(objectives)
    rows = measurements(df)
    metrics = [m for o in objectives for m in (o.metric, names.as_test(o.metric)) if m in rows]
    out = []
    for (run, original), group in rows.groupby(["run", "original"], sort=False):
        firsts = group[group["repeat_of"].isna()]
        if len(group) < 2 or firsts.empty:
            continue
        row = firsts.iloc[0].copy()
        inherited = is_inherited(row)
        measured = group[group["evaluation"].fillna("standalone") == "standalone"] if inherited else group
        for m in metrics:
            values = measured[m].astype(float)
            row[f"single.{m}"] = row[m]
            if inherited:
                row[f"inherited.{m}"] = row[m]
            row[m] = float(values.mean())
            row[f"std.{m}"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        row["n_seeds"] = len(measured)
        out.append(row)
    return pd.DataFrame(out) if out else df.iloc[:0]


def is_inherited(row: pd.Series) -> bool:
    """A measurement scored with a supernet's weights (not trained from scratch)."""
    value = row.get("evaluation")
    return isinstance(value, str) and value not in ("", "standalone")


def supernet_comparison(summary: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, float]:
    """(inherited vs stand-alone ``metric`` per confirmed candidate, Kendall's tau-b
    between the two; nan with fewer than 3 candidates or no spread)."""
    col = f"inherited.{metric}"
    if summary.empty or col not in summary:
        return summary.iloc[:0], float("nan")
    rows = summary[summary[col].notna()]
    if len(rows) < 3:
        return rows, float("nan")
    return rows, kendall_tau(rows[col].astype(float).tolist(), rows[metric].astype(float).tolist())


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (ties corrected, as scipy's default); nan without pairs or spread."""
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    untied_a = concordant + discordant + ties_b      # pairs not tied in a
    untied_b = concordant + discordant + ties_a      # pairs not tied in b
    if untied_a * untied_b == 0:
        return float("nan")
    return (concordant - discordant) / float(np.sqrt(untied_a * untied_b))


def noise(summary: pd.DataFrame, objectives: Sequence[Any]) -> dict[str, float]:
    """Seed-to-seed std of each objective (and test twin): mean over the candidates."""
    objectives = as_objectives(objectives)
    cols = [m for o in objectives for m in (o.metric, names.as_test(o.metric))]
    return {m: float(summary[f"std.{m}"].mean()) for m in cols
            if f"std.{m}" in summary and summary[f"std.{m}"].notna().any()}


def advantages(front: pd.DataFrame, chosen: pd.Series, objectives: Sequence[Any],
               spread: dict[str, float]) -> list[tuple[Any, str, float]]:
    """(neighbour's proposal id, metric, advantage) for each front neighbour of ``chosen``
    (adjacent along the second objective, or the first with one) and each noisy
    objective (seed-to-seed spread > 0) on which ``chosen`` is at least as good."""
    objectives = as_objectives(objectives)
    axis = objectives[1 if len(objectives) > 1 else 0].metric
    ordered = front.sort_values(axis, kind="stable")
    position = list(ordered.index).index(chosen.name)
    neighbours = [ordered.iloc[i] for i in (position - 1, position + 1) if 0 <= i < len(ordered)]
    close = []
    for nb in neighbours:
        for o in objectives:
            noise_o = spread.get(o.metric, 0.0)
            advantage = float(chosen[o.metric]) - float(nb[o.metric])
            advantage = advantage if o.direction == "max" else -advantage
            if noise_o > 0 and np.isfinite(noise_o) and advantage >= 0:
                close.append((nb["proposal_id"], o.metric, advantage))
    return close


def within_noise(front: pd.DataFrame, chosen: pd.Series, objectives: Sequence[Any],
                 spread: dict[str, float]) -> list[tuple[Any, str, float]]:
    """The ``advantages`` no larger than their objective's seed-to-seed spread."""
    return [a for a in advantages(front, chosen, objectives, spread) if a[2] <= spread[a[1]]]
