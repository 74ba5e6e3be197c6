"""What the dynamic blocks of a trial did, experience by experience: its learned spans
per layer and head, and its realised-k histogram per MoE layer.

Both come from the trial's ``dynamics`` (``trainers.dynamics``: one entry per
experience, measured on the validation pass after it). The report draws them for every
trial on the front that has dynamic blocks (``dynamics_section``); a trial without any
gets no figure, never an empty one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plots import _save, _trial_title


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
        for kind, plot in (("spans", plot_spans), ("realised_k", plot_realised_k)):
            path = plot(row, out / f"{kind}_{tag}.png")
            if path is not None:
                figures[f"{kind}_{tag}"] = path
    return figures


def dynamics_section(df: pd.DataFrame, trials: pd.DataFrame, out: Path) -> list[str]:
    """The report's section: each front trial's span and realised-k figures."""
    figures = dynamics_figures(df, trials, out)
    if not figures:
        return []
    lines = ["## Dynamic blocks on the front", "",
             "Learned spans per layer and head, and the realised-k histogram per MoE layer, "
             "after each experience (validation pass).", ""]
    return lines + [f"![{key}]({path.name})\n" for key, path in figures.items()]
