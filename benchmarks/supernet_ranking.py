"""Does a weight-sharing supernet rank candidates like stand-alone training at the budget
users deploy? (the longer-trained model a search's winner becomes)

    nice -n 19 dynas calibrate examples/quickstart.yaml --archs 24 --seeds 2 --budgets 1 4 --runner local
    nice -n 19 python -m benchmarks.supernet_ranking --truth RUN_DIR [--archs 24] [--factor 2]
        [--variants uniform/one fair/one sandwich/one uniform/d_model ...] [--seed 0]
        [--json docs/supernet_ranking_4x.json] [--table-only]

The ground truth is stand-alone training, measured once: preferably a calibration run
(``dynas calibrate``; its largest budget is the truth, every training seed, its
smallest the search's budget; validation values of its first objective only), or the
files of ``benchmarks.supernet_ground_truth`` (4x with two seeds and 1x with seed 0,
the same draw: ``draw`` here and calibrate's draw give the same architectures for one
file and seed), or a ``--json`` results file that saved its truth (``truth``: the table
again without the run). Its noise ceiling is Kendall's tau between the first two training seeds
at the truth's budget: how well one stand-alone training ranks the others.

Per variant ``SAMPLING/SHOTS`` (``search.supernet.sampling`` / ``shots``), one supernet
(few-shot: one per part) trained by ``train_supernet`` with ``--factor`` x the training
section's steps per experience and supernet seed ``--seed``, and the first ``--archs``
architectures of the truth's draw scored with their inherited weights
(``evaluate_inherited``). Ranking: Kendall's tau-b between the inherited and the
stand-alone validation final average accuracy (truth seed a, truth mean of seeds, the
search budget's seed a), on the architectures the truth holds every seed of, with 95%
percentile bootstrap intervals over architectures, and the goal's margin: tau - 0.8 x
the noise ceiling, its interval paired (both taus on each resample). One process, one
thread; each (variant, factor, seed)'s scores are written to ``--json`` as soon as it is
done, and a rerun skips those already there (``--table-only``: the table from the files
alone, e.g. once the ground truth holds more architectures).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
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
GOAL = 0.8                           # the target: tau(inherited, truth) >= GOAL x the noise ceiling
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
    """The ground truth as one: a calibration run directory (``dynas calibrate``), or the
    ``supernet_ground_truth`` files of one draw (their architectures in draw order)."""
    if len(paths) == 1 and paths[0].is_dir():
        return truth_from_calibration(paths[0])
    truth = None
    for path in paths:
        if not path.is_file():
            raise SystemExit(f"{path}: no ground truth; make it with python -m benchmarks.supernet_ground_truth "
                             "or dynas calibrate (then pass its run directory)")
        data = json.loads(path.read_text())
        data = data.get("truth", data)         # a results file that saved the truth it was judged on
        if truth is None:
            truth = data
            continue
        for key in ("config", "arch_seed", "budget", "seeds"):
            if data[key] != truth[key]:
                raise SystemExit(f"{path}: {key} {data[key]!r} differs from {paths[0]}'s {truth[key]!r}")
        truth["archs"] += [a for a in data["archs"] if a["arch_id"] not in {b["arch_id"] for b in truth["archs"]}]
    return truth


def truth_from_calibration(run_dir: Path) -> dict:
    """A calibration run as a ground truth in the files' shape: its largest budget is the
    truth (every seed), its smallest the search's budget (``low``); validation values of
    its first objective only (``load_calibration`` never reads a test value). The
    architectures are the run's own draw (``archs_from``), trained with its own file."""
    from dynas.analysis.calibration import is_calibration, load_calibration

    if not is_calibration(run_dir):
        raise SystemExit(f"{run_dir}: not a calibration run directory (dynas calibrate)")
    cal = load_calibration(run_dir)
    if len(cal.budgets) < 2:
        raise SystemExit(f"{run_dir}: one budget ({cal.budgets}); the truth needs a larger budget than the search's")
    from dynas.controllers.records import iter_records

    plan = json.loads((run_dir / "calibration.json").read_text(encoding="utf-8"))
    flops = {r.arch_id: r.metrics.get(names.FLOPS) for r in iter_records(run_dir)}     # static cost
    low, high = cal.budgets[0], cal.budgets[-1]
    cell = lambda v: {"val": float(v)}
    archs = [{"arch_id": aid, "arch": entry["arch"], "flops": flops.get(aid),
              **{f"x{b}": {str(s): cell(cal.values[b][i, j]) for j, s in enumerate(cal.seeds)
                           if np.isfinite(cal.values[b][i, j])} for b in (low, high)}}
             for i, (aid, entry) in enumerate(zip(cal.arch_ids, plan["archs"]))]
    return {"config": str(run_dir / json.loads((run_dir / "run.json").read_text())["experiment"]),
            "arch_seed": plan.get("draw_seed"), "budget": high, "low": low, "seeds": cal.seeds,
            "metric": cal.metric, "run_dir": str(run_dir), "archs": archs}


def archs_from(truth: dict, space, shape, n: int) -> list:
    """The first ``n`` architectures a truth ranks: a calibration's own draw, else the
    files' draw repeated (``draw`` with their seed)."""
    if "run_dir" in truth:
        from dynas.search_space.arch import ArchConfig

        return [ArchConfig.from_dict(a["arch"]) for a in truth["archs"][:n]]
    return draw(space, shape, n, truth["arch_seed"])


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
    return {"variant": variant, "factor": factor, "seed": seed, "parts": len(net.parts), "steps": net.steps,
            "paths": net.paths, "train_s": round(net.wall_time_s, 1),
            "eval_s": round(time.perf_counter() - started, 1), "scores": scores}


