"""Does a weight-sharing supernet rank candidates like stand-alone training at the budget
users deploy? (the longer-trained model a search's winner becomes)

    nice -n 19 python -m benchmarks.supernet_ground_truth --archs 24 --seeds 2 --budget 4
    nice -n 19 python -m benchmarks.supernet_ranking [--truth docs/supernet_ground_truth_4x.json]
        [--archs 24] [--factor 2] [--variants uniform/one fair/one sandwich/one uniform/d_model ...]
        [--json docs/supernet_ranking_4x.json] [--table-only]

The ground truth is a file (``benchmarks.supernet_ground_truth``): architectures drawn
uniformly from the experiment's space, each trained stand-alone with ``trainers.fit`` at
4x the training section's steps per experience with two training seeds, and once at
the file's own budget. Its noise ceiling is Kendall's tau between seed 0 and seed 1 at
4x: how well one stand-alone training ranks the others.

Per variant ``SAMPLING/SHOTS`` (``search.supernet.sampling`` / ``shots``), one supernet
(few-shot: one per part) trained by ``train_supernet`` with ``--factor`` x the training
section's steps per experience, and the first ``--archs`` architectures of the draw
scored with their inherited weights (``evaluate_inherited``). Ranking: Kendall's tau-b
between the inherited and the stand-alone validation final average accuracy (4x seed 0,
4x mean of seeds, 1x seed 0), on the architectures the truth file holds both 4x seeds
of, with 95% percentile bootstrap intervals over architectures. One process, one thread;
each variant's scores are written to ``--json`` as soon as it is done, and a rerun
skips the variants already there (``--table-only``: the table from the files alone, e.g.
once the ground truth holds more architectures).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynas.analysis.calibration import bootstrap_interval, kendall_tau  # noqa: E402
from dynas.search_space import names  # noqa: E402
from dynas.search_space.constraints import is_feasible  # noqa: E402
from dynas.search_space.experiment import load_experiment  # noqa: E402
from dynas.search_space.settings import SupernetSettings  # noqa: E402
from dynas.search_space.suggest import RandomSuggester  # noqa: E402

ACC, TEST_ACC = names.FINAL_AVG_ACCURACY, names.as_test(names.FINAL_AVG_ACCURACY)
MIN_INTERVAL = 8                     # architectures needed for a bootstrap interval
DEFAULT_VARIANTS = ["uniform/one", "fair/one", "sandwich/one", "uniform/d_model", "uniform/attention",
                    "fair/d_model"]


def draw(space, shape, n: int, seed: int) -> list:
    """``n`` distinct feasible architectures, uniform per decision."""
    rng, seen, out = RandomSuggester(seed), set(), []
    for _ in range(200 * n):
        arch = space.sample(rng)
        if arch.arch_id in seen or not is_feasible(arch, shape, None)[0]:
            continue
        seen.add(arch.arch_id)
        out.append(arch)
        if len(out) == n:
            return out
    raise SystemExit(f"only {len(out)} distinct feasible architectures in the space")


def read_truth(paths: list[Path]) -> dict:
    """The ground-truth files of one draw as one (their architectures in draw order)."""
    truth = None
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: no ground truth; make it with python -m benchmarks.supernet_ground_truth")
        data = json.loads(path.read_text())
        if truth is None:
            truth = data
            continue
        for key in ("config", "arch_seed", "budget", "seeds"):
            if data[key] != truth[key]:
                raise SystemExit(f"{path}: {key} {data[key]!r} differs from {paths[0]}'s {truth[key]!r}")
        truth["archs"] += [a for a in data["archs"] if a["arch_id"] not in {b["arch_id"] for b in truth["archs"]}]
    return truth


def train_variant(variant: str, exp, task, archs: list, factor: float, seed: int) -> dict:
    """One variant's supernet(s) trained and ``archs`` scored with inherited weights."""
    from dynas.trainers.supernet import evaluate_inherited, train_supernet

    sampling, shots = variant.split("/")
    settings = SupernetSettings(factor=factor, seed=seed, sampling=sampling, shots=shots)
    net = train_supernet(exp.space, task, exp.training, settings)
    started, scores = time.perf_counter(), {}
    for arch in archs:
        m = evaluate_inherited(net, arch, task, exp.training)
        scores[arch.arch_id] = {"val": m.values[ACC], "test": m.values[TEST_ACC]}
    return {"variant": variant, "factor": factor, "parts": len(net.parts), "steps": net.steps,
            "paths": net.paths, "train_s": round(net.wall_time_s, 1),
            "eval_s": round(time.perf_counter() - started, 1), "scores": scores}


