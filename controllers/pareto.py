"""Pareto dominance and exact hypervolume: the one implementation, one sign rule.

Every function here except ``to_minimise`` works in the *minimisation frame*: smaller
is better in every coordinate. ``to_minimise`` takes values in each objective's own
sense (accuracy up, FLOPs down, as policies are told them and records store them)
and negates the maximised columns. PPO's hypervolume reward, the search-quality
benchmark and ``analysis.pareto`` (DataFrames, reference points, picks) all build on
these functions, so a front has the same hypervolume wherever it is measured.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from dynas.search_space.settings import Objective


def to_minimise(values: Sequence[float] | Sequence[Sequence[float]] | np.ndarray,
                objectives: Sequence[Objective]) -> np.ndarray:
    """(N, M) points (or one point of M values) -> (N, M) in the minimisation frame."""
    signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    pts = np.asarray(values, dtype=float)
    if pts.size and pts.shape[-1] != len(objectives):
        raise ValueError(f"{pts.shape[-1]} values for {len(objectives)} objectives")
    return pts.reshape(-1, len(objectives)) * signs


def normalised(pts: np.ndarray) -> np.ndarray:
    """(N, M) minimisation-frame points scaled to [0, 1] per objective (ideal at 0)."""
    lo, hi = pts.min(0), pts.max(0)
    return (pts - lo) / np.where(hi > lo, hi - lo, 1.0)


def knee_of(pts: np.ndarray) -> int:
    """Row of the knee of a front of (N >= 1, M) minimisation-frame points.

    Objectives are normalised to [0, 1] over the front. 2-D: the point farthest from
    the line through the two extremes, on the side of the ideal point (a bulge toward
    "better in both"); when no point bulges (a straight or concave front, or N <= 2)
    and for M > 2: the point closest to the ideal point. (``analysis.pareto.knee_index``
    for a report's front; ``run.confirm`` to confirm the knee first.)
    """
    z = normalised(pts)  # (N, M) in [0, 1], ideal at the origin
    if z.shape[1] == 2 and len(z) > 2:
        a, b = z[np.argmin(z[:, 0])], z[np.argmin(z[:, 1])]
        d = b - a
        norm = float(np.hypot(*d))
        if norm > 0:
            # signed distance; positive on the side of the origin (the ideal point)
            signed = (d[0] * (z[:, 1] - a[1]) - d[1] * (z[:, 0] - a[0])) / norm
            toward_ideal = signed * np.sign(d[0] * (0 - a[1]) - d[1] * (0 - a[0]) or 1.0)
            if toward_ideal.max() > 1e-12:
                return int(np.argmax(toward_ideal))
    return int(np.argmin(np.linalg.norm(z, axis=1)))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` is no worse than ``b`` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def dominance_matrix(pts: np.ndarray) -> np.ndarray:
    """(N, N) bool: ``[i, j]`` when point i dominates point j."""
    pts = np.asarray(pts, dtype=float)
    le = (pts[:, None, :] <= pts[None, :, :]).all(-1)
    lt = (pts[:, None, :] < pts[None, :, :]).any(-1)
    return le & lt


def non_dominated(pts: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices of the points no other point dominates (equal points all kept)."""
    pts = np.asarray(pts, dtype=float)
    if len(pts) == 0:
        return []
    return np.flatnonzero(dominance_matrix(pts).sum(0) == 0).tolist()


def non_dominated_sort(pts: np.ndarray) -> np.ndarray:
    """Front rank of each row (0 = non-dominated), Deb et al.'s fast sort, O(M N^2).

    Equal points do not dominate each other, so duplicates share a rank.
    """
    pts = np.asarray(pts, dtype=float)
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=int)
    dom = dominance_matrix(pts)          # (N, N)
    counts = dom.sum(0)                   # how many dominate j
    ranks = np.full(n, -1, dtype=int)
    current = np.flatnonzero(counts == 0)
    rank = 0
    while current.size:
        ranks[current] = rank
        counts = counts - dom[current].sum(0)
        counts[ranks >= 0] = -1           # already ranked: never picked again
        current = np.flatnonzero(counts == 0)
        rank += 1
    return ranks


def hypervolume(pts: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float]) -> float:
    """Exact volume dominated by ``pts`` (N, M) and bounded by ``ref`` (both minimised).

    Points that are not strictly better than ``ref`` in every coordinate (or are not
    finite) add nothing. 2-D: one sweep, O(N log N). M > 2: slicing on the last
    coordinate (HSO), each slab an (M-1)-D hypervolume; exact, fine for a few hundred.
    """
    r = np.asarray(ref, dtype=float).reshape(-1)
    pts = np.asarray(pts, dtype=float).reshape(-1, len(r))
    pts = pts[np.isfinite(pts).all(1) & (pts < r).all(1)]
    if pts.shape[1] > 2 and len(pts) > 1:   # dominated points add nothing; slicing is O(N^M)
        pts = np.unique(pts[dominance_matrix(pts).sum(0) == 0], axis=0)
    return _hv(pts, r)


def hypervolume_improvement(front: Sequence[Sequence[float]] | np.ndarray, point: Sequence[float],
                            ref: Sequence[float]) -> float:
    """How much volume ``point`` adds to what ``front`` already dominates."""
    front = np.asarray(front, dtype=float).reshape(-1, len(ref))
    grown = np.vstack([front, np.asarray(point, dtype=float).reshape(1, -1)])
    return max(0.0, hypervolume(grown, ref) - hypervolume(front, ref))


def _hv(pts: np.ndarray, r: np.ndarray) -> float:
    if len(pts) == 0:
        return 0.0
    m = pts.shape[1]
    if m == 1:
        return float(r[0] - pts[:, 0].min())
    if m == 2:
        return _hv2(pts, r)
    pts = pts[np.argsort(pts[:, -1], kind="stable")]
    zs = np.append(pts[:, -1], r[-1])
    volume = 0.0
    for i in range(len(pts)):
        depth = zs[i + 1] - zs[i]
        if depth > 0:  # slab [z_i, z_{i+1}) is dominated by the points with z <= z_i
            volume += depth * _hv(pts[: i + 1, :-1], r[:-1])
    return float(volume)


def _hv2(pts: np.ndarray, r: np.ndarray) -> float:
    """2-D sweep: sort by x; each point adds the strip up to the best y seen so far."""
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    area, best_y = 0.0, r[1]
    for x, y in pts:
        if y < best_y:
            area += (r[0] - x) * (best_y - y)
            best_y = y
    return float(area)
