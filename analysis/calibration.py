"""What a calibration run measured (``dynas calibrate``, ``controllers.run.calibrate``).

Two questions about the ranking a search optimises, answered on architectures drawn
uniformly from the space, each trained at several budgets with several seeds:

- **noise ceiling**: Kendall tau between the rankings two training seeds give at one
  budget (mean over seed pairs). No search can rank better than its own seeds agree.
  Beside it the seed-to-seed std (pooled over architectures) against the spread of the
  architectures' means: a search separates only what differs by more than the seeds.
- **transfer**: Kendall tau between the rankings (mean over seeds) at two budgets. The
  recommendation is the smallest budget whose ranking transfers to the largest at tau
  >= ``TRANSFER_TARGET``: searching there ranks what holds after longer training.
- **why** (``analysis.reliability``): the seeds per architecture a ranking would need for
  its repeats to agree at tau ``NOISE_TARGET``, and the transfer corrected for seed
  noise, which tells a ranking hidden by noise (more seeds help) from a ranking that
  changes with the budget (they do not).

Intervals are percentile bootstraps over architectures (``BOOTSTRAP`` resamples, fixed
seed). Only validation values of the search's first objective are used (the plain
metric names of a record; ``test.*`` never is). Architectures missing a value a
statistic needs are left out of that statistic, so a calibration cut short still
reports what it has, with its ``n``.
"""
from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dynas.controllers.records import iter_records, read_run

from .reliability import components, disattenuated

CALIBRATION_FILE = "calibration.json"          # controllers.run.calibrate.CALIBRATION_FILE
TRANSFER_TARGET = 0.6
NOISE_TARGET = 0.7
CHANGED_BELOW = 0.5        # corrected r below this: the ranking changes with the budget
BOOTSTRAP = 1000
FIGURE = "calibration.png"


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties counted as scipy does); NaN with fewer than 3 pairs."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(kendalltau(x, y).statistic)


