"""Figures of a search, as PNG files. Each function takes the trials DataFrame of
``load_runs`` (plus options) and a path, writes the figure, and returns the path.

Figures are drawn on a bare ``matplotlib.figure.Figure`` rendered by Agg, so nothing
here touches pyplot's global state or needs a display.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from dynas.search_space import names
from dynas.search_space.errors import DynasError

from .load import DEFAULT_OBJECTIVES, as_objectives, baselines, complete, is_transformer_arch
from .pareto import pareto_front, running_hypervolume

FRONT_COLOR = "#d62728"     # the front, everywhere: tests look for these pixels
PICK_COLOR = "#ffbf00"
FAINT_COLOR = "#7f7f7f"
BASELINE_COLOR = "#202020"
RUN_COLORS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DPI = 120

LABELS = {
    names.FINAL_AVG_ACCURACY: "final average accuracy",
    names.LEARNING_ACCURACY: "learning accuracy (mean R[j][j])",
    names.ANYTIME_AVG_ACCURACY: "anytime average accuracy",
    names.FORGETTING_LAST: "forgetting (last, accuracy points)",
    names.FORGETTING_MAX: "forgetting (max, accuracy points)",
    names.BWT: "backward transfer",
    names.FLOPS: "forward FLOPs per sample",
    names.PARAMS: "parameters",
    names.ACTIVE_PARAMS: "active parameters per token",
    names.KV_BYTES: "KV cache bytes per sample",
    names.ACTIVATION_BYTES: "activation bytes per sample",
    names.FLOPS_EFFECTIVE: "effective FLOPs per sample (learned spans, realised k)",
    names.ACTIVE_PARAMS_EFFECTIVE: "effective active parameters per token",
    names.FINAL_AVG_BPC: "final average bits per token (validation)",
    names.FORGETTING_BPC: "forgetting (bits per token)",
}


def label(metric: str, log: bool = False) -> str:
    return LABELS.get(metric, metric.replace("_", " ")) + (" (log scale)" if log else "")


def fmt(metric: str, value: Any) -> str:
    """Costs with SI prefixes (1.23M), accuracies to 4 places, the rest to 4 digits."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "–"
    if names.is_test_metric(metric):              # a test twin prints like its metric
        metric = metric[len(names.TEST_PREFIX):]
    if metric in names.COST_METRICS:
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
        return f"{value:.3g}"
    if metric in names.ACCURACY_METRICS or metric in names.FORGETTING_METRICS:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _use_log(values: np.ndarray, metric: str) -> bool:
    """Costs that span a decade or more (and are positive) read best on a log scale."""
    values = values[np.isfinite(values)]
    return (metric in names.COST_METRICS and values.size > 0 and bool((values > 0).all())
            and values.max() >= 10 * values.min())


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _run_colors(df: pd.DataFrame) -> dict[str, str]:
    runs = list(dict.fromkeys(df["run"]))
    return {run: RUN_COLORS[i % len(RUN_COLORS)] for i, run in enumerate(runs)}


