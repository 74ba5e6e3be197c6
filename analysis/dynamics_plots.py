"""What the dynamic blocks of a trial did, experience by experience: its learned spans
per layer and head, its realised-k histogram per MoE layer, and its expert load per
MoE layer with dead experts flagged.

All come from the trial's ``dynamics`` (``trainers.dynamics``: one entry per
experience, measured on the validation pass after it). The report draws them for every
trial on the front that has dynamic blocks (``dynamics_section``); a trial without any
gets no figure, never an empty one (nor does a record written before the entry's
``expert_load`` existed get a load figure).

A **dead expert** is one whose share of its layer's routed slots on that validation
pass is below ``DEAD_SHARE`` (1%): it is (nearly) never chosen, so its parameters
cost memory and buy nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .plots import _save, _trial_title

DEAD_SHARE = 0.01     # an expert with less than 1% of its layer's routed slots is dead


def _layers(dynamics: Sequence[dict], key: str) -> list[str]:
    """Layer names (``layers.<i>.attn``/``.ffn``) any experience measured under ``key``."""
    return sorted({name for entry in dynamics for name in (entry.get(key) or {})},
                  key=lambda n: int(n.split(".")[1]))


def _panels(row: pd.Series, key: str, width: float):
    """(dynamics, layers, figure, axes) with one panel per layer measured under ``key``,
    or None when the trial measured none."""
    dynamics = row["dynamics"] or []
    layers = _layers(dynamics, key)
    if not layers:
        return None
    cols = min(3, len(layers))
    rows = -(-len(layers) // cols)
    fig = Figure(figsize=(width * cols, 3.0 * rows + 0.8))
    return dynamics, layers, fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()


def _finish(fig: Figure, axes, used: int, title: str, path: str | os.PathLike) -> Path:
    for ax in axes[used:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _save(fig, path)


def plot_spans(row: pd.Series, path: str | os.PathLike) -> Path | None:
    """Learned span of each head after each experience, one panel per dynamic-span
    layer, with the evaluated crop (longest span + ramp, in blocks) dashed."""
    panels = _panels(row, "spans", 3.8)
    if panels is None:
        return None
    dynamics, layers, fig, axes = panels
    for ax, name in zip(axes, layers):
        seen = [(e["experience"], e["spans"][name]) for e in dynamics if name in (e.get("spans") or {})]
        x = [exp for exp, _ in seen]
        heads = np.asarray([s["heads"] for _, s in seen], float)       # (experiences, H)
        for h in range(heads.shape[1]):
            ax.plot(x, heads[:, h], marker="o", label=f"head {h}")
        ax.plot(x, [s["crop"] for _, s in seen], ls="--", color="grey", label="crop")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("after experience", fontsize=8)
        ax.set_ylabel("span (tokens)", fontsize=8)
        ax.set_xticks(x)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, axes, len(layers), f"Learned spans, {_trial_title(row)}", path)


def plot_realised_k(row: pd.Series, path: str | os.PathLike) -> Path | None:
    """Share of tokens given k = 0..K experts, per MoE layer, one bar group per
    experience (after it), with the mean k in each legend entry."""
    panels = _panels(row, "k", 4.2)
    if panels is None:
        return None
    dynamics, layers, fig, axes = panels
    for ax, name in zip(axes, layers):
        seen = [(e["experience"], e["k"][name]) for e in dynamics if name in (e.get("k") or {})]
        width = 0.8 / len(seen)
        for i, (exp, k) in enumerate(seen):
            hist = np.asarray(k["hist"], float)
            share = hist / hist.sum() if hist.sum() else hist
            ax.bar(np.arange(len(hist)) + i * width, share, width,
                   label=f"exp {exp} (mean {k['mean']:.2f})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("experts per token (k)", fontsize=8)
        ax.set_ylabel("share of tokens", fontsize=8)
        ax.set_xticks(np.arange(len(seen[0][1]["hist"])) + 0.4 - width / 2)
        ax.set_xticklabels(range(len(seen[0][1]["hist"])))
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    return _finish(fig, axes, len(layers), f"Realised k per MoE layer, {_trial_title(row)}", path)


def load_table(dynamics: Sequence[dict], layer: str) -> tuple[list[int], np.ndarray]:
    """(experiences, (experiences, E) share of routed slots per expert) of one MoE
    layer, from the entries that measured it."""
    seen = [(e["experience"], e["expert_load"][layer]) for e in dynamics
            if layer in (e.get("expert_load") or {})]
    return [exp for exp, _ in seen], np.asarray([load for _, load in seen], float)


def _names(experts: Sequence[int]) -> str:
    return ", ".join(map(str, experts)) or "none"


def dead_experts(table: np.ndarray, threshold: float = DEAD_SHARE) -> np.ndarray:
    """Boolean table of the same shape: True where an expert's share is below
    ``threshold`` (dead on that experience's validation pass)."""
    return np.asarray(table, float) < threshold


def dead_at_end(dynamics: Sequence[dict]) -> dict[str, list[int]]:
    """MoE layer -> the experts dead after the last experience that measured it."""
    out = {}
    for layer in _layers(dynamics, "expert_load"):
        _, table = load_table(dynamics, layer)
        out[layer] = [int(j) for j in np.flatnonzero(dead_experts(table)[-1])]
    return out


def plot_expert_load_history(row: pd.Series, path: str | os.PathLike) -> Path | None:
    """Share of routed slots per expert after each experience, one heat map per MoE
    layer (rows: experiences, columns: experts), dead experts (``DEAD_SHARE``) boxed
    in red and named in the panel title."""
    panels = _panels(row, "expert_load", 4.2)
    if panels is None:
        return None
    dynamics, layers, fig, axes = panels
    for ax, name in zip(axes, layers):
        exps, table = load_table(dynamics, name)
        dead = dead_experts(table)
        top = max(float(table.max()), 1e-9)
        ax.imshow(table, cmap="Blues", vmin=0.0, vmax=top, aspect="auto")
        for (i, j), share in np.ndenumerate(table):
            ax.text(j, i, f"{100 * share:.2g}", ha="center", va="center", fontsize=7,
                    color="red" if dead[i, j] else "white" if share > top / 2 else "black")
            if dead[i, j]:
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=1.5))
        ax.set_title(f"{name}: dead after exp {exps[-1]}: {_names(dead_at_end(dynamics)[name])}", fontsize=8)
        ax.set_xlabel(f"expert (% of routed slots; red: < {100 * DEAD_SHARE:g}%)", fontsize=7)
        ax.set_ylabel("after experience", fontsize=8)
        ax.set_xticks(np.arange(table.shape[1]))
        ax.set_yticks(np.arange(len(exps)))
        ax.set_yticklabels(exps)
    return _finish(fig, axes, len(layers), f"Expert load per MoE layer, {_trial_title(row)}", path)


