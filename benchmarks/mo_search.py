"""Multi-objective search quality across benchmarks: every NAS-Bench-Graph dataset and a
synthetic two-objective function with a known front.

    nice -n 19 python -m benchmarks.mo_search [--problems synthetic cora ...] [--seeds 30]
        [--policies random nsga2 tpe ppo ...] [--out FILE.json] [--merge FILE.json ...]

Every run takes the path ``dynas search`` takes in process (``make_policy`` from
``SearchSettings(trials=N)``, the ``SearchDriver`` via ``controllers.local.run_local``).
N counts distinct candidates trained (failed look-ups included: on ``proteins`` the
table holds 2,021 of the 26,206 architectures). Score: hypervolume share = HV of the
found front / HV of the true front (the whole table or grid enumerated), both
normalised by the true front's ideal and nadir, reference point 1.1 in each coordinate.
``p`` is a one-sided Mann-Whitney U test of "beats random" over seeds at N = 200.

- NAS-Bench-Graph ``<dataset>``: validation accuracy up, latency down.
- ``synthetic``: a ZDT1-shaped function (Zitzler, Deb and Thiele 2000) on a grid of six
  decisions with eight options each (262,144 points): ``f1 = x0 / 7`` and
  ``f2 = g (1 - sqrt(f1 / g))``, ``g = 1 + 9 mean_i |x_i - t_i| / 7`` over the other five
  decisions with fixed targets ``t``; the true front is the eight points ``x_i = t_i``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tabular_search import mann_whitney_greater  # noqa: E402
from dynas.controllers.run.in_process import run_local  # noqa: E402
from dynas.controllers.pareto import hypervolume, non_dominated, to_minimise  # noqa: E402
from dynas.controllers.policies import PPOSettings, make_policy  # noqa: E402
from dynas.controllers.policies.optuna_policies import population_for, startup_trials_for  # noqa: E402
from dynas.search_space.plain import parse_decision_space  # noqa: E402
from dynas.search_space.settings import Objective, SearchSettings  # noqa: E402
from dynas.trainers.tabular import nasbench_graph as nbg  # noqa: E402

CHECKPOINTS = (50, 100, 200)
TOP = CHECKPOINTS[-1]
VARIANTS = {   # label -> (strategy, ppo settings or None for the defaults)
    "random": ("random", None),
    "nsga2": ("nsga2", None),
    "tpe": ("tpe", None),
    "ppo": ("ppo", None),
    "ppo-scalar": ("ppo", PPOSettings(reward="scalar")),
    "ppo-hv": ("ppo", PPOSettings(reward="hypervolume")),
    "ppo-rank": ("ppo", PPOSettings(reward="rank")),
    "ppo-cheb": ("ppo", PPOSettings(reward="chebyshev")),
}

# --- the synthetic problem ----------------------------------------------------------------
SYN_OPTIONS, SYN_TARGETS = 8, (3, 5, 1, 6, 2)
SYN_NAMES = ("x0",) + tuple(f"x{i + 1}" for i in range(len(SYN_TARGETS)))
SYN_OBJECTIVES = (Objective("f1", "min"), Objective("f2", "min"))


def zdt(x: np.ndarray) -> np.ndarray:
    """(N, 6) option indices -> (N, 2) objectives, both minimised."""
    top = SYN_OPTIONS - 1
    f1 = x[:, 0] / top
    g = 1 + 9 * np.abs(x[:, 1:] - np.array(SYN_TARGETS)).mean(axis=1) / top
    return np.stack([f1, g * (1 - np.sqrt(f1 / g))], axis=1)


class Synthetic:
    """``evaluate(candidate) -> (state, metrics, extra)`` of the ZDT1-shaped function."""

    space = parse_decision_space({"decisions": {n: {"low": 0, "high": SYN_OPTIONS - 1} for n in SYN_NAMES}})
    objectives = SYN_OBJECTIVES

    def __call__(self, candidate):
        params = candidate.to_dict()
        f = zdt(np.array([[params[n] for n in SYN_NAMES]], dtype=float))[0]
        return "complete", {"f1": float(f[0]), "f2": float(f[1])}, {}

    @staticmethod
    def all_points() -> np.ndarray:
        grid = np.stack(np.meshgrid(*[np.arange(SYN_OPTIONS)] * len(SYN_NAMES), indexing="ij"), -1)
        return zdt(grid.reshape(-1, len(SYN_NAMES)).astype(float))                 # (8^6, 2)


class Graph:
    """A NAS-Bench-Graph dataset as a problem: validation accuracy up, latency down."""

    space = parse_decision_space({"decisions": nbg.decision_space_spec()})
    objectives = (Objective(nbg.VAL_ACCURACY, "max"), Objective(nbg.LATENCY, "min"))

    def __init__(self, dataset: str):
        self.evaluate = nbg.NasBenchGraph(dataset)

    def __call__(self, candidate):
        return self.evaluate(candidate)

    def all_points(self) -> np.ndarray:
        rows = [[m[o.metric] for o in self.objectives] for m in self.evaluate.table.values()]
        return to_minimise(rows, self.objectives)


PROBLEMS = ("synthetic",) + nbg.DATASETS
_CACHE: dict[str, object] = {}


def problem(name: str):
    if name not in _CACHE:
        _CACHE[name] = Synthetic() if name == "synthetic" else Graph(name)
    return _CACHE[name]


class Scorer:
    """HV share against the true front of every point the problem has."""

    def __init__(self, all_points: np.ndarray, objectives):
        order = np.lexsort((all_points[:, 1], all_points[:, 0]))   # 2-D sweep, not an (N, N) matrix
        best = np.minimum.accumulate(all_points[order, 1])
        front = all_points[order][np.r_[True, best[1:] < best[:-1]]]
        assert len(non_dominated(front)) == len(front)
        self.objectives = objectives
        self.ideal, self.nadir = front.min(axis=0), front.max(axis=0)
        self.true_hv = self._hv(front)

    def _hv(self, pts) -> float:
        return hypervolume((pts - self.ideal) / (self.nadir - self.ideal), (1.1, 1.1))

    def hv_share(self, metrics: list[dict | None]) -> float:
        metrics = [m for m in metrics if m is not None]
        if not metrics:
            return 0.0
        return self._hv(to_minimise([[m[o.metric] for o in self.objectives] for m in metrics],
                                    self.objectives)) / self.true_hv


def run(name: str, label: str, seed: int, trials: int) -> dict:
    """One search: the metrics of every candidate trained, in order (None where it failed)."""
    strategy, ppo = VARIANTS[label]
    prob = problem(name)
    settings = SearchSettings(trials=trials, objectives=prob.objectives,
                              policy_settings={"ppo": ppo} if ppo else {})
    policy = make_policy(strategy, prob.space, prob.objectives, seed, settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        records = run_local(prob.space, prob, policy, prob.objectives, tmp, trials, seed=seed)
    trained = [r for r in records if r.cached_from is None]
    return {"problem": name, "label": label, "seed": seed, "trials": trials,
            "seconds": time.perf_counter() - start,
            "metrics": [{o.metric: r.metrics[o.metric] for o in prob.objectives} if r.state == "complete" else None
                        for r in trained]}


def own_run(label: str, n: int) -> bool:
    """N at which the policy's budget-derived defaults differ from those at N = TOP."""
    strategy = VARIANTS[label][0]
    return ((strategy == "nsga2" and population_for(n) != population_for(TOP))
            or (strategy == "tpe" and startup_trials_for(n) != startup_trials_for(TOP)))


