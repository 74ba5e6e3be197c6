"""Run directories -> one pandas DataFrame, one row per finished trial.

Analysis reads only what the search wrote (``run.json`` and ``trials.jsonl``), so a
report can be made of a run that is still going, was killed, or came from another
machine. Column groups:

* bookkeeping: ``run``, ``strategy``, ``run_dir``, ``trial`` (order in the file),
  ``proposal_id``, ``arch_id``, ``state``, ``reason``, ``policy``, ``seed``,
  ``wall_time_s``, ``experiences_done``, ``cached_from``, ``finished_at``,
  ``schema_version``, ``repeat_of`` (a seed repeat of that proposal id; see
  ``analysis.seeds``), ``train_seed``, ``chance_accuracy``, ``baseline`` (a reference model's name,
  ``search.baselines``; "" for searched trials: ``complete`` leaves baselines out,
  ``baselines`` gives them), ``evaluation`` (``standalone``, or ``inherited`` /
  ``finetuned`` from a supernet search: see ``analysis.seeds``), ``budget`` (steps per
  experience the record trained at; NaN in records from before budgets were recorded;
  a run with ``search.fidelity`` holds one budget per rung: see ``at_top_rung``);
* metrics: one float column per metric name (every name in ``names.ALL_METRICS`` is
  always present, NaN when a trial did not report it): plain names measured on the
  validation splits, ``test.<name>`` on the test splits (``SPLIT_METRICS``' twins are
  always present; NaN in records older than the split, ``schema_version`` 1);
* decisions: ``param.<name>`` for each decision value the policy chose;
* architecture summary (transformer archs only; NaN for plain assignments):
  ``arch.layers``, ``arch.d_model``, ``arch.attention_kinds`` ("full,sliding_window",
  distinct kinds in layer order), ``arch.ffn_kinds``, ``arch.moe_layers``,
  ``arch.summary`` (one short line);
* raw, as Python objects: ``arch`` (dict), ``acc_matrix`` (R_val), ``test_acc_matrix``
  (R_test), ``expert_load``, ``objective_values``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dynas.controllers.records import iter_records, read_run
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.reference import REFERENCE_KEY, model_from_dict
from dynas.search_space.settings import Objective

PathLike = str | os.PathLike
OBJECT_COLUMNS = ("arch", "acc_matrix", "test_acc_matrix", "expert_load", "objective_values", "dynamics")
ARCH_COLUMNS = ("arch.layers", "arch.d_model", "arch.attention_kinds", "arch.ffn_kinds",
                "arch.moe_layers", "arch.summary")
BASE_COLUMNS = ("run", "strategy", "run_dir", "trial", "proposal_id", "arch_id", "state",
                "reason", "policy", "seed", "wall_time_s", "experiences_done",
                "cached_from", "finished_at", "schema_version", "repeat_of", "train_seed",
                "chance_accuracy", "baseline", "evaluation", "budget")
SPLIT_METRICS = names.ACCURACY_METRICS + names.FORGETTING_METRICS   # measured per split
TEST_METRICS = tuple(names.as_test(m) for m in SPLIT_METRICS)
DEFAULT_OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))


def read_run_meta(run_dir: PathLike) -> dict[str, Any]:
    """``run.json`` of a dynas run directory (one-line DynasError when absent/broken)."""
    return read_run(run_dir)


def run_objectives(run_dirs: PathLike | Sequence[PathLike]) -> tuple[Objective, ...]:
    """The objectives the (first) run optimised; accuracy max / FLOPs min by default."""
    dirs = as_run_dirs(run_dirs)
    raw = read_run_meta(dirs[0]).get("objectives") if dirs else None
    return as_objectives(raw) if raw else DEFAULT_OBJECTIVES


def as_objectives(raw: Iterable[Any] | None) -> tuple[Objective, ...]:
    """Objectives from ``Objective``s, ``{"metric", "direction"}`` dicts or pairs."""
    if raw is None:
        return DEFAULT_OBJECTIVES
    out = []
    for item in raw:
        if isinstance(item, Objective):
            obj = item
        elif isinstance(item, dict):
            obj = Objective(str(item.get("metric")), item.get("direction", "max"))
        else:
            metric, direction = item
            obj = Objective(str(metric), direction)
        if obj.direction not in ("max", "min"):
            raise DynasError(f"objective {obj.metric}: direction must be max or min, "
                             f"got {obj.direction!r}")
        out.append(obj)
    if not out:
        raise DynasError("at least one objective is needed")
    return tuple(out)


def load_runs(run_dirs: PathLike | Sequence[PathLike]) -> pd.DataFrame:
    """All intact trial records of the given run directories, in file order per run."""
    dirs = as_run_dirs(run_dirs)
    if not dirs:
        raise DynasError("no run directory given")
    rows: list[dict[str, Any]] = []
    seen_names: dict[str, int] = {}
    for run_dir in dirs:
        meta = read_run_meta(run_dir)
        name = str(meta.get("name") or Path(run_dir).resolve().name)
        seen_names[name] = seen_names.get(name, 0) + 1
        if seen_names[name] > 1:  # two runs with one name stay distinguishable
            name = f"{name}#{seen_names[name]}"
        base = {"run": name, "strategy": str(meta.get("strategy", "")), "run_dir": str(run_dir)}
        for trial, record in enumerate(iter_records(run_dir)):
            rows.append(_row(base, trial, record))
    return _frame(rows)


def as_run_dirs(run_dirs: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(run_dirs, (str, os.PathLike)):
        return [Path(run_dirs)]
    return [Path(d) for d in run_dirs]


def _row(base: dict[str, Any], trial: int, record) -> dict[str, Any]:
    row = dict(base)
    row.update(trial=trial, proposal_id=record.proposal_id, arch_id=record.arch_id,
               state=record.state, reason=record.reason, policy=record.policy,
               seed=record.seed, wall_time_s=record.wall_time_s,
               experiences_done=record.experiences_done, cached_from=record.cached_from,
               finished_at=record.finished_at, schema_version=record.schema_version,
               repeat_of=record.repeat_of, train_seed=record.train_seed,
               chance_accuracy=record.chance_accuracy, baseline=record.baseline,
               evaluation=record.evaluation, budget=record.budget)
    for key, value in (record.metrics or {}).items():
        row[key] = _as_float(value)
    for key, value in (record.params or {}).items():
        row[f"param.{key}"] = value
    row.update(arch_summary(record.arch))
    row.update(arch=record.arch, acc_matrix=record.acc_matrix, test_acc_matrix=record.test_acc_matrix,
               expert_load=record.expert_load, objective_values=record.objectives,
               dynamics=record.dynamics)
    return row


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def is_transformer_arch(arch: Any) -> bool:
    """An ``ArchConfig.to_dict()`` (has layers), as opposed to a plain assignment."""
    return isinstance(arch, dict) and isinstance(arch.get("layers"), list) and "d_model" in arch


def arch_summary(arch: Any) -> dict[str, Any]:
    """The ``arch.*`` summary columns of one record's arch dict (empty for assignments)."""
    if not is_transformer_arch(arch):
        return {}
    layers = arch["layers"]
    attn = [str((layer.get("attention") or {}).get("kind", "?")) for layer in layers]
    ffn = [str((layer.get("ffn") or {}).get("kind", "?")) for layer in layers]
    return {
        "arch.layers": len(layers),
        "arch.d_model": arch.get("d_model"),
        "arch.attention_kinds": ",".join(dict.fromkeys(attn)),
        "arch.ffn_kinds": ",".join(dict.fromkeys(ffn)),
        "arch.moe_layers": sum(kind == "moe" for kind in ffn),
        "arch.summary": short_arch(arch),
    }