# --- Pareto scatter -------------------------------------------------------------------
def plot_pareto(df: pd.DataFrame, path: str | os.PathLike, *,
                objectives: Sequence[Any] = DEFAULT_OBJECTIVES,
                pick: pd.Series | None = None, pick_label: str = "pick",
                chance: float | None = None, inherited: bool = False) -> Path:
    """Objective 0 (y) against objective 1 (x): every complete trial faint, the
    2-D front of these two highlighted and joined as the attainment staircase, the
    picked trial starred and annotated, and ``chance`` (a uniform guess's accuracy)
    as a dashed line when y is an accuracy. Failed and pruned trials are not drawn.
    Values are validation values: the front is the one the search selected on.
    ``inherited``: the scores came from a supernet's weights, and the title says so."""
    objectives = as_objectives(objectives)
    if len(objectives) < 2:
        raise DynasError("a Pareto plot needs two objectives")
    y_obj, x_obj = objectives[0], objectives[1]
    done = complete(df).dropna(subset=[x_obj.metric, y_obj.metric])
    if done.empty:
        raise DynasError("no complete trial to plot")
    front = pareto_front(done, (y_obj, x_obj)).sort_values(x_obj.metric, kind="stable")
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    colors = _run_colors(done)
    several = len(colors) > 1
    for run, group in done.groupby("run", sort=False):
        ax.scatter(group[x_obj.metric], group[y_obj.metric], s=22,
                   alpha=0.55 if len(done) < 100 else 0.35,
                   color=colors[run] if several else FAINT_COLOR, linewidths=0,
                   label=f"{run}: {len(group)} trials" if several else f"complete trials ({len(group)})")
    ax.plot(front[x_obj.metric], front[y_obj.metric], color=FRONT_COLOR, lw=2,
            drawstyle="steps-post" if x_obj.direction == "min" else "steps-pre", zorder=3)
    ax.scatter(front[x_obj.metric], front[y_obj.metric], s=55, color=FRONT_COLOR,
               edgecolors="black", linewidths=0.6, zorder=4,
               label=f"Pareto front ({len(front)})")
    if _use_log(done[x_obj.metric].to_numpy(float), x_obj.metric):
        _log_x(ax, x_obj.metric, done[x_obj.metric].to_numpy(float))
    _mark_baselines(ax, baselines(df).dropna(subset=[x_obj.metric, y_obj.metric]), x_obj, y_obj)
    _chance_line(ax, y_obj.metric, chance)
    if pick is not None:
        _mark_pick(ax, pick, x_obj, y_obj, pick_label)
    ax.set_xlabel(_axis_label(x_obj, ax.get_xscale() == "log"))
    ax.set_ylabel(_axis_label(y_obj, False))
    scope = "" if len(objectives) == 2 else f" of these two (pick: all {len(objectives)} objectives)"
    note = "\nscores inherited from the supernet, not trained stand-alone" if inherited else ""
    ax.set_title(f"{label(y_obj.metric).capitalize()} vs {label(x_obj.metric)}\n"
                 f"{len(done)} complete trials, {len(front)} on the Pareto front{scope}{note}", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)  # "best" also avoids the note
    return _save(fig, path)


def _mark_baselines(ax, refs: pd.DataFrame, x_obj, y_obj) -> None:
    """Reference baselines as black diamonds, each labelled with its name and numbers
    (they are reference points, not trials: never on the front)."""
    x, y = x_obj.metric, y_obj.metric
    for i, (_, row) in enumerate(refs.iterrows()):
        ax.scatter([row[x]], [row[y]], marker="D", s=70, color=BASELINE_COLOR, edgecolors="white",
                   linewidths=0.8, zorder=6, label="reference baselines" if i == 0 else None)
        ax.annotate(f"{row['baseline']}: {y} {fmt(y, row[y])}, {x} {fmt(x, row[x])}",
                    (row[x], row[y]), textcoords="offset points", xytext=(8, -4 - 12 * (i % 2)),
                    fontsize=8, color=BASELINE_COLOR, zorder=6)


def _chance_line(ax, metric: str, chance: float | None) -> None:
    """The accuracy of a uniform guess: a result below it learned nothing."""
    if chance is None or metric not in names.ACCURACY_METRICS:
        return
    ax.axhline(chance, color=FAINT_COLOR, ls="--", lw=1.2, zorder=1,
               label=f"chance level ({chance:.3g})")


