"""Which trial a pick names: one reading of ``--pick`` for ``dynas export`` and ``Run.pick``.

A pick is a rule (``knee``, ``best-accuracy``, ``max-flops=X``: ``analysis.pareto.pick``,
on the first measurements), ``knee-means`` (the knee of the front of seed means, as
the report re-picks it after ``dynas confirm``: ``analysis.seeds``), ``trial=N`` (a
proposal id) or ``arch_id=HEX`` (a bare arch_id is accepted too). ``auto`` (what
``dynas export`` does without ``--pick``) is ``knee-means`` when the run has
confirmed candidates and ``knee`` otherwise, and the caller says which it used.
Every pick is made on validation values only.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import pandas as pd

from dynas.search_space.errors import DynasError

from . import seeds
from .load import complete, searched
from .pareto import knee_index, objective_matrix, pareto_front, pick as pick_rule

PICKS = ("knee", "knee-means", "best-accuracy", "max-flops=X", "trial=N", "arch_id=HEX")
AUTO = "auto"


def resolve(run_dir: str | os.PathLike, spec: str | int, df: pd.DataFrame,
            objectives: Sequence[Any]) -> tuple[pd.Series, str]:
    """(the record ``spec`` names, the rule it was read as). One line naming the run
    for a pick that names nothing."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        return by_id(run_dir, df, "proposal_id", spec), f"trial={spec}"
    text = str(spec).strip()
    if text == AUTO:
        text = "knee-means" if not seeds.seed_summary(df, objectives).empty else "knee"
    if text == "knee-means":
        return knee_on_means(run_dir, df, objectives), text
    if text.startswith("trial="):
        return by_id(run_dir, df, "proposal_id", _trial_id(text[len("trial="):])), text
    if text.startswith("arch_id=") or (text and text in set(df["arch_id"].astype(str))):
        arch_id = text.split("=", 1)[1] if text.startswith("arch_id=") else text
        return by_id(run_dir, df, "arch_id", arch_id.strip()), f"arch_id={arch_id.strip()}"
    if text in ("knee", "best-accuracy") or text.startswith("max-flops="):
        try:
            return pick_rule(df, text, objectives), text
        except DynasError as err:   # say which run had nothing to pick
            raise DynasError(f"{run_dir}: pick {text}: {err}") from None
    raise DynasError(f"{run_dir}: unknown pick rule {spec!r}; use one of {', '.join(PICKS)}")


def knee_on_means(run_dir: str | os.PathLike, df: pd.DataFrame, objectives: Sequence[Any]) -> pd.Series:
    """The knee of the front of seed means (a row of ``seeds.seed_summary``)."""
    summary = seeds.seed_summary(df, objectives)
    front = pareto_front(summary, objectives) if not summary.empty else summary
    if front.empty:
        raise DynasError(f"{run_dir}: pick knee-means: no candidate has two complete measurements; "
                         f"run `dynas confirm {run_dir} --top K --seeds S` first")
    return front.iloc[knee_index(objective_matrix(front, objectives), objectives)]


def by_id(run_dir: str | os.PathLike, df: pd.DataFrame, column: str, value: Any) -> pd.Series:
    """The first measurement of a trial (its seed repeats and cached answers are not
    other trials), or one line saying why it cannot be picked."""
    what = f"trial {value}" if column == "proposal_id" else f"arch {value}"
    done = complete(df)
    match = done[done[column] == value]
    if not match.empty:
        return match.iloc[0]
    rows = searched(df)
    rows = rows[rows[column] == value]
    if rows.empty:
        raise DynasError(f"{run_dir}: no {what} in this run ({len(complete(df))} complete trials)")
    row = rows.iloc[0]
    reason = f": {row['reason']}" if isinstance(row["reason"], str) and row["reason"] else ""
    state = {"failed": "failed", "pruned": "was pruned"}.get(row["state"], f"is {row['state']}")
    raise DynasError(f"{run_dir}: {what} {state}{reason}; only a complete trial can be picked")


def _trial_id(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise DynasError(f"pick trial=N: N must be a trial (proposal) id, got {text.strip()!r}") from None
