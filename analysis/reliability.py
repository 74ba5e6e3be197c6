"""How many seeds a ranking needs, and whether two budgets rank the same thing.

A calibration's cells (architectures x seeds, one budget) follow the one-way random
effects model of classical test theory: value = architecture effect + seed noise. Its
two variance components answer what a noise ceiling alone cannot:

- ``reliability(k)``: the correlation between two independent rankings, each by the
  mean of ``k`` seeds (Spearman-Brown from one seed's reliability
  ``var_arch / (var_arch + var_seed)``);
- ``seeds_needed(target_tau)``: the ``k`` at which those two rankings agree at Kendall
  tau ``target_tau``, read through Greiner's relation ``tau = 2/pi * arcsin(r)`` (exact
  for normal effects), so the answer to "rank better" is priced in trainings;
- ``disattenuated``: the Pearson correlation of the architectures' means at two budgets
  divided by the square root of both means' reliabilities (Spearman's correction for
  attenuation): near 1, the budgets rank the same architectures and only noise hides
  it (more seeds help); well below 1, the ranking itself changes with the budget (more
  seeds do not help: search at the budget that will be deployed).

The estimates are moment estimators on complete rows (every seed measured); with few
architectures they are rough, so the report gives bootstrap intervals over
architectures beside them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Components:
    """Variance components of one budget's archs x seeds cells (complete rows only)."""

    n: int                  # architectures with every seed measured
    seeds: int              # seeds per architecture
    var_seed: float         # pooled within-architecture variance (one seed's noise)
    var_arch: float         # variance of the architectures' true effects (>= 0)

    def reliability(self, k: int | float = 1) -> float:
        """Correlation between two independent rankings by the mean of ``k`` seeds."""
        total = self.var_arch + self.var_seed / k
        return self.var_arch / total if total > 0 else float("nan")

    def seeds_needed(self, target_tau: float) -> float:
        """Seeds per architecture at which two independent repeats agree at Kendall
        ``target_tau`` (inf: the architectures do not differ at all; NaN: unknown)."""
        one = self.reliability(1)
        if not math.isfinite(one):
            return float("nan")
        want = math.sin(math.pi * target_tau / 2)
        if one >= want:
            return 1.0
        if one <= 0:
            return float("inf")
        return want * (1 - one) / (one * (1 - want))


def components(values: np.ndarray) -> Components:
    """The one-way random-effects estimate from an archs x seeds array (NaN: missing)."""
    values = np.asarray(values, float)
    full = values[np.isfinite(values).all(axis=1)] if values.ndim == 2 else np.empty((0, 0))
    n, s = full.shape if full.size else (0, values.shape[1] if values.ndim == 2 else 0)
    if n < 2 or s < 2:
        return Components(n, s, float("nan"), float("nan"))
    var_seed = float(np.mean(np.var(full, axis=1, ddof=1)))
    var_means = float(np.var(full.mean(axis=1), ddof=1))
    return Components(n, s, var_seed, max(0.0, var_means - var_seed / s))


def expected_tau(reliability: float) -> float:
    """Kendall tau between two rankings whose values correlate at ``reliability``."""
    return 2 / math.pi * math.asin(max(-1.0, min(1.0, reliability))) if math.isfinite(reliability) \
        else float("nan")


def disattenuated(low: np.ndarray, high: np.ndarray) -> float:
    """The correlation of two budgets' architecture effects corrected for seed noise:
    Pearson of the means over seeds divided by sqrt(reliability x reliability) of those
    means, from the rows complete at both budgets. NaN when either has no spread."""
    low, high = np.asarray(low, float), np.asarray(high, float)
    rows = np.isfinite(low).all(axis=1) & np.isfinite(high).all(axis=1)
    if rows.sum() < 3:
        return float("nan")
    a, b = low[rows], high[rows]
    ca, cb = components(a), components(b)
    ra, rb = ca.reliability(a.shape[1]), cb.reliability(b.shape[1])
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    if not (ra > 0 and rb > 0) or np.ptp(ma) == 0 or np.ptp(mb) == 0:
        return float("nan")
    return float(np.corrcoef(ma, mb)[0, 1] / math.sqrt(ra * rb))