def plot_confirmed(summary: pd.DataFrame, path: str | os.PathLike, *,
                   objectives: Sequence[Any] = DEFAULT_OBJECTIVES, pick: pd.Series | None = None,
                   single_pick: pd.Series | None = None, chance: float | None = None) -> Path:
    """The confirmed candidates at their seed means with error bars (one std over
    seeds), the front of the means highlighted, each first draw as a hollow circle
    joined to its mean, the knee on means starred and the single-draw knee ringed."""
    objectives = as_objectives(objectives)
    if len(objectives) < 2 or summary.empty:
        raise DynasError("a confirmed front needs two objectives and repeated candidates")
    y_obj, x_obj = objectives[0], objectives[1]
    x, y = x_obj.metric, y_obj.metric
    front = pareto_front(summary, (y_obj, x_obj)).sort_values(x, kind="stable")
    xerr = summary[f"std.{x}"].fillna(0.0) if f"std.{x}" in summary else None
    fig = Figure(figsize=(8, 5.5))
    ax = fig.add_subplot()
    on_front = summary.index.isin(front.index)
    for mask, color, text in ((~on_front, FAINT_COLOR, "confirmed, dominated"),
                              (on_front, FRONT_COLOR, "front of the means")):
        part = summary[mask]
        if part.empty:
            continue
        ax.errorbar(part[x], part[y], yerr=part[f"std.{y}"].fillna(0.0),
                    xerr=None if xerr is None else xerr[mask], fmt="o", color=color, ecolor=color,
                    elinewidth=1.4, capsize=4, ms=7, mec="black", mew=0.6, zorder=4,
                    label=f"{text} ({len(part)}): mean ± std over seeds")
    ax.scatter(summary[x], summary[f"single.{y}"], s=30, facecolors="none", edgecolors="black",
               linewidths=0.8, zorder=3, label="first draw (what the search saw)")
    for _, row in summary.iterrows():
        ax.plot([row[x], row[x]], [row[f"single.{y}"], row[y]], color="black", lw=0.5, alpha=0.5)
    ax.plot(front[x], front[y], color=FRONT_COLOR, lw=1.5, alpha=0.8, zorder=2,
            drawstyle="steps-post" if x_obj.direction == "min" else "steps-pre")
    if _use_log(summary[x].to_numpy(float), x):
        _log_x(ax, x, summary[x].to_numpy(float))
    _chance_line(ax, y, chance)
    if single_pick is not None and single_pick.name in summary.index:
        row = summary.loc[single_pick.name]
        ax.scatter([row[x]], [row[f"single.{y}"]], s=260, facecolors="none", edgecolors=PICK_COLOR,
                   linewidths=2.0, zorder=5, label=f"knee on first draws: trial {row['proposal_id']}")
    if pick is not None:
        _mark_pick(ax, pick, x_obj, y_obj, "knee on means")
    seeds = int(summary["n_seeds"].min()), int(summary["n_seeds"].max())
    count = f"{seeds[0]}" if seeds[0] == seeds[1] else f"{seeds[0]}-{seeds[1]}"
    ax.set_xlabel(_axis_label(x_obj, ax.get_xscale() == "log"))
    ax.set_ylabel(_axis_label(y_obj, False) + ", validation")
    ax.set_title(f"Confirmed front: {len(summary)} candidates, {count} seeds each\n"
                 f"{len(front)} on the front of the means", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    # the pick's note sits in the ideal corner; the legend takes the opposite one
    ax.legend(loc=("lower " if y_obj.direction == "max" else "upper ")
              + ("right" if x_obj.direction == "min" else "left"), fontsize=8, framealpha=0.9)
    return _save(fig, path)


def _log_x(ax, metric: str, values: np.ndarray) -> None:
    """Log x axis labelled like the report (3M, 10M, 20M), minor labels when short."""
    ax.set_xscale("log")
    si = FuncFormatter(lambda v, _: fmt(metric, v))
    ax.xaxis.set_major_formatter(si)
    decades = np.log10(np.nanmax(values) / np.nanmin(values))
    ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0) if decades < 3 else ()))
    ax.xaxis.set_minor_formatter(si if decades < 3 else NullFormatter())


def _axis_label(obj, log: bool) -> str:
    better = "higher" if obj.direction == "max" else "lower"
    return LABELS.get(obj.metric, obj.metric.replace("_", " ")) + (
        f" (log scale; {better} is better)" if log else f" ({better} is better)")


