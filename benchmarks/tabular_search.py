"""Search strategies on a real tabular benchmark: NAS-Bench-Graph ``arxiv`` (26,206 GNNs).

    nice -n 10 python -m benchmarks.tabular_search [--seeds 30] [--jobs 1] [--out FILE.json]

Every run goes through the path ``dynas search`` takes in process: the policy built by
``make_policy`` from ``SearchSettings(trials=N)``, the ``SearchDriver`` (duplicate cache,
records, policy state) via ``controllers.run.in_process.run_local``, and the NAS-Bench-Graph
evaluator (``trainers.tabular.nasbench_graph``). N counts distinct candidates trained.
A run of N = 300 gives N = 50..300 as its prefixes (the driver's budget only decides
when to stop), except where a policy's defaults depend on N (NSGA-II's population is
10 at N = 50, 20 from N = 100 on): such an N gets a run of its own. Random search runs
in the same process as the reference.

- Multi-objective (validation accuracy up, latency down): hypervolume share = HV of
  the found front / HV of the true front (the table enumerated), both normalised by the
  true front's ideal and nadir, reference point 1.1 in each coordinate.
- Single-objective (validation accuracy up): the test accuracy of the incumbent, the
  trained candidate with the best validation accuracy (the policy never sees test
  accuracy). ``p`` is a one-sided Mann-Whitney U test of "beats random" over seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynas.controllers.run.in_process import run_local  # noqa: E402
from dynas.controllers.pareto import hypervolume, non_dominated, to_minimise  # noqa: E402
from dynas.controllers.policies import PPOSettings, make_policy  # noqa: E402
from dynas.controllers.policies.optuna_policies import population_for, startup_trials_for  # noqa: E402
from dynas.search_space.plain import parse_decision_space  # noqa: E402
from dynas.search_space.settings import Objective, SearchSettings  # noqa: E402
from dynas.trainers.tabular import nasbench_graph as nbg  # noqa: E402

SPACE = parse_decision_space({"decisions": nbg.decision_space_spec()})
MULTI = (Objective(nbg.VAL_ACCURACY, "max"), Objective(nbg.LATENCY, "min"))
SINGLE = (Objective(nbg.VAL_ACCURACY, "max"),)
CHECKPOINTS = (50, 100, 200, 300)
VARIANTS = {   # label -> (strategy, ppo settings, objectives)
    "random": ("random", None, MULTI),     # proposals do not depend on outcomes: serves both
    "nsga2": ("nsga2", None, MULTI),
    "tpe-mo": ("tpe", None, MULTI),
    "ppo-hv": ("ppo", PPOSettings(reward="hypervolume"), MULTI),
    "tpe": ("tpe", None, SINGLE),
    "ppo": ("ppo", PPOSettings(), SINGLE),
    "ppo+surrogate": ("ppo", PPOSettings(surrogate=True), SINGLE),
}
_EVALUATE: list[nbg.NasBenchGraph] = []


def evaluator() -> nbg.NasBenchGraph:
    if not _EVALUATE:
        _EVALUATE.append(nbg.NasBenchGraph("arxiv"))
    return _EVALUATE[0]


def run(label: str, seed: int, trials: int) -> dict:
    """One search: the metrics of the distinct candidates trained, in order, and asks."""
    strategy, ppo, objectives = VARIANTS[label]
    settings = SearchSettings(trials=trials, objectives=objectives,
                              policy_settings={"ppo": ppo} if ppo else {})
    policy = make_policy(strategy, SPACE, objectives, seed, settings)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        records = run_local(SPACE, evaluator(), policy, objectives, tmp, trials, seed=seed)
    trained = [r for r in records if r.cached_from is None]
    return {"label": label, "seed": seed, "trials": trials, "seconds": time.perf_counter() - start,
            "metrics": [r.metrics for r in trained if r.state == "complete"],
            "asks": sum(r.asks for r in records), "distinct": len(trained),
            "entropy": [u["entropy"] for u in getattr(policy, "update_log", [])]}


class Scorer:
    """HV share and incumbent test accuracy against the enumerated table."""

    def __init__(self, table: dict[int, dict[str, float]]):
        pts = to_minimise([[m[o.metric] for o in MULTI] for m in table.values()], MULTI)   # (26206, 2)
        order = np.lexsort((pts[:, 1], pts[:, 0]))                 # 2-D sweep: (N, N) would be 700M cells
        best = np.minimum.accumulate(pts[order, 1])
        keep = np.r_[True, best[1:] < best[:-1]]
        front = pts[order][keep]
        assert len(non_dominated(front)) == len(front)
        self.ideal, self.nadir = front.min(axis=0), front.max(axis=0)
        self.true_hv = self._hv(front)
        self.best_test = max(m[nbg.TEST_ACCURACY] for m in table.values())

    def _hv(self, pts) -> float:
        return hypervolume((pts - self.ideal) / (self.nadir - self.ideal), (1.1, 1.1))

    def hv_share(self, metrics: list[dict]) -> float:
        if not metrics:
            return 0.0
        return self._hv(to_minimise([[m[o.metric] for o in MULTI] for m in metrics], MULTI)) / self.true_hv

    @staticmethod
    def incumbent_test(metrics: list[dict]) -> float:
        return max(metrics, key=lambda m: m[nbg.VAL_ACCURACY])[nbg.TEST_ACCURACY] if metrics else 0.0


def mann_whitney_greater(x: list[float], y: list[float]) -> float:
    """One-sided p of "x tends to exceed y" (scipy when installed, else the normal
    approximation with a tie correction)."""
    try:
        from scipy.stats import mannwhitneyu
        return float(mannwhitneyu(x, y, alternative="greater").pvalue)
    except ImportError:
        import math
        ranked = sorted((v, i) for i, v in enumerate(list(x) + list(y)))
        ranks, k = [0.0] * len(ranked), 0
        while k < len(ranked):
            j = k
            while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[k][0]:
                j += 1
            for t in range(k, j + 1):
                ranks[ranked[t][1]] = (k + j) / 2 + 1
            k = j + 1
        n1, n2 = len(x), len(y)
        u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
        sd = math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12)
        return 0.5 * math.erfc((u - n1 * n2 / 2 - 0.5) / (sd * math.sqrt(2))) if sd else 1.0


def own_run(label: str, n: int) -> bool:
    """N at which the policy's budget-derived defaults differ from those at N = 300."""
    strategy = VARIANTS[label][0]
    return ((strategy == "nsga2" and population_for(n) != population_for(CHECKPOINTS[-1]))
            or (strategy == "tpe" and startup_trials_for(n) != startup_trials_for(CHECKPOINTS[-1])))


