"""Does a weight-sharing supernet rank candidates like stand-alone training? (issue 16)

    nice -n 10 python -m benchmarks.supernet_ranking [--config examples/quickstart.yaml]
        [--archs 24] [--seeds 2] [--factors 2 4] [--finetune 0 10] [--top 4] [--seed 0] [--json FILE]

One process, one thread, every number measured in this run:

1. ``--archs`` distinct feasible architectures drawn uniformly from the space
   (``RandomSuggester(seed)``), each trained stand-alone with ``trainers.fit`` with
   ``--seeds`` training seeds: the ground truth (the mean over seeds), the noise
   ceiling (Kendall's tau between seed 0 and seed 1: how well one stand-alone training
   ranks the others), and, with seed 0 alone, the cost of a stand-alone search.
2. Per ``--factors`` entry F, one supernet trained by ``train_supernet`` with F times
   the training section's steps per experience; per ``--finetune`` entry S, every
   architecture scored with its inherited weights (S = 0) or after S fine-tuning steps
   per experience (``evaluate_inherited``).
3. Ranking: Kendall's tau-b (and Spearman's rho) between the supernet's and the
   stand-alone final average accuracy (seed 0, and the mean over seeds), on validation
   (what a search sees) and on test.
4. Search cost and quality, accuracy (validation) vs FLOPs:
   - stand-alone search: the N trainings; its front's hypervolume;
   - supernet search: the supernet's training + N inherited scorings + stand-alone
     training of its ``--top`` best (front rank, then accuracy, as ``search.confirm``
     picks them); its front is built from those K stand-alone values. The K
     "confirmations" reuse the stand-alone runs of step 1 (same seed), and their wall
     time is counted, so the supernet search pays for them in full.
   Hypervolume: accuracy and FLOPs / max FLOPs of the N, reference point (0, 1.1).

Prints a Markdown table; ``--json`` keeps every measurement.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynas.controllers.pareto import hypervolume, non_dominated_sort, to_minimise  # noqa: E402
from dynas.search_space import names  # noqa: E402
from dynas.search_space.constraints import is_feasible  # noqa: E402
from dynas.search_space.experiment import load_experiment  # noqa: E402
from dynas.search_space.settings import Objective, SupernetSettings  # noqa: E402
from dynas.search_space.suggest import RandomSuggester  # noqa: E402
from dynas.trainers.fitting import fit  # noqa: E402
from dynas.trainers.supernet import evaluate_inherited, train_supernet  # noqa: E402
from dynas.trainers.tasks import build_task  # noqa: E402

ACC, TEST_ACC, FLOPS = names.FINAL_AVG_ACCURACY, names.as_test(names.FINAL_AVG_ACCURACY), names.FLOPS
OBJECTIVES = (Objective(ACC, "max"), Objective(FLOPS, "min"))


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


def kendall(a: list[float], b: list[float]) -> tuple[float, float]:
    from dynas.analysis.seeds import kendall_tau

    return kendall_tau(a, b), spearman(a, b)


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def front_hv(points: list[tuple[float, float]], max_flops: float) -> float:
    pts = to_minimise([(acc, flops / max_flops) for acc, flops in points], OBJECTIVES)
    return hypervolume(pts, [0.0, 1.1])


def top_k(values: list[tuple[float, float]], k: int) -> list[int]:
    """Indices of the ``k`` best by front rank, then accuracy (``controllers.run.confirm``)."""
    pts = to_minimise(values, OBJECTIVES)
    ranks = non_dominated_sort(pts)
    return sorted(range(len(values)), key=lambda i: (ranks[i], pts[i, 0], i))[:k]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="examples/quickstart.yaml")
    p.add_argument("--archs", type=int, default=24)
    p.add_argument("--factors", type=float, nargs="+", default=[2.0, 4.0],
                   help="supernet steps per experience, as multiples of the training section's")
    p.add_argument("--finetune", type=int, nargs="+", default=[0],
                   help="fine-tuning steps per experience before scoring (0: inherited as is)")
    p.add_argument("--seeds", type=int, default=2, help="stand-alone training seeds per architecture")
    p.add_argument("--top", type=int, default=4, help="candidates confirmed stand-alone")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="override training.steps_per_experience")
    p.add_argument("--fixed-training", action="store_true",
                   help="training settings that are decisions take their first value (a supernet needs one)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    exp = load_experiment(args.config)
    if args.fixed_training and exp.space.training:
        fixed = {name: values[0] for name, values in exp.space.training}
        exp = dataclasses.replace(exp, space=dataclasses.replace(exp.space, training=()),
                                  training=dataclasses.replace(exp.training, **fixed))
    if args.steps:
        exp = dataclasses.replace(exp, training=dataclasses.replace(exp.training, steps_per_experience=args.steps))
    task = build_task(exp.task, seed=exp.training.seed)
    archs = draw(exp.space, task.shape, args.archs, args.seed)
    t0 = time.perf_counter()
    log = lambda msg: print(f"  [{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)

    alone = []
    for arch in archs:
        runs = [fit(arch, task, exp.training, seed=s) for s in range(args.seeds)]
        m = runs[0]
        alone.append({"arch": arch.summary(), "val": m.values[ACC], "test": m.values[TEST_ACC],
                      "flops": m.values[FLOPS], "wall_s": m.wall_time_s,
                      "val_seeds": [r.values[ACC] for r in runs], "test_seeds": [r.values[TEST_ACC] for r in runs]})
        log(f"stand-alone {arch.summary()}: val {' '.join(f'{v:.3f}' for v in alone[-1]['val_seeds'])} "
            f"({m.wall_time_s:.1f}s)")
    mean_val = [statistics.mean(a["val_seeds"]) for a in alone]
    ceiling = kendall([a["val_seeds"][0] for a in alone], [a["val_seeds"][1] for a in alone]) \
        if args.seeds > 1 else (float("nan"), float("nan"))
    seed_std = statistics.mean(statistics.stdev(a["val_seeds"]) for a in alone) if args.seeds > 1 else float("nan")
    max_flops = max(a["flops"] for a in alone)
    alone_wall = sum(a["wall_s"] for a in alone)
    alone_hv = front_hv([(a["val"], a["flops"]) for a in alone], max_flops)

    results = []
    for factor, finetune in [(f, s) for f in args.factors for s in args.finetune]:
        if finetune == args.finetune[0]:
            settings = SupernetSettings(factor=factor, seed=args.seed)
            net = train_supernet(exp.space, task, exp.training, settings)
            log(f"supernet x{factor:g}: {net.steps} steps, {net.paths} paths, {net.wall_time_s:.0f}s")
        inherited = []
        for arch in archs:
            start = time.perf_counter()
            m = evaluate_inherited(net, arch, task, exp.training, finetune_steps=finetune)
            inherited.append({"val": m.values[ACC], "test": m.values[TEST_ACC],
                              "wall_s": time.perf_counter() - start})
        tau_val, rho_val = kendall([a["val"] for a in alone], [i["val"] for i in inherited])
        tau_mean, _ = kendall(mean_val, [i["val"] for i in inherited])
        tau_test, _ = kendall([a["test"] for a in alone], [i["test"] for i in inherited])
        picked = top_k([(i["val"], a["flops"]) for i, a in zip(inherited, alone)], args.top)
        confirm_wall = sum(alone[i]["wall_s"] for i in picked)
        eval_wall = sum(i["wall_s"] for i in inherited)
        wall = net.wall_time_s + eval_wall + confirm_wall
        hv = front_hv([(alone[i]["val"], alone[i]["flops"]) for i in picked], max_flops)
        results.append({"factor": factor, "finetune": finetune, "tau_mean": tau_mean, "steps": net.steps, "paths": net.paths,
                        "train_s": net.wall_time_s, "eval_s": eval_wall, "confirm_s": confirm_wall,
                        "wall_s": wall, "tau_val": tau_val, "rho_val": rho_val, "tau_test": tau_test,
                        "hv": hv, "picked": picked, "inherited": inherited})
        log(f"supernet x{factor:g} ft {finetune}: tau {tau_val:.2f} (mean of seeds {tau_mean:.2f}) (test {tau_test:.2f}), HV {hv:.4f} vs {alone_hv:.4f}, "
            f"wall {wall:.0f}s vs {alone_wall:.0f}s")

    print(f"\n### Supernet vs stand-alone: {args.archs} architectures of {args.config}, "
          f"top {args.top} confirmed, seed {args.seed}, 1 thread\n")
    print("| evaluation | steps | Kendall τ (val, seed 0) | τ (val, mean of seeds) | Spearman ρ (val) | "
          "Kendall τ (test) | wall (s) | wall ratio | HV | HV vs stand-alone |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| stand-alone, {args.archs} trainings (seed 1 vs seed 0: the noise ceiling) | {args.archs} × "
          f"{exp.training.steps_per_experience * task.num_experiences} | {ceiling[0]:.2f} | | {ceiling[1]:.2f} | | "
          f"{alone_wall:.0f} | 1.00 | {alone_hv:.4f} | |")
    for r in results:
        how = "inherited" if not r["finetune"] else f"fine-tuned {r['finetune']} steps/exp"
        print(f"| supernet ×{r['factor']:g} ({r['train_s']:.0f} s) + {args.archs} {how} "
              f"({r['eval_s']:.0f} s) + top {args.top} ({r['confirm_s']:.0f} s) | {r['steps']} | "
              f"{r['tau_val']:.2f} | {r['tau_mean']:.2f} | {r['rho_val']:.2f} | {r['tau_test']:.2f} | {r['wall_s']:.0f} | "
              f"{alone_wall / r['wall_s']:.2f}× less | {r['hv']:.4f} | {100 * (r['hv'] / alone_hv - 1):+.1f}% |")
    spread = statistics.pstdev(a["val"] for a in alone)
    print(f"\nstand-alone validation accuracy: {min(a['val'] for a in alone):.3f}–"
          f"{max(a['val'] for a in alone):.3f} (std {spread:.3f} across architectures; "
          f"seed-to-seed std {seed_std:.3f})")
    if args.json:
        args.json.write_text(json.dumps({"config": args.config, "archs": [a for a in alone],
                                         "standalone_wall_s": alone_wall, "standalone_hv": alone_hv,
                                         "supernets": results}, indent=1))


if __name__ == "__main__":
    main()