def summarise(runs: list[dict]) -> dict:
    """problem -> label -> N -> HV shares over seeds."""
    out: dict = {}
    scorers = {}
    for r in runs:
        name = r["problem"]
        if name not in scorers:
            prob = problem(name)
            scorers[name] = Scorer(prob.all_points(), prob.objectives)
        for n in CHECKPOINTS:
            if n > r["trials"] or (r["trials"] == n) != (n == TOP or own_run(r["label"], n)):
                continue
            cell = out.setdefault(name, {}).setdefault(r["label"], {}).setdefault(n, [])
            cell.append(scorers[name].hv_share(r["metrics"][:n]))
    return out


def _fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def print_tables(table: dict, labels: list[str]) -> None:
    for name, cells in table.items():
        seeds = len(next(iter(cells.values()))[TOP])
        print(f"\n{name}: HV share, mean ± std over {seeds} seeds; p = one-sided Mann-Whitney vs random at N={TOP}")
        print("| policy | " + " | ".join(f"N={n}" for n in CHECKPOINTS) + " | p |")
        print("|---|" + "---|" * (len(CHECKPOINTS) + 1))
        for label in labels:
            if label not in cells:
                continue
            p = (f"{mann_whitney_greater(cells[label][TOP], cells['random'][TOP]):.2g}"
                 if label != "random" and "random" in cells else "-")
            print(f"| {label} | " + " | ".join(_fmt(cells[label][n]) for n in CHECKPOINTS) + f" | {p} |")
    names = list(table)
    print(f"\nSummary at N={TOP}: mean HV share per problem (p vs random); last column the mean over problems")
    print("| policy | " + " | ".join(names) + " | mean |")
    print("|---|" + "---|" * (len(names) + 1))
    for label in labels:
        if not all(label in table[n] for n in names):
            continue
        cells, means = [], []
        for n in names:
            m = statistics.mean(table[n][label][TOP])
            means.append(m)
            p = ("" if label == "random" or "random" not in table[n]
                 else f" ({mann_whitney_greater(table[n][label][TOP], table[n]['random'][TOP]):.1g})")
            cells.append(f"{m:.3f}{p}")
        print(f"| {label} | " + " | ".join(cells) + f" | {statistics.mean(means):.4f} |")


def merged(paths: list[Path]) -> list[dict]:
    """The runs of saved ``--out`` files; a problem in several files is taken from the last."""
    by_problem: dict[str, list[dict]] = {}
    for path in paths:
        latest: dict[str, list[dict]] = {}
        for r in json.loads(path.read_text()):
            latest.setdefault(r["problem"], []).append(r)
        by_problem.update(latest)
    return [r for runs in by_problem.values() for r in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--policies", nargs="+", default=["random", "nsga2", "tpe", "ppo"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write every run's metrics as JSON here")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="print the tables of saved --out files (a problem in several: the last file's)")
    args = parser.parse_args(argv)
    if not nbg.available() and any(p != "synthetic" for p in args.problems):
        print(f"needs nas-bench-graph=={nbg.VERSION} (pip install 'dynas[tabular]')")
        return 2
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.merge:
        runs = merged(args.merge)
    else:
        runs = [run(name, label, seed, n) for name in args.problems for label in args.policies
                for seed in range(args.first_seed, args.first_seed + args.seeds)
                for n in CHECKPOINTS if n == TOP or own_run(label, n)]
        if args.out:
            args.out.write_text(json.dumps(runs))
    labels = [v for v in VARIANTS if any(r["label"] == v for r in runs)]
    print_tables(summarise(runs), labels)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; seconds per run at N={TOP}: " + ", ".join(
        f"{v} {statistics.mean(r['seconds'] for r in runs if r['label'] == v and r['trials'] == TOP):.1f}"
        for v in labels))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