def bootstrap_interval(statistic, n: int, *, resamples: int = BOOTSTRAP, seed: int = 0,
                       level: float = 0.95, defined: float = 0.0) -> tuple[float, float]:
    """Percentile interval of ``statistic(indices)`` over architectures resampled with
    replacement (``n`` of them); NaN when fewer than a ``defined`` share of the
    resamples give a finite value (an interval over the rest would be biased)."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    values = values[np.isfinite(values)]
    if not len(values) or len(values) < defined * resamples:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


@dataclass
class Calibration:
    """The values of one calibration run: ``values[budget]`` is an archs x seeds array
    (NaN: not measured or failed), budgets as multiples of ``steps_per_experience``."""

    run_dir: Path
    metric: str
    budgets: list[int]
    seeds: list[int]
    steps_per_experience: int
    arch_ids: list[str]
    values: dict[int, np.ndarray] = field(default_factory=dict)

    def means(self, budget: int) -> np.ndarray:
        """Per-architecture mean over the seeds measured (NaN: none)."""
        v = self.values[budget]
        counts = np.isfinite(v).sum(axis=1)
        with np.errstate(invalid="ignore"):
            return np.where(counts > 0, np.nansum(v, axis=1) / np.maximum(counts, 1), np.nan)

    def noise(self, budget: int) -> dict[str, float]:
        """Noise ceiling (mean pairwise seed tau) with its interval; seed std; arch spread."""
        v = self.values[budget]
        full = v[np.isfinite(v).all(axis=1)]
        out = {"n": len(full), "mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")}
        out["seed_std"] = float(np.sqrt(np.mean(np.var(full, axis=1, ddof=1)))) \
            if len(full) and v.shape[1] > 1 else float("nan")
        means = self.means(budget)
        means = means[np.isfinite(means)]
        out["arch_std"] = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
        pairs = list(itertools.combinations(range(v.shape[1]), 2))

        def ceiling(rows: np.ndarray) -> float:
            taus = [kendall_tau(full[rows, a], full[rows, b]) for a, b in pairs]
            return float(np.nanmean(taus)) if taus and np.isfinite(taus).any() else float("nan")

        out["seeds_needed"] = components(v).seeds_needed(NOISE_TARGET)
        out["tau"] = ceiling(np.arange(len(full))) if pairs else float("nan")
        out["lo"], out["hi"] = bootstrap_interval(ceiling, len(full)) if pairs and len(full) >= 3 \
            else (float("nan"), float("nan"))
        return out

    def transfer(self, low: int, high: int) -> dict[str, float]:
        """Tau between the rankings (means over seeds) at budgets ``low`` and ``high``."""
        a, b = self.means(low), self.means(high)
        both = np.isfinite(a) & np.isfinite(b)
        a, b = a[both], b[both]
        tau = lambda rows: kendall_tau(a[rows], b[rows])
        lo, hi = bootstrap_interval(tau, len(a)) if len(a) >= 3 else (float("nan"), float("nan"))
        out = {"n": int(both.sum()), "tau": tau(np.arange(len(a))), "lo": lo, "hi": hi}
        cells = self.values[low], self.values[high]
        corrected = lambda rows: disattenuated(cells[0][rows], cells[1][rows])
        out["corrected"] = corrected(np.arange(len(cells[0])))
        out["corrected_lo"], out["corrected_hi"] = bootstrap_interval(corrected, len(cells[0]), defined=0.9) \
            if np.isfinite(out["corrected"]) else (float("nan"), float("nan"))
        return out

    def recommendation(self) -> int | None:
        """The smallest budget whose ranking transfers to the largest at tau >= target."""
        top = self.budgets[-1]
        for budget in self.budgets[:-1]:
            t = self.transfer(budget, top)["tau"]
            if np.isfinite(t) and t >= TRANSFER_TARGET:
                return budget
        return None


def is_calibration(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CALIBRATION_FILE).is_file() and read_run(run_dir).get("kind") == "calibrate"


def load_calibration(run_dir: str | Path) -> Calibration:
    """The run's plan and every record's validation value in its (arch, budget, seed) cell."""
    run_dir = Path(run_dir)
    plan = json.loads((run_dir / CALIBRATION_FILE).read_text(encoding="utf-8"))
    from dynas.search_space.arch import ArchConfig

    arch_ids = [ArchConfig.from_dict(a["arch"]).arch_id for a in plan["archs"]]
    row = {aid: i for i, aid in enumerate(arch_ids)}
    steps = int(plan["steps_per_experience"])
    budgets, seeds = [int(b) for b in plan["budgets"]], [int(s) for s in plan["seeds"]]
    cal = Calibration(run_dir, plan.get("metric", "final_avg_accuracy"), budgets, seeds, steps, arch_ids,
                      {b: np.full((len(arch_ids), len(seeds)), np.nan) for b in budgets})
    column = {s: j for j, s in enumerate(seeds)}
    for record in iter_records(run_dir):
        budget = (record.budget or 0) // steps
        if record.state != "complete" or budget not in cal.values or record.arch_id not in row \
                or record.train_seed not in column or record.budget != budget * steps:
            continue
        value = record.metrics.get(cal.metric)        # validation: never a test.* name
        if value is not None:
            cal.values[budget][row[record.arch_id], column[record.train_seed]] = float(value)
    return cal


def plot_calibration(cal: Calibration, path: Path) -> Path | None:
    """Accuracy at budget b against budget 4b (else the next budget), one point per
    architecture, error bars the std over seeds."""
    from matplotlib.figure import Figure

    pairs = [(b, 4 * b) for b in cal.budgets if 4 * b in cal.values] or list(zip(cal.budgets, cal.budgets[1:]))
    if not pairs:
        return None
    fig = Figure(figsize=(4.2 * len(pairs), 4))
    for k, (low, high) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), k + 1)
        x, y = cal.means(low), cal.means(high)
        with warnings.catch_warnings():          # an architecture with one seed: no std
            warnings.simplefilter("ignore", RuntimeWarning)
            xe, ye = (np.nanstd(cal.values[b], axis=1, ddof=1) if cal.values[b].shape[1] > 1
                      else np.zeros(len(x)) for b in (low, high))
        ok = np.isfinite(x) & np.isfinite(y)
        ax.errorbar(x[ok], y[ok], xerr=np.nan_to_num(xe[ok]), yerr=np.nan_to_num(ye[ok]), fmt="o", ms=4,
                    capsize=2, alpha=0.8)
        if ok.any():
            lims = [min(x[ok].min(), y[ok].min()), max(x[ok].max(), y[ok].max())]
            ax.plot(lims, lims, color="grey", lw=0.8, ls="--")
        t = cal.transfer(low, high)
        ax.set_title(f"x{low} -> x{high}: tau {t['tau']:.2f} (n={t['n']})", fontsize=10)
        ax.set_xlabel(f"{cal.metric} at x{low} ({low * cal.steps_per_experience} steps/exp)")
        ax.set_ylabel(f"{cal.metric} at x{high} ({high * cal.steps_per_experience} steps/exp)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def calibration_section(run_dir: str | Path, out: Path) -> list[str]:
    """The report's calibration section (Markdown lines); its figure goes to ``out``."""
    cal = load_calibration(run_dir)
    f = lambda v: "-" if not np.isfinite(v) else f"{v:.3f}"
    ci = lambda d: "-" if not np.isfinite(d["lo"]) else f"[{d['lo']:.2f}, {d['hi']:.2f}]"
    corrected = lambda r: f(r) if not np.isfinite(r) or abs(r) <= 1 else \
        f"{r:.2f} (beyond 1: the noise estimate is too rough)"
    seeds = lambda k: "-" if np.isnan(k) else "never (no spread)" if np.isinf(k) else f"{int(np.ceil(k))}"
    lines = ["## Calibration", "",
             f"{len(cal.arch_ids)} architectures drawn uniformly, training seeds {cal.seeds}, budgets "
             f"{', '.join(f'x{b}' for b in cal.budgets)} of {cal.steps_per_experience} steps per experience; "
             f"`{cal.metric}` on the validation splits (never the test splits). Intervals: 95% bootstrap "
             f"over architectures ({BOOTSTRAP} resamples).", "",
             "| budget | steps/exp | archs (all seeds) | mean | seed std | std across archs | "
             f"noise ceiling tau | 95% interval | seeds for tau {NOISE_TARGET} |", "|---|---|---|---|---|---|---|---|---|"]
    for b in cal.budgets:
        n = cal.noise(b)
        lines.append(f"| x{b} | {b * cal.steps_per_experience} | {n['n']} | {f(n['mean'])} | {f(n['seed_std'])} "
                     f"| {f(n['arch_std'])} | {f(n['tau'])} | {ci(n)} | {seeds(n['seeds_needed'])} |")
    lines += ["", "Transfer (Kendall tau between the rankings by mean over seeds; r corrected: the "
              "correlation of the architectures' effects once seed noise is divided out):", "",
              "| from | to | archs | tau | 95% interval | r corrected | 95% interval |",
              "|---|---|---|---|---|---|---|"]
    for low, high in itertools.combinations(cal.budgets, 2):
        t = cal.transfer(low, high)
        lines.append(f"| x{low} | x{high} | {t['n']} | {f(t['tau'])} | {ci(t)} | {corrected(t['corrected'])} "
                     f"| {ci({'lo': t['corrected_lo'], 'hi': t['corrected_hi']})} |")
    best = cal.recommendation() if len(cal.budgets) > 1 else None
    lines += ["", f"**Recommendation**: search at x{best} ({best * cal.steps_per_experience} steps per "
              f"experience): its ranking transfers to x{cal.budgets[-1]} at tau >= {TRANSFER_TARGET}."
              if best is not None else
              f"**Recommendation**: no budget below x{cal.budgets[-1]} transfers to it at tau >= "
              f"{TRANSFER_TARGET}; a search at these budgets ranks noise or what does not hold: train "
              "longer, or reduce the noise (more seeds, larger validation splits)."
              if len(cal.budgets) > 1 else "One budget: no transfer to measure.", ""]
    if best is None and len(cal.budgets) > 1:
        lines += [_diagnosis(cal), ""]
    lines += [f"Seeds for tau {NOISE_TARGET}: how many seeds each architecture would need for two "
              "independent repeats of the ranking (each by its mean over those seeds) to agree at that tau, "
              "from the seed and architecture variance components (`analysis/reliability.py`).", ""]
    figure = plot_calibration(cal, out / FIGURE)
    if figure is not None:
        lines += [f"![calibration]({figure.name})", ""]
    return lines


