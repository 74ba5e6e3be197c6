"""Search quality: every policy against random search on a cheap synthetic problem.

    python -m benchmarks.search_quality [--trials 60] [--seeds 5]

The problem is a declared ``DecisionSpace`` of 8 decisions (18,432 candidates) with a
synthetic accuracy / FLOPs trade-off that has interactions (pre-norm matters only for
deep nets, MoE pays off only with top-2 routing, dropout helps only wide nets) and a
little deterministic per-candidate noise. Each policy runs through the real local
runner (duplicate cache included), so "equal trials" means equal distinct candidates.

Reported, as medians over seeds at equal trials:
- ``hv``: hypervolume of the found front / hypervolume of the true front (the space is
  enumerated once), accuracy and log2 FLOPs normalised to the true front's ideal..nadir
  box, reference point 10% beyond the nadir.
- ``best``: the best scalar score acc - 0.05 * log2(flops / min flops of the space),
  and ``regret`` = optimum - best.
Ratios are against random search (hv: higher is better; regret: lower is better).
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynas.controllers.run.in_process import run_local  # noqa: E402
from dynas.controllers.pareto import hypervolume  # noqa: E402
from dynas.controllers.policies import PPOSettings, make_policy  # noqa: E402
from dynas.search_space import names  # noqa: E402
from dynas.search_space.plain import parse_decision_space  # noqa: E402
from dynas.search_space.settings import Objective, SearchSettings  # noqa: E402

SPACE = parse_decision_space({"decisions": {
    "depth": {"low": 1, "high": 6},
    "width": [32, 64, 128, 256],
    "attention": ["full", "window", "linear", "span"],
    "ffn": ["dense", "moe2", "moe4", "moe8"],
    "top_k": [1, 2],
    "norm": ["pre", "post"],
    "activation": ["relu", "gelu", "swiglu"],
    "dropout": [0.0, 0.1, 0.2, 0.3],
}})
OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))
PENALTY = 0.05
VARIANTS = {   # label -> (strategy, PPO settings)
    "random": ("random", None),
    "tpe": ("tpe", None),
    "nsga2": ("nsga2", None),
    "ppo": ("ppo", PPOSettings()),
    "ppo-hv": ("ppo", PPOSettings(reward="hypervolume")),
    "ppo+surrogate": ("ppo", PPOSettings(surrogate=True)),
}


def synthetic(p: dict) -> dict[str, float]:
    """Accuracy saturates in capacity; FLOPs grow with depth, width^2 and active experts."""
    experts = {"dense": 1, "moe2": 2, "moe4": 4, "moe8": 8}[p["ffn"]]
    active = 1 if experts == 1 else min(p["top_k"], experts)
    ffn_gain = 1.0 if experts == 1 else 1 + 0.25 * math.log2(experts) * (0.4 if p["top_k"] == 1 else 1.0)
    capacity = p["depth"] ** 0.6 * math.log2(p["width"]) * ffn_gain
    capacity *= {"full": 1.0, "window": 0.92, "linear": 0.8, "span": 0.97}[p["attention"]]
    capacity *= {"relu": 1.0, "gelu": 1.04, "swiglu": 1.1}[p["activation"]]
    acc = 1 - math.exp(-capacity / 8)
    if p["norm"] == "post" and p["depth"] >= 4:
        acc -= 0.04 * (p["depth"] - 3)                      # deep post-norm is unstable
    acc -= 0.15 * abs(p["dropout"] - (0.2 if p["width"] >= 128 else 0.0))
    noise = int(hashlib.sha256(repr(sorted(p.items())).encode()).hexdigest()[:8], 16) / 16 ** 8
    acc = min(max(acc + 0.01 * (noise - 0.5), 0.0), 1.0)
    attn = {"full": 1.0, "window": 0.5, "linear": 0.3, "span": 0.7}[p["attention"]]
    ffn = (4 if p["activation"] != "swiglu" else 6) * (active + 0.02 * experts)
    flops = p["depth"] * p["width"] ** 2 * 64 * (attn + 4 + ffn)
    return {names.FINAL_AVG_ACCURACY: acc, names.FLOPS: flops}


def enumerate_space() -> list[dict[str, float]]:
    entries = SPACE.entries
    return [synthetic(dict(zip([e.name for e in entries], combo)))
            for combo in itertools.product(*[e.options for e in entries])]


def front_2d(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated points (minimisation) by one sort and a sweep: O(n log n)."""
    front, best_y = [], math.inf
    for x, y in sorted(points):
        if y < best_y:
            front.append((x, y))
            best_y = y
    return front