def dynamics_figures(df: pd.DataFrame, trials: pd.DataFrame, out: Path) -> dict[str, Path]:
    """``"<kind>_<proposal_id>"`` -> figure, for every trial in ``trials`` (the front)
    whose dynamic blocks measured anything."""
    figures: dict[str, Path] = {}
    if "dynamics" not in df.columns:
        return figures
    for index in trials.index:
        row: Any = df.loc[index]
        if not row["dynamics"]:
            continue
        tag = str(row["proposal_id"])
        for kind, plot in (("spans", plot_spans), ("realised_k", plot_realised_k),
                           ("expert_load", plot_expert_load_history)):
            path = plot(row, out / f"{kind}_{tag}.png")
            if path is not None:
                figures[f"{kind}_{tag}"] = path
    return figures


def dynamics_section(df: pd.DataFrame, trials: pd.DataFrame, out: Path) -> list[str]:
    """The report's section: each front trial's span, realised-k and expert-load figures."""
    figures = dynamics_figures(df, trials, out)
    if not figures:
        return []
    lines = ["## Dynamic blocks on the front", "",
             "Learned spans per layer and head, the realised-k histogram per MoE layer, and "
             "the expert load per MoE layer (dead experts, under "
             f"{100 * DEAD_SHARE:g}% of the layer's routed slots, boxed in red), "
             "after each experience (validation pass).", ""]
    lines += [f"![{key}]({path.name})\n" for key, path in figures.items()]
    for index in trials.index:
        row: Any = df.loc[index]
        dead = dead_at_end(row["dynamics"] or [])
        lines += [f"Trial {row['proposal_id']}, {layer}: dead experts at the end: {_names(experts)}\n"
                  for layer, experts in dead.items()]
    return lines
