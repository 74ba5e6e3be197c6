"""One Markdown report of one or several runs, with its figures and a flat CSV.

``write_report(run_dirs, out_dir)`` writes into ``out_dir`` (default ``RUN_DIR/report``
of the first run): ``report.md``, ``trials.csv`` and the PNG figures it links. It is
meant to be read after any search, so it never fails for lack of results: one trial,
every trial failed (no front: the report says so), plain decision spaces (no
transformer to describe) and several runs side by side all give a report.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dynas.search_space import names
from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError

from . import cautions, plots, seeds
from .calibration import is_calibration, write_calibration_report
from .dynamics_plots import dynamics_section
from .load import (OBJECT_COLUMNS, as_run_dirs, baselines, chance_level, complete, is_promotion,
                   is_transformer_arch, load_runs, rung_budgets, run_objectives, searched, short_arch)
from .pareto import (front_ranks, hypervolume, knee_index, objective_matrix, pareto_front, pick,
                     rankable, reference_point, running_hypervolume, REFERENCE_PAD)
from .plots import fmt

REPORT_FILE = "report.md"
CSV_FILE = "trials.csv"
MAX_FRONT_ROWS = 30
MAX_DESCRIBED = 10


def write_report(run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
                 out_dir: str | os.PathLike | None = None, *, cost: str | None = None,
                 mixed_budgets: bool = False) -> Path:
    """Write the report of ``run_dirs`` and return the path of ``report.md``.

    ``cost``: ``flops`` (static), ``flops_effective`` (at the learned spans and
    realised k) or ``latency_ms`` (measured) replaces whichever FLOPs metric the
    search's objectives name, so the front, picks and Pareto plot can be drawn on
    any; None keeps the search's own. Warnings come first (``analysis.cautions``);
    runs trained at different budgets get no hypervolume comparison unless
    ``mixed_budgets``.
    """
    dirs = as_run_dirs(run_dirs)
    if len(dirs) == 1 and is_calibration(dirs[0]):      # dynas calibrate: its own section
        return write_calibration_report(dirs[0], Path(out_dir) if out_dir is not None else dirs[0] / "report")
    df = load_runs(dirs)
    objectives = with_cost(run_objectives(dirs), cost, df)
    out = Path(out_dir) if out_dir is not None else dirs[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    df = df.assign(front_rank=front_ranks(df, objectives) if not df.empty else [])
    write_trials_csv(df, out / CSV_FILE)

    ok = rankable(df, objectives) if not df.empty else df
    front = pareto_front(df, objectives) if not ok.empty else ok
    ref = reference_point(df, objectives) if not ok.empty else None
    picks = _picks(df, objectives) if not front.empty else {}
    figures = _figures(df, objectives, ref, picks, out)
    warnings = cautions.warnings_for(df, front, dirs, objectives)
    budgets = None if mixed_budgets else cautions.budgets_differ(dirs)

    lines = [f"# dynas report: {', '.join(dict.fromkeys(df['run'])) or ', '.join(d.name for d in dirs)}", ""]
    lines += _summary(df, dirs, objectives)
    lines += (["## Warnings", ""] + warnings + [""]) if warnings else []
    lines += _front_section(df, front, objectives, picks, figures)
    lines += _confirmed_section(df, objectives, picks, out)
    lines += _supernet_section(df, objectives)
    lines += _baseline_section(df, objectives, picks)
    lines += _best_section(ok, objectives)
    lines += _hypervolume_section(df, front, objectives, ref, figures, budgets)
    lines += _figure_section("Choices on the front", figures, "choices")
    lines += plots.choice_omissions(complete(df)) if "choices" in figures else []
    lines += _trial_figures(figures)
    lines += dynamics_section(df, front, out)
    lines += _failures(df)
    lines += ["## Files", "", f"- [`{CSV_FILE}`]({CSV_FILE}): one row per trial "
              "(metrics, `param.*` decisions, `arch.*` summary, `front_rank`; -1 = not ranked)"]
    lines += [f"- [`{p.name}`]({p.name})" for p in figures.values()]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


FLOP_METRICS = (names.FLOPS, names.FLOPS_EFFECTIVE)
COSTS = FLOP_METRICS + (names.LATENCY_MS,)


def with_cost(objectives: Sequence[Any], cost: str | None, df: pd.DataFrame | None = None) -> list[Any]:
    """``objectives`` with a FLOPs objective measured by ``cost`` instead (one line
    when no record of ``df`` has that metric)."""
    if cost is None:
        return list(objectives)
    if cost not in COSTS:
        raise DynasError(f"--cost: {cost!r} is not one of {', '.join(COSTS)}")
    if df is not None and (cost not in df or df[cost].isna().all()):
        raise DynasError(f"--cost {cost}: no trial of these runs recorded {cost}")
    return [dataclasses.replace(o, metric=cost) if o.metric in COSTS else o
            for o in objectives]


def write_trials_csv(df: pd.DataFrame, path: Path) -> Path:
    """The trials flat: raw objects (arch, matrices, loads) as JSON strings."""
    flat = df.copy()
    for column in OBJECT_COLUMNS:
        if column in flat:
            flat[column] = flat[column].map(lambda v: json.dumps(v, sort_keys=True) if v is not None else "")
    flat.to_csv(path, index=False)
    return path


# --- numbers ---------------------------------------------------------------------------
def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    clean = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return out + [""]


def _objective_text(objectives) -> str:
    return ", ".join(f"{o.metric} ({o.direction})" for o in objectives)


# --- sections ---------------------------------------------------------------------------
def _summary(df: pd.DataFrame, dirs: list[Path], objectives) -> list[str]:
    lines = ["## Summary", "", f"Objectives: {_objective_text(objectives)}.", ""]
    if df.empty:
        return lines + [f"No trial records yet in {', '.join(str(d) for d in dirs)}.", ""]
    rows = [_summary_row(run, group) for run, group in df.groupby("run", sort=False)]
    if len(rows) > 1:
        rows.append(_summary_row("**all**", df))
    lines += _table(["run", "strategy", "trained", "complete", "failed", "pruned",
                     "cached repeats", "seed repeats", "trial time (sum)"], rows) + [
        "", "Cached repeats are proposals of an architecture already trained in the run: "
        "the policy was told the earlier result and nothing was retrained. Seed repeats "
        "are architectures trained again with a fresh training seed (`dynas confirm`, "
        "`search.remeasure`).", "",
        "Accuracies and forgetting under their plain names are measured on the validation "
        "splits, which is all the search selected on; `test.*` columns are the held-out "
        "test splits, shown, never used to select."]
    if (df["schema_version"].fillna(1).astype(int) < 2).any():
        lines += ["", "**Some records predate the validation/test split (record schema 1): "
                  "their accuracies were measured on the test splits, which the search selected on.**"]
    return lines + [""]


def _summary_row(name: str, group: pd.DataFrame) -> list:
    group = searched(group)                 # baselines are listed in their own section
    cached = group["cached_from"].notna()
    repeats = group["repeat_of"].notna()
    trained = group[~cached & ~repeats & ~is_promotion(group)]   # a promoted candidate: once
    states = trained["state"].value_counts()
    return [name, ", ".join(dict.fromkeys(group["strategy"])), len(trained),
            states.get("complete", 0), states.get("failed", 0), states.get("pruned", 0),
            int(cached.sum()), int(repeats.sum()),
            f"{group[~cached]['wall_time_s'].astype(float).sum():.1f} s"]


def _picks(df: pd.DataFrame, objectives) -> dict[str, pd.Series]:
    out = {}
    for rule in ("knee", "best-accuracy"):
        try:
            out[rule] = pick(df, rule, objectives)
        except DynasError:
            pass
    return out


def _front_section(df, front, objectives, picks, figures) -> list[str]:
    lines = ["## Pareto front", ""]
    if front.empty:
        done = complete(df)
        missing = [o.metric for o in objectives if o.metric not in done or done[o.metric].isna().all()]
        reason = ("no trial completed" if done.empty else
                  f"no complete trial reports {', '.join(missing)}" if missing else
                  "no complete trial reports every objective")
        return lines + [f"No Pareto front: {reason}.", ""]
    n_ok = len(complete(df))
    lines += [f"{len(front)} of {n_ok} complete trials are non-dominated in "
              f"{_objective_text(objectives)} (validation values).", ""]
    lines += _rung_lines(df)
    chance = chance_level(df)
    if chance is not None:
        lines += [f"Chance level (a uniform guess; 1/classes, or 1/classes per experience "
                  f"when task-incremental): {chance:.4g}, the dashed line in the plot.", ""]
    lines += _figure_lines("Pareto front", figures, "pareto")
    metrics = _front_metrics(df, objectives)
    header = ["run", "trial id", "arch_id"] + metrics + ["architecture"]
    rows = []
    for _, row in front.head(MAX_FRONT_ROWS).iterrows():
        tags = [rule for rule, p in picks.items() if p.name == row.name]
        tags += ["*inherited*"] if seeds.is_inherited(row) else []
        arch_id = f"`{row['arch_id']}`" + (f" ({', '.join(tags)})" if tags else "")
        rows.append([row["run"], row["proposal_id"], arch_id]
                    + [fmt(m, row[m]) for m in metrics] + [short_arch(row["arch"])])
    lines += _table(header, rows)
    if len(front) > MAX_FRONT_ROWS:
        lines += [f"({len(front) - MAX_FRONT_ROWS} more in `{CSV_FILE}`, `front_rank` 0.)", ""]
    lines += ["### Picks", ""]
    for rule, row in picks.items():
        values = ", ".join(f"{o.metric} = {fmt(o.metric, row[o.metric])}" for o in objectives)
        lines.append(f"- **{rule}**: trial {row['proposal_id']} of {row['run']}, "
                     f"`{row['arch_id']}` (picked on validation: {values}; held-out test: "
                     f"{held_out_text(row, objectives)}); export with "
                     f"`dynas export {row['run_dir']} --pick {rule} --out arch.json`")
    lines += ["", "### Front architectures", ""]
    for _, row in front.head(MAX_DESCRIBED).iterrows():
        lines += [f"`{row['arch_id']}` (trial {row['proposal_id']} of {row['run']}):", "",
                  "```", describe_arch(row["arch"]), "```", ""]
    return lines


def _rung_lines(df: pd.DataFrame) -> list[str]:
    """Which budget the front is from, when a run trained at several (search.fidelity)."""
    budgets = rung_budgets(df)
    if len(budgets) < 2:
        return []
    trained = searched(df)
    trained = trained[trained["cached_from"].isna() & trained["repeat_of"].isna()]
    done = pd.to_numeric(trained["budget"], errors="coerce")
    counts = ", ".join(f"{b} steps: {int((done == b).sum())} trained" for b in budgets)
    return [f"Budget as a fidelity: the front, the picks and the hypervolume are the top rung's only, "
            f"{budgets[-1]} steps per experience (rungs: {counts}); lower rungs chose whom to promote.", ""]


def _baseline_section(df: pd.DataFrame, objectives, picks: dict[str, pd.Series]) -> list[str]:
    """The reference baselines (``search.baselines``), trained with the search's own
    settings and never told to the policy, beside the picks for comparison."""
    refs = baselines(df)
    failed = df.drop(searched(df).index)
    failed = failed[failed["state"] != "complete"]
    if refs.empty and failed.empty:
        return []
    metrics = _front_metrics(df, objectives)
    rows = [[row["baseline"], row["run"], f"`{row['arch_id']}`"] + [fmt(m, row[m]) for m in metrics]
            for _, row in refs.iterrows()]
    rows += [[f"{rule} pick", row["run"], f"`{row['arch_id']}` (trial {row['proposal_id']})"]
             + [fmt(m, row[m]) for m in metrics] for rule, row in picks.items()]
    lines = ["## Reference baselines", "",
             "Trained with the search's task and training settings, recorded beside the trials, "
             "never told to the policy and never on the front; the picks are listed below them.", ""]
    lines += _table(["model", "run", "arch_id"] + metrics, rows)
    for _, row in failed.iterrows():
        lines.append(f"- {row['baseline']} ({row['run']}): {row['state']}, {row['reason']}")
    return lines + ([""] if not failed.empty else [])


def _front_metrics(df: pd.DataFrame, objectives) -> list[str]:
    """Columns of the front table: each validation metric followed by its held-out
    test twin (``test.<name>``) when the records have one, then the costs."""
    wanted = [o.metric for o in objectives] + [
        names.FINAL_AVG_ACCURACY, names.FORGETTING_LAST, names.FLOPS, names.PARAMS,
        names.ACTIVE_PARAMS, names.LATENCY_MS, names.KV_BYTES, names.ACTIVATION_BYTES]
    paired = [c for m in dict.fromkeys(wanted) for c in (m, names.as_test(m))]
    return [m for m in paired if m in df and df[m].notna().any()]


def held_out_text(row: pd.Series, objectives) -> str:
    """The held-out test numbers of a trial, for the objectives that have a test twin."""
    twins = [names.as_test(o.metric) for o in objectives]
    have = [t for t in twins if t in row and pd.notna(row[t])]
    return ", ".join(f"{t} = {fmt(t, row[t])}" for t in have) or "no test numbers recorded"


def describe_arch(arch: Any) -> str:
    """``ArchConfig.describe()`` for a transformer, ``name=value`` lines otherwise."""
    if is_transformer_arch(arch):
        try:
            return ArchConfig.from_dict(arch).describe()
        except DynasError:
            return short_arch(arch)
    if isinstance(arch, dict):
        return "\n".join(f"{k} = {v}" for k, v in sorted(arch.items()))
    return str(arch)


def _best_section(ok: pd.DataFrame, objectives) -> list[str]:
    lines = ["## Best per objective", ""]
    if ok.empty:
        return lines + ["No complete trial reports every objective.", ""]
    rows = []
    for o in objectives:
        row = ok.loc[ok[o.metric].idxmax() if o.direction == "max" else ok[o.metric].idxmin()]
        others = ", ".join(f"{p.metric} = {fmt(p.metric, row[p.metric])}"
                           for p in objectives if p is not o)
        rows.append([o.metric, o.direction, fmt(o.metric, row[o.metric]), row["run"],
                     row["proposal_id"], f"`{row['arch_id']}`", others])
    return lines + _table(["objective", "direction", "best", "run", "trial id", "arch_id",
                           "its other objectives"], rows)


def _hypervolume_section(df, front, objectives, ref, figures, budgets=None) -> list[str]:
    lines = ["## Hypervolume", ""]
    if front.empty or ref is None:
        return lines + ["No hypervolume: no Pareto front.", ""]
    if budgets:
        return lines + ["Not compared: the runs were trained at different budgets "
                        f"({cautions.budget_text(budgets)}); a run trained longer wins by budget, not by "
                        "strategy. Report each run alone, or pass `--mixed-budgets` to compare anyway.", ""]
    total = hypervolume(objective_matrix(front, objectives), ref, objectives)
    ref_text = ", ".join(f"{o.metric} = {r:.6g}" for o, r in zip(objectives, ref))
    lines += [f"Reference point: {ref_text}. Rule: accuracy objectives use 0; every other "
              f"objective its worst complete value over all runs here, padded by "
              f"{REFERENCE_PAD:.0%} of its range.", "",
              f"Hypervolume of the combined front: **{total:.6g}**.", ""]
    hist = running_hypervolume(df, objectives, ref)
    rows = []
    for run, group in hist.groupby("run", sort=False):
        final = float(group["hypervolume"].iloc[-1])
        reached = group[group["hypervolume"] >= 0.9 * final]["trial"]
        rows.append([run, group["strategy"].iloc[0], f"{final:.6g}",
                     f"{final / total:.1%}" if total > 0 else "–",
                     int(reached.iloc[0]) + 1 if final > 0 and not reached.empty else "–"])
    lines += _table(["run", "strategy", "hypervolume", "share of combined",
                     "trials to 90% of own final"], rows)
    return lines + _figure_lines("Hypervolume and best so far per trial", figures, "progress")


def _failures(df: pd.DataFrame) -> list[str]:
    lines = ["## Failed and pruned trials", ""]
    bad = df[df["state"] != "complete"]
    if bad.empty:
        return lines + ["None: every trial completed.", ""]
    rows = []
    keyed = bad.assign(reason=bad["reason"].fillna("(no reason recorded)").astype(str))
    for (state, reason), group in keyed.groupby(["state", "reason"], sort=False):
        ids = ", ".join(f"{r}:{p}" if df["run"].nunique() > 1 else str(p)
                        for r, p in zip(group["run"], group["proposal_id"]))
        rows.append([state, reason[:160], len(group), ids[:120]])
    rows.sort(key=lambda r: (r[0], -r[2]))
    return lines + _table(["state", "reason", "count", "trials"], rows)


# --- figures ---------------------------------------------------------------------------
def _figures(df, objectives, ref, picks, out: Path) -> dict[str, Path]:
    """Every figure the data supports; a figure without data is left out, not faked."""
    knee = picks.get("knee")
    focus = [p for p in (knee, picks.get("best-accuracy")) if p is not None]
    jobs = {
        "expert_load": lambda p: plots.plot_expert_load(
            df, p, index=_first_with(df, focus, "expert_load")),
        "accuracy_matrix": lambda p: plots.plot_accuracy_matrix(
            df, p, index=_first_with(df, focus, "acc_matrix")),
    }
    if ref is not None:  # there is a front
        jobs = {
            "pareto": lambda p: plots.plot_pareto(df, p, objectives=objectives, pick=knee,
                                                  pick_label="knee", chance=chance_level(df),
                                                  inherited=not cautions.inherited_rows(complete(df)).empty),
            "progress": lambda p: plots.plot_progress(df, p, objectives=objectives, ref=ref),
            "choices": lambda p: plots.plot_choice_frequencies(df, p, objectives=objectives),
            **jobs,
        }
        if len(objectives) < 2:
            del jobs["pareto"]
    figures: dict[str, Path] = {}
    for name, draw in jobs.items():
        try:
            figures[name] = draw(out / f"{name}.png")
        except DynasError:  # e.g. no MoE trial: no expert-load figure
            continue
    return figures


def _first_with(df: pd.DataFrame, focus: list[pd.Series], column: str) -> Any:
    """Index of the first focus trial (knee, then best) that has ``column``, else None
    (the plot then takes the first complete trial that has it)."""
    for row in focus:
        if df.loc[row.name, column]:
            return row.name
    return None


def _figure_lines(title: str, figures: dict[str, Path], key: str) -> list[str]:
    return [f"![{title}]({figures[key].name})", ""] if key in figures else []


def _figure_section(title: str, figures: dict[str, Path], key: str) -> list[str]:
    if key not in figures:
        return []
    return [f"## {title}", ""] + _figure_lines(title, figures, key)


def _trial_figures(figures: dict[str, Path]) -> list[str]:
    lines = []
    for key, title in (("accuracy_matrix", "Accuracy matrix"),
                       ("expert_load", "Expert load")):
        lines += _figure_section(title, figures, key)
    return lines


# --- seed repeats ----------------------------------------------------------------------
CONFIRMED_FIGURE = "confirmed_front.png"


def _confirmed_section(df: pd.DataFrame, objectives, picks, out: Path) -> list[str]:
    """The front from seed means (``analysis.seeds``), re-picked, with its noise."""
    if not seeds.has_repeats(df):
        return []
    summary = seeds.seed_summary(df, objectives)
    lines = ["## Confirmed front (seed repeats)", ""]
    if summary.empty:
        return lines + ["Seed repeats exist but no candidate has two complete measurements.", ""]
    spread = seeds.noise(summary, objectives)
    front = pareto_front(summary, objectives)
    knee = front.iloc[knee_index(objective_matrix(front, objectives), objectives)]
    single = picks.get("knee")
    n = sorted(set(summary["n_seeds"].astype(int)))
    what = "the first draw and its repeats" if not any(f"inherited.{o.metric}" in summary for o in objectives) \
        else "stand-alone re-trainings only: the inherited scores are in the supernet section"
    seeds_text = " or ".join(map(str, n)) + (" training seed" if n == [1] else " training seeds")
    lines += [f"{len(summary)} {'candidate' if len(summary) == 1 else 'candidates'} measured with "
              f"{seeds_text} each ({what}; the data split is the run's). Values are "
              f"means over seeds ± their standard deviation (ddof 1).", ""]
    lines += (["Seed-to-seed standard deviation (mean over candidates): " + ", ".join(
        f"{m} {fmt(m, v) if v > 0 else '0'}" for m, v in spread.items()) + ".", ""] if spread else
              ["No seed-to-seed spread yet: a spread needs two or more seeds of one kind per candidate "
               "(`dynas confirm RUN --top K --seeds 2`).", ""])
    try:
        plots.plot_confirmed(summary, out / CONFIRMED_FIGURE, objectives=objectives, pick=knee,
                             single_pick=single, chance=chance_level(df))
        lines += [f"![Confirmed front]({CONFIRMED_FIGURE})", ""]
    except DynasError:
        pass
    lines += _table(*_confirmed_rows(summary, front, knee, objectives))
    lines += _confirmed_picks(summary, front, knee, single, objectives, spread)
    return lines


def _supernet_section(df: pd.DataFrame, objectives) -> list[str]:
    """Inherited scores (``search.evaluation: supernet``) beside the stand-alone
    re-training of the confirmed candidates; the two are never mixed (``analysis.seeds``)."""
    if df.empty or "evaluation" not in df:
        return []
    first = complete(df)
    inherited = first[first["evaluation"].fillna("standalone") != "standalone"]
    if inherited.empty:
        return []
    kind = "inherited and fine-tuned" if (inherited["evaluation"] == "finetuned").any() else "inherited"
    lines = ["## Supernet: inherited vs stand-alone", "",
             f"{len(inherited)} of the {len(first)} candidates were scored with weights {kind} from the "
             "run's supernet (`search.evaluation: supernet`), not trained: the front, picks and "
             "hypervolume above rank those scores. Stand-alone numbers come only from seed repeats "
             "(`search.confirm`, `dynas confirm`), trained from scratch; they are never averaged with "
             "the inherited scores.", ""]
    summary = seeds.seed_summary(df, objectives) if seeds.has_repeats(df) else df.iloc[:0]
    metric = objectives[0].metric
    rows, tau = seeds.supernet_comparison(summary, metric)
    if rows.empty:
        return lines + ["No candidate was re-trained stand-alone yet: run `dynas confirm RUN --top K "
                        "--seeds 1` to measure how well the inherited scores rank.", ""]
    test = names.as_test(metric)
    header = ["trial id", "arch", f"{metric} inherited", f"{metric} stand-alone (mean ± std)",
              "stand-alone seeds", f"{test} inherited", f"{test} stand-alone"]
    table = []
    for _, row in rows.sort_values(f"inherited.{metric}", ascending=False).iterrows():
        table.append([row["proposal_id"], f"`{row.get('arch.summary', row['arch_id'])}`",
                      fmt(metric, row[f"inherited.{metric}"]), _mean_std(metric, row), int(row["n_seeds"]),
                      fmt(test, row.get(f"inherited.{test}", float("nan"))), fmt(test, row.get(test, float("nan")))])
    lines += _table(header, table)
    gap = float((rows[metric] - rows[f"inherited.{metric}"]).mean())
    lines.append(f"Stand-alone minus inherited {metric}: {gap:+.4f} on average over {len(rows)} candidates. "
                 + (f"Kendall's tau between the two rankings: {tau:.2f}." if tau == tau else
                    "Kendall's tau needs 3 or more re-trained candidates."))
    return lines + [""]


def _confirmed_rows(summary, front, knee, objectives) -> tuple[list[str], list[list[str]]]:
    metrics = [m for o in objectives for m in (o.metric, names.as_test(o.metric)) if m in summary]
    header = ["trial id", "arch_id", "seeds"] + [f"{m} (mean ± std)" for m in metrics] + \
             [f"{o.metric} first draw" for o in objectives] + ["on front of means"]
    rows = []
    for idx, row in summary.iterrows():
        tag = " (knee on means)" if idx == knee.name else ""
        rows.append([row["proposal_id"], f"`{row['arch_id']}`{tag}", int(row["n_seeds"])]
                    + [_mean_std(m, row) for m in metrics]
                    + [fmt(o.metric, row[f"single.{o.metric}"]) for o in objectives]
                    + ["yes" if idx in front.index else "no"])
    return header, rows


def _mean_std(metric: str, row: pd.Series) -> str:
    std = row.get(f"std.{metric}")
    if std is None or std != std:            # one measurement: no spread to show
        return fmt(metric, row[metric])
    return f"{fmt(metric, row[metric])} ± {fmt(metric, std) if std > 0 else '0'}"


def _confirmed_picks(summary, front, knee, single, objectives, spread) -> list[str]:
    lines = ["### Picks on means", ""]
    values = ", ".join(_mean_std(o.metric, knee) for o in objectives)
    lines.append(f"- **knee on means**: trial {knee['proposal_id']} `{knee['arch_id']}` "
                 f"(validation: {values}; held-out test: {held_out_text(knee, objectives)}); export with "
                 f"`dynas export {knee['run_dir']} --pick knee-means --out arch.json` (the default).")
    if single is not None:
        same = single["proposal_id"] == knee["proposal_id"] and single["run"] == knee["run"]
        confirmed = single.name in summary.index
        lines.append(f"- knee on first draws: trial {single['proposal_id']} — "
                     + ("**unchanged** after confirmation." if same else
                        "**changed** after confirmation." if confirmed else
                        "not among the confirmed candidates (raise --top)."))
    close = seeds.advantages(front, knee, objectives, spread)
    for nb, metric, advantage in close:
        if advantage <= spread[metric]:
            lines.append(f"- **within noise**: the knee beats its front neighbour trial {nb} by only "
                         f"{advantage:.4f} in {metric}, no more than the seed-to-seed std "
                         f"{spread[metric]:.4f}: that advantage is not a finding.")
        else:
            lines.append(f"- the knee beats its front neighbour trial {nb} by {advantage:.4f} in "
                         f"{metric}, {advantage / spread[metric]:.2f}x the seed-to-seed std "
                         f"{spread[metric]:.4f}.")
    if not close:
        lines.append("- the knee is better than no front neighbour on a noisy objective.")
    return lines + [""]