def tau_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Kendall's tau-b and its 95% bootstrap interval over architectures."""
    a_, b_ = list(a), list(b)
    if len(a_) < MIN_INTERVAL:           # a bootstrap of a handful of points is degenerate, not narrow
        return kendall_tau(a_, b_), float("nan"), float("nan")
    lo, hi = bootstrap_interval(lambda idx: kendall_tau([a_[i] for i in idx], [b_[i] for i in idx]), len(a_))
    return kendall_tau(a_, b_), lo, hi


def table(truth: dict, results: list[dict]) -> list[str]:
    """The Markdown table: every variant against the complete ground truth."""
    budget = f"x{truth['budget']}"
    whole = [a for a in truth["archs"] if all(str(s) in a[budget] for s in truth["seeds"]) and "0" in a["x1"]]
    seed0 = [a[budget]["0"]["val"] for a in whole]
    mean = [statistics.mean(a[budget][str(s)]["val"] for s in truth["seeds"]) for a in whole]
    x1 = [a["x1"]["0"]["val"] for a in whole]
    ceiling = tau_ci(seed0, [a[budget]["1"]["val"] for a in whole]) if len(truth["seeds"]) > 1 else (float("nan"),) * 3
    transfer = tau_ci(x1, seed0)
    fmt = lambda t: f"{t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]" if t[1] == t[1] else f"{t[0]:.2f} [n < {MIN_INTERVAL}]"
    lines = [f"{len(whole)} architectures with both {budget} seeds; noise ceiling ({budget} seed 1 vs seed 0) "
             f"tau {fmt(ceiling)}; 0.8 x ceiling = {0.8 * ceiling[0]:.2f}; the search budget (x1 seed 0) "
             f"ranks {budget} seed 0 at tau {fmt(transfer)}", "",
             f"| variant (sampling / shots) | parts | paths trained | supernet training (s) | scoring (s) | "
             f"τ vs {budget} seed 0 [95%] | τ vs {budget} mean of seeds [95%] | τ vs x1 seed 0 | "
             f"τ / ceiling | mean inherited val (all scored) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        got = [r["scores"].get(a["arch_id"]) for a in whole]
        keep = [i for i, g in enumerate(got) if g is not None]
        inh = [got[i]["val"] for i in keep]
        t0, tm, t1 = (tau_ci([ref[i] for i in keep], inh) for ref in (seed0, mean, x1))
        lines.append(f"| {r['variant']} (×{r['factor']:g}) | {r['parts']} | {r['paths']} | {r['train_s']:.0f} | "
                     f"{r['eval_s']:.0f} | {fmt(t0)} | {fmt(tm)} | {t1[0]:.2f} | {t0[0] / ceiling[0]:.2f} | "
                     f"{statistics.mean(v['val'] for v in r['scores'].values()):.3f} ({len(r['scores'])}) |"
                     + ("" if len(keep) == len(whole) else f" (on {len(keep)})"))
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, nargs="+", default=[Path("docs/supernet_ground_truth_4x.json")],
                   help="ground-truth files of one draw (parts measured by separate processes)")
    p.add_argument("--archs", type=int, default=24, help="the first N of the truth file's draw are scored")
    p.add_argument("--factor", type=float, default=2.0,
                   help="supernet steps per experience, as a multiple of the training section's")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, help="SAMPLING/SHOTS")
    p.add_argument("--seed", type=int, default=0, help="of the supernets")
    p.add_argument("--json", type=Path, default=Path("docs/supernet_ranking_4x.json"))
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    truth = read_truth(args.truth)
    done = json.loads(args.json.read_text()) if args.json.is_file() else {"results": []}
    if not args.table_only:
        from dynas.trainers.tasks import build_task

        exp = load_experiment(truth["config"])
        task = build_task(exp.task, seed=exp.training.seed)
        archs = draw(exp.space, task.shape, args.archs, truth["arch_seed"])
        t0 = time.perf_counter()
        for variant in args.variants:
            if any(r["variant"] == variant and r["factor"] == args.factor for r in done["results"]):
                continue
            r = train_variant(variant, exp, task, archs, args.factor, args.seed)
            done["results"].append(r)
            done["command"] = "nice -n 19 python -m benchmarks.supernet_ranking " + " ".join(sys.argv[1:])
            args.json.write_text(json.dumps(done, indent=1))
            print(f"[{time.perf_counter() - t0:6.0f}s] {variant}: {r['paths']} paths, train {r['train_s']:.0f}s, "
                  f"scoring {r['eval_s']:.0f}s", flush=True)
    print("\n".join(table(truth, done["results"])))


if __name__ == "__main__":
    main()