def _mark_pick(ax, pick: pd.Series, x_obj, y_obj, text: str) -> None:
    """Star the pick; its note goes in the ideal corner, which no trial can occupy."""
    x, y = x_obj.metric, y_obj.metric
    px, py = float(pick[x]), float(pick[y])
    ax.scatter([px], [py], marker="*", s=320, color=PICK_COLOR, edgecolors="black",
               linewidths=0.8, zorder=5, label=f"{text}: trial {pick['proposal_id']}")
    note = (f"{text}: trial {pick['proposal_id']} ({pick['arch_id']})\n"
            f"{label(y)} = {fmt(y, py)}\n{label(x)} = {fmt(x, px)}")
    summary = pick.get("arch.summary")
    if isinstance(summary, str) and summary:
        note += "\n" + (summary if len(summary) <= 60 else summary[:57] + "...")
    left = x_obj.direction == "min"
    top = y_obj.direction == "max"
    lo, hi = ax.get_ylim()  # headroom on the ideal side, so the note never hides a point
    ax.set_ylim((lo, hi + 0.3 * (hi - lo)) if top else (lo - 0.3 * (hi - lo), hi))
    ax.annotate(note, (px, py), xytext=(0.02 if left else 0.98, 0.97 if top else 0.03),
                textcoords="axes fraction", fontsize=8, ha="left" if left else "right",
                va="top" if top else "bottom",
                bbox=dict(boxstyle="round", fc="white", ec=PICK_COLOR, alpha=0.95),
                arrowprops=dict(arrowstyle="->", color="black", lw=0.8), zorder=6)


# --- progress ---------------------------------------------------------------------------
def plot_progress(df: pd.DataFrame, path: str | os.PathLike, *,
                  objectives: Sequence[Any] = DEFAULT_OBJECTIVES,
                  ref: Sequence[float]) -> Path:
    """Hypervolume (against ``ref``) and best-so-far of objective 0 per trial index,
    one line per run: which strategy finds good trade-offs with fewer trials."""
    objectives = as_objectives(objectives)
    hist = running_hypervolume(df, objectives, ref)
    if hist.empty:
        raise DynasError("no trials to plot")
    first = objectives[0]
    fig = Figure(figsize=(8, 6.5))
    ax_hv, ax_best = fig.subplots(2, 1, sharex=True)
    colors = _run_colors(hist)
    for run, group in hist.groupby("run", sort=False):
        tag = f"{run} ({group['strategy'].iloc[0]})" if group["strategy"].iloc[0] else run
        kw = dict(color=colors[run], lw=2, drawstyle="steps-post", label=tag)
        ax_hv.plot(group["trial"], group["hypervolume"], marker="o", ms=3, **kw)
        ax_best.plot(group["trial"], group[f"best.{first.metric}"], marker="o", ms=3, **kw)
    ref_text = ", ".join(f"{o.metric} = {fmt(o.metric, r)}" for o, r in zip(objectives, ref))
    ax_hv.set_title("Search progress: hypervolume of "
                    f"{' / '.join(f'{o.metric} ({o.direction})' for o in objectives)}\n"
                    f"reference point: {ref_text}", fontsize=10)
    ax_hv.set_ylabel("hypervolume", fontsize=9)
    ax_best.set_ylabel(f"best {label(first.metric)}\nso far", fontsize=9)
    ax_best.set_xlabel("trial index (order finished; failed trials count)")
    ax_best.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax_best.set_xlim(-0.5, hist["trial"].max() + 0.5)
    for ax in (ax_hv, ax_best):
        ax.grid(True, alpha=0.3)
    ax_hv.legend(loc="lower right", fontsize=9)
    return _save(fig, path)


# --- choice frequencies ----------------------------------------------------------------
def _layer_counts(frame: pd.DataFrame, part: str, field: str) -> Counter:
    counts: Counter = Counter()
    for arch in frame["arch"]:
        if is_transformer_arch(arch):
            for layer in arch["layers"]:
                value = (layer.get(part) or {}).get(field)
                if value is not None:
                    counts[str(value)] += 1
    return counts