def tau_ci(a: list[float], b: list[float]) -> tuple[float, float, float]:
    """Kendall's tau-b and its 95% bootstrap interval over architectures."""
    a_, b_ = list(a), list(b)
    if len(a_) < MIN_INTERVAL:           # a bootstrap of a handful of points is degenerate, not narrow
        return kendall_tau(a_, b_), float("nan"), float("nan")
    lo, hi = bootstrap_interval(lambda idx: kendall_tau([a_[i] for i in idx], [b_[i] for i in idx]), len(a_))
    return kendall_tau(a_, b_), lo, hi


def goal_gap(truth0: list[float], truth1: list[float], inherited: list[float]) -> tuple[float, float, float]:
    """tau(inherited, truth seed a) - ``GOAL`` x tau(truth seed a, seed b), with a paired
    95% bootstrap interval (both taus on the same resampled architectures)."""
    a, b, c = (np.asarray(v, float) for v in (truth0, truth1, inherited))
    gap = lambda idx: kendall_tau(a[idx], c[idx]) - GOAL * kendall_tau(a[idx], b[idx])
    if len(a) < MIN_INTERVAL:
        return gap(np.arange(len(a))), float("nan"), float("nan")
    return (gap(np.arange(len(a))), *bootstrap_interval(gap, len(a)))


def table(truth: dict, results: list[dict]) -> list[str]:
    """The Markdown table: every variant against the complete ground truth."""
    budget, low, seeds = f"x{truth['budget']}", f"x{truth.get('low', 1)}", [str(s) for s in truth["seeds"]]
    whole = [a for a in truth["archs"] if all(s in a[budget] for s in seeds) and seeds[0] in a[low]]
    seed0 = [a[budget][seeds[0]]["val"] for a in whole]
    seed1 = [a[budget][seeds[1]]["val"] for a in whole] if len(seeds) > 1 else []
    mean = [statistics.mean(a[budget][s]["val"] for s in seeds) for a in whole]
    x1 = [a[low][seeds[0]]["val"] for a in whole]
    flops = [a.get("flops", a[budget][seeds[0]].get("flops")) for a in whole]
    ceiling = tau_ci(seed0, seed1) if seed1 else (float("nan"),) * 3
    transfer = tau_ci(x1, seed0)
    by_cost = lambda v: kendall_tau(v, flops) if None not in flops else float("nan")
    fmt = lambda t: f"{t[0]:.2f} [{t[1]:.2f}, {t[2]:.2f}]" if t[1] == t[1] else f"{t[0]:.2f} [n < {MIN_INTERVAL}]"
    a, b = (f"seed {s}" for s in (seeds + seeds)[:2])
    lines = [f"{len(whole)} architectures with all {budget} seeds; noise ceiling ({budget} {b} vs {a}) "
             f"tau {fmt(ceiling)}; {GOAL} x ceiling = {GOAL * ceiling[0]:.2f}; the search budget ({low} {a}) "
             f"ranks {budget} {a} at tau {fmt(transfer)}; tau with FLOPs: {budget} mean of seeds {by_cost(mean):.2f}, "
             f"{low} {a} {by_cost(x1):.2f}", "",
             f"| variant (sampling / shots) | supernet seed | parts | paths trained | supernet training (s) | "
             f"scoring (s) | τ vs {budget} {a} [95%] | τ vs {budget} mean of seeds [95%] | τ vs {low} {a} | "
             f"τ / ceiling | τ − {GOAL} × ceiling [95%, paired] | τ vs FLOPs | mean inherited val (all scored) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        got = [r["scores"].get(a["arch_id"]) for a in whole]
        keep = [i for i, g in enumerate(got) if g is not None]
        inh = [got[i]["val"] for i in keep]
        t0, tm, t1 = (tau_ci([ref[i] for i in keep], inh) for ref in (seed0, mean, x1))
        by_cost_kept = lambda rows, v: kendall_tau(v, [flops[i] for i in rows]) if None not in flops \
            else float("nan")
        gap = goal_gap([seed0[i] for i in keep], [seed1[i] for i in keep], inh) if seed1 else (float("nan"),) * 3
        lines.append(f"| {r['variant']} (×{r['factor']:g}) | {r.get('seed', 0)} | {r['parts']} | {r['paths']} | "
                     f"{r['train_s']:.0f} | {r['eval_s']:.0f} | {fmt(t0)} | {fmt(tm)} | {t1[0]:.2f} | "
                     f"{t0[0] / ceiling[0]:.2f} | {fmt(gap)} | {by_cost_kept(keep, inh):.2f} | "
                     f"{statistics.mean(v['val'] for v in r['scores'].values()):.3f} ({len(r['scores'])}) |"
                     + ("" if len(keep) == len(whole) else f" (on {len(keep)})"))
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--truth", type=Path, nargs="+", required=True,
                   help="a calibration run directory (dynas calibrate), or the supernet_ground_truth "
                        "files of one draw (parts measured by separate processes)")
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
        archs = archs_from(truth, exp.space, task.shape, args.archs)
        t0 = time.perf_counter()
        for variant in args.variants:
            if any(r["variant"] == variant and r["factor"] == args.factor and r.get("seed", 0) == args.seed
                   for r in done["results"]):
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