class Scorer:
    """Hypervolume and best scalar score, relative to the enumerated space.

    Accuracy (flipped) and log2 FLOPs are normalised to the true front's ideal..nadir
    box and the reference point sits 10% beyond the nadir, so the hypervolume measures
    how close a search gets to the front, not how much of a mostly-easy box it covers.
    """

    def __init__(self) -> None:
        everything = enumerate_space()
        raw = [self._raw(m) for m in everything]
        true_front = front_2d(raw)
        self.lo = [min(p[i] for p in true_front) for i in (0, 1)]
        self.span = [max(p[i] for p in true_front) - self.lo[i] for i in (0, 1)]
        self.f_lo = min(math.log2(m[names.FLOPS]) for m in everything)
        self.optimum_hv = self.hv(everything)
        self.optimum_score = max(self.score(m) for m in everything)
        self.size = len(everything)

    @staticmethod
    def _raw(m: dict) -> tuple[float, float]:
        return -m[names.FINAL_AVG_ACCURACY], math.log2(m[names.FLOPS])

    def hv(self, metrics: list[dict]) -> float:
        pts = [tuple((r[i] - self.lo[i]) / self.span[i] for i in (0, 1)) for r in map(self._raw, metrics)]
        return hypervolume(front_2d(pts), (1.1, 1.1))

    def score(self, m: dict) -> float:
        return m[names.FINAL_AVG_ACCURACY] - PENALTY * (math.log2(m[names.FLOPS]) - self.f_lo)


def run_variant(label: str, seed: int, trials: int) -> list[dict]:
    """Metrics of the distinct candidates a policy trained, in training order."""
    strategy, ppo = VARIANTS[label]
    settings = SearchSettings(trials=trials, policy_settings={"ppo": ppo or PPOSettings()})
    policy = make_policy(strategy, SPACE, OBJECTIVES, seed, settings)
    with tempfile.TemporaryDirectory() as tmp:
        records = run_local(SPACE, lambda a: ("complete", synthetic(a.to_dict()), {}), policy,
                            OBJECTIVES, tmp, trials, seed=seed)
    return [r.metrics for r in records if r.cached_from is None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--policies", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args(argv)
    scorer = Scorer()
    checkpoints = sorted({args.trials // 2, args.trials})
    table: dict[str, dict[str, float]] = {}
    for label in args.policies:
        start = time.perf_counter()
        runs = [run_variant(label, seed, args.trials) for seed in range(args.seeds)]
        row = {}
        for n in checkpoints:
            row[f"hv@{n}"] = statistics.median(scorer.hv(r[:n]) / scorer.optimum_hv for r in runs)
            row[f"regret@{n}"] = statistics.median(
                scorer.optimum_score - max(scorer.score(m) for m in r[:n]) for r in runs)
        row["s/run"] = (time.perf_counter() - start) / args.seeds
        table[label] = row
    print(f"{scorer.size} candidates, {args.trials} trials, seeds 0..{args.seeds - 1}, medians; "
          f"hv = fraction of the true front's hypervolume, regret = optimum - best score")
    cols = [c for n in checkpoints for c in (f"hv@{n}", f"regret@{n}")]
    base = table.get("random")
    header = ["policy"] + cols + (["hv ratio", "regret ratio"] if base else []) + ["s/run"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    last = checkpoints[-1]
    for label, row in table.items():
        cells = [label] + [f"{row[c]:.3f}" for c in cols]
        if base:
            cells += [f"{row[f'hv@{last}'] / base[f'hv@{last}']:.2f}",
                      f"{row[f'regret@{last}'] / max(base[f'regret@{last}'], 1e-12):.2f}"]
        cells.append(f"{row['s/run']:.1f}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