def short_arch(arch: Any) -> str:
    """One line: ``d64 | full+dense x2, sw16+moe8k2`` (width, then attention+FFN per
    layer, in the kinds' short labels). A record whose arch no longer parses (an
    unknown kind, a broken field) shows its raw kind names instead."""
    if isinstance(arch, dict) and REFERENCE_KEY in arch:
        try:
            return model_from_dict(arch).summary()
        except DynasError:
            pass
    if not is_transformer_arch(arch):
        if isinstance(arch, dict):
            return ", ".join(f"{k}={v}" for k, v in sorted(arch.items()))
        return str(arch)
    try:
        return ArchConfig.from_dict(arch).summary()
    except DynasError:
        kinds = [f"{(layer.get('attention') or {}).get('kind', '?')}+"
                 f"{(layer.get('ffn') or {}).get('kind', '?')}"
                 for layer in arch["layers"] if isinstance(layer, dict)]
        return f"d{arch.get('d_model')} | " + ", ".join(kinds)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    for column in BASE_COLUMNS:
        if column not in df:
            df[column] = pd.Series(dtype=object)
    for metric in names.ALL_METRICS + TEST_METRICS:
        if metric not in df:
            df[metric] = np.nan
        df[metric] = df[metric].astype(float)
    for column in ARCH_COLUMNS + OBJECT_COLUMNS:
        if column not in df:
            df[column] = None
        df[column] = df[column].astype(object)
    for column in ("arch.layers", "arch.d_model", "arch.moe_layers"):
        df[column] = pd.to_numeric(df[column], errors="coerce")  # NaN for assignments
    return df.reset_index(drop=True)


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Metric columns present in ``df``: the known names first, then any others."""
    known = [m for m in names.ALL_METRICS + TEST_METRICS if m in df]
    taken = set(BASE_COLUMNS) | set(OBJECT_COLUMNS) | set(ARCH_COLUMNS) | set(known)
    extra = [c for c in df.columns if c not in taken and not c.startswith("param.")]
    return known + extra


def complete(df: pd.DataFrame) -> pd.DataFrame:
    """The searched trials that finished with results, each trained architecture once: a
    cached repeat (a proposal answered with an earlier trial's result) and a seed repeat
    (the same architecture trained again, ``analysis.seeds`` averages them) are not new
    points, and a reference baseline is no trial of the search."""
    return df[(df["state"] == "complete") & df["cached_from"].isna() & df["repeat_of"].isna()
              & ~_is_baseline(df) & at_top_rung(df)]


def at_top_rung(df: pd.DataFrame) -> pd.Series:
    """Per row: measured at its run's top rung. A run with ``search.fidelity`` records
    several budgets (steps per experience); its fronts, picks and hypervolume use only
    the largest, so values of different budgets never meet on one front. A run with one
    budget (or none recorded: older records) is all top rung."""
    budget = pd.to_numeric(df["budget"], errors="coerce")
    runs = df["run"].astype(str)
    top = budget.groupby(runs).transform("max")
    several = budget.groupby(runs).transform("nunique") > 1
    return ~several | (budget == top)


def is_promotion(df: pd.DataFrame) -> pd.Series:
    """Per row: a candidate trained again at a higher rung than its run's first (the
    rung the policy searched at; ``controllers.run.fidelity``), not a new architecture."""
    budget = pd.to_numeric(df["budget"], errors="coerce")
    return budget > budget.groupby(df["run"].astype(str)).transform("min")


def rung_budgets(df: pd.DataFrame) -> list[int]:
    """The budgets (steps per experience) the searched records of ``df`` trained at,
    ascending; more than one: a multi-fidelity run."""
    budget = pd.to_numeric(searched(df)["budget"], errors="coerce").dropna()
    return sorted(int(b) for b in budget.unique())


def chance_level(df: pd.DataFrame) -> float | None:
    """A uniform guess's accuracy on the runs' task (None when no record says)."""
    values = df["chance_accuracy"].dropna().astype(float) if "chance_accuracy" in df else []
    return float(values.iloc[0]) if len(values) else None


def searched(df: pd.DataFrame) -> pd.DataFrame:
    """Every record of the search itself, whatever its state (no reference baselines)."""
    return df[~_is_baseline(df)]


def baselines(df: pd.DataFrame) -> pd.DataFrame:
    """The reference baselines that finished with results (``search.baselines``)."""
    return df[(df["state"] == "complete") & _is_baseline(df)]


def _is_baseline(df: pd.DataFrame) -> pd.Series:
    return df["baseline"].fillna("").astype(str) != ""