def _router_counts(frame: pd.DataFrame) -> Counter:
    counts: Counter = Counter()
    for arch in frame["arch"]:
        if is_transformer_arch(arch):
            for layer in arch["layers"]:
                ffn = layer.get("ffn") or {}
                if ffn.get("kind") == "moe":
                    counts[str((ffn.get("router") or {}).get("kind"))] += 1
    return counts


def _option_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 64.0 (an int column with NaN in it) reads as 64
    return str(value)


def _column_counts(column: str) -> Callable[[pd.DataFrame], Counter]:
    return lambda frame: Counter(_option_text(v) for v in frame[column].dropna())


MAX_OPTIONS = 8       # a choice with more options seen gets no bar panel (choice_omissions)


def choice_groups(df: pd.DataFrame, *, every: bool = False) -> list[tuple[str, str, Callable]]:
    """(title, unit, counter) per choice worth a panel (2..8 options seen): per-layer
    kinds of transformer archs, width and depth, then decision params that do not
    merely repeat a column already shown. ``every``: the choices with one option or
    more than ``MAX_OPTIONS`` too (what ``choice_omissions`` names)."""
    groups: list[tuple[str, str, Callable]] = []
    shown: list[pd.Series] = []
    if df["arch"].map(is_transformer_arch).any():
        groups += [("attention kind", "share of layers", lambda f: _layer_counts(f, "attention", "kind")),
                   ("FFN kind", "share of layers", lambda f: _layer_counts(f, "ffn", "kind")),
                   ("router kind (MoE layers)", "share of MoE layers", _router_counts)]
        for column, title in (("arch.d_model", "d_model"), ("arch.layers", "layers")):
            groups.append((title, "share of trials", _column_counts(column)))
            shown.append(df[column].map(_option_text))
    for column in sorted(c for c in df.columns if c.startswith("param.")):
        values = df[column].map(_option_text)
        if any(values.equals(other) for other in shown):
            continue
        shown.append(values)
        groups.append((column.removeprefix("param."), "share of trials", _column_counts(column)))
    return [g for g in groups if every or 1 < len(g[2](df)) <= MAX_OPTIONS]


def choice_omissions(df: pd.DataFrame) -> list[str]:
    """The report's line naming each choice ``plot_choice_frequencies`` has no panel for."""
    if df.empty:
        return []
    shown = {g[0] for g in choice_groups(df)}
    left = [(title, len(counter(df))) for title, _, counter in choice_groups(df, every=True)
            if title not in shown]
    if not left:
        return ["Every choice of the space has a panel.", ""]
    return ["Not drawn: " + ", ".join(f"{t} ({_why_left(n)})"
                                      for t, n in left) + f" (see `param.*` in trials.csv).", ""]


def _why_left(options: int) -> str:
    return ("not in these trials" if options == 0 else "one option seen" if options == 1
            else f"{options} options, too many for bars")


def plot_choice_frequencies(df: pd.DataFrame, path: str | os.PathLike, *,
                            objectives: Sequence[Any] = DEFAULT_OBJECTIVES) -> Path:
    """Per choice, the share of each option among all complete trials vs on the front:
    options the front over-represents are what the trade-off favours."""
    objectives = as_objectives(objectives)
    done = complete(df)
    front = pareto_front(done, objectives)
    groups = choice_groups(done)
    if done.empty or front.empty or not groups:
        raise DynasError("no categorical choices on a non-empty front to plot")
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (title, unit, counter) in zip(axes, groups):
        overall, on_front = counter(done), counter(front)
        options = _sorted_options(overall)
        x = np.arange(len(options))
        share = lambda c: np.array([c[o] for o in options], float) / max(sum(c.values()), 1)
        heights = share(overall), share(on_front)
        ax.bar(x - 0.2, heights[0], 0.4, color=FAINT_COLOR, label=f"all complete ({len(done)})")
        ax.bar(x + 0.2, heights[1], 0.4, color=FRONT_COLOR, label=f"Pareto front ({len(front)})")
        ax.set_xticks(x, [o.replace("_", "\n") for o in options], fontsize=8)
        ax.set_ylim(0, min(1.05, max(0.5, 1.15 * float(max(h.max() for h in heights)))))
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    handles, labels_ = axes[0].get_legend_handles_labels()
    fig.suptitle("Choices on the Pareto front vs all complete trials", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / fig.get_figheight()))
    fig.legend(handles, labels_, loc="upper center", ncol=2, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / fig.get_figheight()))
    return _save(fig, path)