def _diagnosis(cal: Calibration) -> str:
    """Why the cheapest budget does not transfer: noise (more seeds would show the same
    ranking) or a ranking that changes with the budget (searching longer is the cure)."""
    low, top = cal.budgets[0], cal.budgets[-1]
    t = cal.transfer(low, top)
    r = t["corrected"]
    sure = (f" (95% interval [{t['corrected_lo']:.2f}, {t['corrected_hi']:.2f}])" if np.isfinite(t["corrected_lo"])
            else " (no interval: in over a tenth of the bootstrap resamples one budget shows no spread "
                 "beyond its seeds, so read it as a direction only)")
    need = cal.noise(low)["seeds_needed"]
    if not np.isfinite(r):
        return (f"Why: at x{low} or x{top} the architectures do not differ beyond their seeds, so there is no "
                "ranking to transfer; only more seeds (see the table) or a space whose architectures differ "
                "more would make one.")
    if r < CHANGED_BELOW:
        return (f"Why: corrected for seed noise, the architectures' effects at x{low} and x{top} correlate at "
                f"r {r:.2f}{sure}: the ranking itself changes with the budget, so more seeds at x{low} would not help; "
                f"search at the budget that will be deployed (or rank there with `search.fidelity`).")
    return (f"Why: corrected for seed noise, the effects at x{low} and x{top} correlate at r {r:.2f}{sure}: the "
            f"ranking holds but seed noise hides it; about {int(np.ceil(need))} seeds per architecture at "
            f"x{low} would rank at tau {NOISE_TARGET}.")


def write_calibration_report(run_dir: str | Path, out: Path) -> Path:
    """``report.md`` of a calibration run: its one section."""
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# dynas calibration: {Path(run_dir).name}", ""] + calibration_section(run_dir, out)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