def run_list(labels: list[str], seeds: range) -> list[tuple[str, int, int]]:
    top = CHECKPOINTS[-1]
    return [(label, seed, n) for label in labels for seed in seeds
            for n in CHECKPOINTS if n == top or own_run(label, n)]


def summarise(runs: list[dict], scorer: Scorer) -> dict:
    """label -> N -> list over seeds of (hv share, incumbent test accuracy, asks/distinct)."""
    out: dict = {}
    for r in runs:
        for n in CHECKPOINTS:
            if n > r["trials"] or (r["trials"] == n) != (n == CHECKPOINTS[-1] or own_run(r["label"], n)):
                continue
            cell = out.setdefault(r["label"], {}).setdefault(n, {"hv": [], "test": [], "asks": [], "s": []})
            cell["hv"].append(scorer.hv_share(r["metrics"][:n]))
            cell["test"].append(scorer.incumbent_test(r["metrics"][:n]))
            cell["asks"].append(r["asks"] / max(r["distinct"], 1))
            cell["s"].append(r["seconds"])
    return out


def _fmt(values: list[float], digits: int = 4) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def print_tables(table: dict, seeds: int, scorer: Scorer) -> None:
    print(f"\nNAS-Bench-Graph arxiv, {seeds} seeds, mean ± std over seeds (median in brackets)")
    print("\nMulti-objective (val accuracy vs latency): HV share of the true front")
    print("| policy | " + " | ".join(f"N={n}" for n in CHECKPOINTS) + " | asks/distinct |")
    print("|---|" + "---|" * (len(CHECKPOINTS) + 1))
    for label in ("random", "nsga2", "tpe-mo", "ppo-hv"):
        if label in table:
            cells = [f"{_fmt(table[label][n]['hv'])} ({statistics.median(table[label][n]['hv']):.4f})"
                     if n in table[label] else "-" for n in CHECKPOINTS]
            print(f"| {label} | " + " | ".join(cells) + f" | {statistics.mean(table[label][300]['asks']):.2f} |")
    print(f"\nSingle-objective (val accuracy): test accuracy of the incumbent (best in the table "
          f"{scorer.best_test:.4f}); p = one-sided Mann-Whitney vs random")
    print("| policy | " + " | ".join(f"N={n}" for n in CHECKPOINTS) + " |")
    print("|---|" + "---|" * len(CHECKPOINTS))
    base = table.get("random", {})
    for label in ("random", "tpe", "ppo", "ppo+surrogate"):
        if label not in table:
            continue
        cells = []
        for n in CHECKPOINTS:
            if n not in table[label]:
                cells.append("-")
                continue
            cell = _fmt(table[label][n]["test"])
            if label != "random" and n in base:
                cell += f" (p={mann_whitney_greater(table[label][n]['test'], base[n]['test']):.2g})"
            cells.append(cell)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print("\nseconds per run (N=300): " + ", ".join(
        f"{k} {statistics.mean(v[300]['s']):.1f}" for k, v in table.items() if 300 in v))


def _job(args: tuple[str, int, int]) -> dict:
    import torch

    torch.set_num_threads(1)
    return run(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--merge", type=Path, nargs="+", help="print the tables of saved --out files")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--policies", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, help="also write every run's metrics as JSON here")
    args = parser.parse_args(argv)
    if not nbg.available():
        print(f"needs nas-bench-graph=={nbg.VERSION} (pip install 'dynas[tabular]')")
        return 2
    scorer = Scorer(evaluator().table)
    start = time.perf_counter()
    if args.merge:
        runs = [r for path in args.merge for r in json.loads(path.read_text())]
        print_tables(summarise(runs, scorer), len({r["seed"] for r in runs}), scorer)
        return 0
    jobs = run_list(args.policies, range(args.first_seed, args.first_seed + args.seeds))
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(_job, jobs))
    else:
        runs = [_job(j) for j in jobs]
    if args.out:
        args.out.write_text(json.dumps(runs))
    print_tables(summarise(runs, scorer), args.seeds, scorer)
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