def _sorted_options(counts: Counter) -> list[str]:
    def key(option: str):
        try:
            return (0, float(option), option)
        except ValueError:
            return (1, 0.0, option)
    return sorted(counts, key=key)


# --- single-trial figures ------------------------------------------------------------
def select_trial(df: pd.DataFrame, index: Any = None, *, need: str) -> pd.Series:
    """Row ``index`` (a DataFrame index label), or the first complete trial that has
    a non-empty ``need`` column (e.g. ``expert_load``, ``acc_matrix``)."""
    if index is not None:
        if index not in df.index:
            raise DynasError(f"no trial with index {index}")
        row = df.loc[index]
        if not row[need]:
            raise DynasError(f"trial {row['proposal_id']} of {row['run']} has no {need}")
        return row
    has = complete(df)[complete(df)[need].map(bool)]
    if has.empty:
        raise DynasError(f"no complete trial has {need}")
    return has.iloc[0]


def _trial_title(row: pd.Series) -> str:
    return f"trial {row['proposal_id']} ({row['arch_id']}) of {row['run']}"


def plot_expert_load(df: pd.DataFrame, path: str | os.PathLike, *, index: Any = None) -> Path:
    """Share of routed tokens per expert, one panel per MoE layer, against the
    uniform share 1/E: collapse (a few experts take everything) shows at a glance."""
    row = select_trial(df, index, need="expert_load")
    layers = list(row["expert_load"].items())
    cols = min(4, len(layers))
    rows = -(-len(layers) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.0 * rows + 0.7))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, (name, load) in zip(axes, layers):
        load = np.asarray(load, float)  # (E,)
        share = load / load.sum() if load.sum() > 0 else load
        uniform = 1.0 / len(load)
        ax.bar(np.arange(len(load)), share, color="#1f77b4")
        ax.axhline(uniform, color=FRONT_COLOR, ls="--", lw=1.5)
        ax.set_ylim(0, 1.15 * max(float(share.max()), uniform))
        peak = share.max() / uniform if len(load) else 0.0
        ax.set_title(f"{name}  (max/uniform = {peak:.2f})", fontsize=9)
        ax.set_xlabel("expert", fontsize=8)
        ax.set_ylabel("share of routed tokens", fontsize=8)
        ax.set_xticks(np.arange(len(load)))
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(layers):]:
        ax.set_visible(False)
    fig.suptitle(f"Expert load, {_trial_title(row)}\n"
                 "bars: share of tokens routed to each expert; dashed: uniform share 1/E",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


def plot_accuracy_matrix(df: pd.DataFrame, path: str | os.PathLike, *, index: Any = None) -> Path:
    """R[i][j] = accuracy on experience j after training on experience i, annotated:
    the diagonal is learning, the columns below it show forgetting."""
    row = select_trial(df, index, need="acc_matrix")
    acc = np.asarray(row["acc_matrix"], float)  # (T, T)
    n = acc.shape[0]
    size = max(4.0, 0.8 * n + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    image = ax.imshow(acc, cmap="viridis", vmin=0.0, vmax=1.0)
    for i in range(acc.shape[0]):
        for j in range(acc.shape[1]):
            value = acc[i, j]
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=9 if n <= 8 else 7,
                    color="black" if value > 0.6 else "white")
    ax.set_xticks(np.arange(acc.shape[1]))
    ax.set_yticks(np.arange(n))
    ax.set_xlabel("evaluated on experience j")
    ax.set_ylabel("after training on experience i")
    fig.colorbar(image, ax=ax, label="accuracy", fraction=0.046, pad=0.04)
    ax.set_title(f"Accuracy matrix R\n{_trial_title(row)}", fontsize=10)
    return _save(fig, path)
