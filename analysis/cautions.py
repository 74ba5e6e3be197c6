"""What a report must say before its numbers are read: the warnings of ``dynas report``.

A report is read as a finding. These are the ways its numbers mislead without a word:

* runs compared side by side that differ in task, training budget or space (their
  experiment copies say so): a run trained 4x longer "wins" the hypervolume by budget,
  not by strategy. ``budgets_differ`` makes the report refuse that comparison unless
  asked (``dynas report --mixed-budgets``);
* a front near chance level: models that barely learned rank by noise;
* a front of single training seeds: a difference smaller than the seed-to-seed spread
  is not a finding until ``dynas confirm`` measures it;
* inherited scores (``search.evaluation: supernet``): the front ranks weights borrowed
  from a supernet, not models trained stand-alone.

Each warning is one Markdown bullet; ``warnings_for`` gives them in that order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd
import yaml

from dynas.controllers.records import EXPERIMENT_COPY

from . import seeds
from .load import chance_level, complete, read_run_meta
from .pareto import accuracy_metric

BUDGET_KEYS = ("steps_per_experience", "batch_size")       # training's budget (TrainingSettings)
NOT_COMPARED = ("seed", "device", "log_every", "eval_batch_size")   # leave what is measured as is
NEAR_CHANCE = 0.15        # best front accuracy within this share of the headroom above chance


def experiment_of(run_dir: Path) -> dict[str, Any]:
    """The run's experiment copy as a mapping ({} when it is missing or unreadable:
    the report still comes, without the comparison)."""
    name = read_run_meta(run_dir).get("experiment", EXPERIMENT_COPY)
    try:
        data = yaml.safe_load((Path(run_dir) / str(name)).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def differences(dirs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """``{aspect: {run name: value}}`` for each aspect (``task``, ``training budget``,
    ``training settings``, ``space``) in which the runs' experiment copies differ."""
    copies = {Path(d).name: experiment_of(Path(d)) for d in dirs}
    copies = {name: data for name, data in copies.items() if data}
    if len(copies) < 2:
        return {}
    aspects = {
        "task": lambda e: e.get("task"),
        "training budget": lambda e: {k: _training(e).get(k) for k in BUDGET_KEYS},
        "training settings": lambda e: {k: v for k, v in _training(e).items()
                                        if k not in BUDGET_KEYS + NOT_COMPARED},
        "space": lambda e: e.get("space"),
    }
    out = {}
    for aspect, value_of in aspects.items():
        values = {name: value_of(data) for name, data in copies.items()}
        if len({yaml.safe_dump(v, sort_keys=True) for v in values.values()}) > 1:
            out[aspect] = values
    return out


def budgets_differ(dirs: Sequence[Path]) -> dict[str, Any] | None:
    """``{run: budget}`` when the runs were trained at different budgets, else None."""
    return differences(dirs).get("training budget")


def budget_text(budgets: dict[str, Any]) -> str:
    return "; ".join(f"{run}: " + ", ".join(f"{k} {v if v is not None else 'default'}"
                                           for k, v in budget.items())
                     for run, budget in budgets.items())


def warnings_for(df: pd.DataFrame, front: pd.DataFrame, dirs: Sequence[Path], objectives) -> list[str]:
    """The report's warnings (module docstring), one Markdown bullet each."""
    out = [_difference_line(aspect, values) for aspect, values in differences(dirs).items()]
    out += _chance(front, df, objectives)
    if not front.empty and not seeds.has_repeats(df):
        run = Path(dirs[0])
        out.append(f"- **One training seed per candidate.** Every point of the front was trained once: "
                   f"a gap smaller than the seed-to-seed spread is not a finding. Measure the spread with "
                   f"`dynas confirm {run} --top 5 --order knee --seeds 3` (or `--trials ID,ID`).")
    inherited = inherited_rows(complete(df))
    if not inherited.empty:
        out.append(f"- **Inherited scores.** {len(inherited)} of {len(complete(df))} complete candidates were "
                   "scored with weights inherited from the run's supernet, not trained stand-alone: "
                   "the front, picks and hypervolume rank those scores (marked *inherited* in the tables "
                   "and the plot). Stand-alone numbers come from `dynas confirm`.")
    return out


def inherited_rows(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "evaluation" not in df:
        return df.iloc[:0]
    return df[df["evaluation"].fillna("standalone").astype(str) != "standalone"]


def _difference_line(aspect: str, values: dict[str, Any]) -> str:
    shown = "; ".join(f"{run}: {_short(v)}" for run, v in values.items())
    tail = (" Hypervolumes are not compared across budgets unless `--mixed-budgets` is given."
            if aspect == "training budget" else "")
    return f"- **The runs differ in {aspect}** ({shown}): they are not measurements of the same thing.{tail}"


def _chance(front: pd.DataFrame, df: pd.DataFrame, objectives) -> list[str]:
    chance = chance_level(df)
    if chance is None or front.empty or chance >= 1:
        return []
    acc = accuracy_metric(objectives)
    if acc not in front or front[acc].isna().all():
        return []
    best = float(front[acc].max())
    if (best - chance) / (1.0 - chance) >= NEAR_CHANCE:
        return []
    return [f"- **Near chance level.** The best {acc} on the front is {best:.4g} against a chance level of "
            f"{chance:.4g}: these models barely learned, and their ranking is mostly noise. Train longer "
            "(`--set training.steps_per_experience=...`) before reading the front."]


def _training(experiment: dict) -> dict:
    training = experiment.get("training")
    return training if isinstance(training, dict) else {}


def _short(value: Any, limit: int = 80) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=True, width=10_000).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
