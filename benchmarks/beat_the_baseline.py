"""Can a searched architecture beat the textbook replay baseline? (issue 17)

    python -m benchmarks.beat_the_baseline [--tasks split_digits split_fashion_mnist]
        [--trials 24] [--seeds 3] [--steps 300] [--quick] [--pick ARCH_JSON]

Per task, with one protocol for every model (class-incremental 5 x 2, class-balanced
replay with the same buffer, the same steps, batch and learning rate):

1. the reference MLP (``mlp:400x2``: 64 -> 400 -> 400 -> 10 on digits) over
   ``--seeds`` seeds: mean ± std of the final average *test* accuracy;
2. a ``tpe`` search of ``--trials`` architectures over the extended space (tokens,
   stem, norm placement, head, identity attention, widths), every trial scored on the
   task's *validation* splits only (``fit``'s plain metrics are R_val; the search also
   trains on a view of the task whose test splits are its val splits, so nothing in its
   records comes from a test split);
3. the pick (best validation accuracy) re-trained over the same seeds: mean ± std of
   its test accuracy, and the margin over the MLP (a Welch t statistic beside it);
4. ER-ACE (``replay.loss: ace``) against plain replay: for the MLP, and for the pick
   with ``--ace-pick``.

A seed draws the task's split and class order and the training. The table goes to
stdout as Markdown; ``--json`` writes every number.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynas.controllers.run.in_process import run_local
from dynas.controllers.policies import make_policy
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig
from dynas.search_space.constraints import is_feasible
from dynas.search_space.reference import parse_reference
from dynas.search_space.settings import Objective, ReplaySettings, SearchSettings, TaskSettings, TrainingSettings
from dynas.search_space.space import parse_space
from dynas.trainers.fitting import fit
from dynas.trainers.tasks import build_task

ACC = names.FINAL_AVG_ACCURACY
# per task: task options, replay buffer (samples in total), the tokenisations searched
# (Fashion-MNIST leaves out patch4: 49 tokens cost more CPU than this benchmark has)
TASKS = {
    "split_digits": ({}, 200, ["task", "rows", "patch4", "whole"]),
    "split_fashion_mnist": ({"train_per_class": 600, "test_per_class": 300}, 1000,
                            ["task", "rows", "whole"]),
}
BASELINE = "mlp:400x2"
SPACE = {
    "layers": [1, 2],
    "d_model": [64, 128],
    "stem": ["linear", "mlp"],
    "norm": ["pre", "post"],
    "head": ["mean", "cls", "flatten"],
    "layer": {"attention": [{"kind": "full", "heads": 4}, {"kind": "identity"}],
              "ffn": {"kind": "dense", "expansion": [2, 4]}},
}


def training(steps: int, budget: int, loss: str = "plain") -> TrainingSettings:
    return TrainingSettings(steps_per_experience=steps, batch_size=128, lr=1e-3, device="cpu",
                            replay=ReplaySettings("class_balanced", budget, loss=loss))


def validation_view(task):
    """The task with each experience's test split replaced by its val split: what a
    search may look at."""
    return dataclasses.replace(task, experiences=[dataclasses.replace(e, test=e.val)
                                                  for e in task.experiences])


def confirm(model, task_name: str, options: dict, cfg: TrainingSettings, seeds: range,
            log) -> list[float]:
    """Test accuracy of ``model`` trained once per seed (task and training seeded)."""
    out = []
    for seed in seeds:
        task = build_task(TaskSettings(task_name, options), seed=seed)
        t0 = time.perf_counter()
        acc = fit(model, task, cfg, seed=seed).values[names.as_test(ACC)]
        out.append(acc)
        log(f"{model.summary()} seed {seed} {cfg.replay.loss}: test {100 * acc:.1f} "
            f"({time.perf_counter() - t0:.0f}s)")
    return out


def search(task_name: str, options: dict, tokens: list[str], cfg: TrainingSettings, trials: int, log,
           d_model: list[int] | None = None):
    """TPE over SPACE scored on validation accuracy; returns (pick, its val acc, rows)."""
    space = parse_space({**SPACE, "tokens": tokens, **({"d_model": d_model} if d_model else {})})
    task = validation_view(build_task(TaskSettings(task_name, options), seed=0))
    objectives = (Objective(ACC, "max"),)
    policy = make_policy("tpe", space, objectives, 0, SearchSettings(strategy="tpe", trials=trials))

    def evaluate(arch):
        t0 = time.perf_counter()
        metrics = fit(arch, task, cfg, seed=0)
        log(f"trial {arch.summary()}: val {100 * metrics.values[ACC]:.1f} ({time.perf_counter() - t0:.0f}s)")
        return "complete", dict(metrics.values), {"wall_time_s": metrics.wall_time_s}

    with tempfile.TemporaryDirectory(prefix="beat-") as run_dir:
        records = run_local(space, evaluate, policy, objectives, run_dir, trials, seed=0,
                            feasible=lambda a: is_feasible(a, task.shape, None))
    done = [r for r in records if r.state == "complete" and r.cached_from is None]
    best = max(done, key=lambda r: r.metrics[ACC])
    return ArchConfig.from_dict(best.arch), best.metrics[ACC], done


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def welch_t(a: list[float], b: list[float]) -> float:
    """(mean a - mean b) / sqrt(var a / n + var b / m); nan with fewer than 2 each."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    diff = statistics.mean(a) - statistics.mean(b)
    return diff / se if se > 0 else math.copysign(math.inf, diff) if diff else 0.0


def run_task(task_name: str, args, log) -> dict:
    options, budget, tokens = TASKS[task_name]
    tokens = args.tokens or tokens
    seeds = range(args.seeds)
    plain, ace = training(args.steps, budget), training(args.steps, budget, "ace")
    mlp = parse_reference(BASELINE, "baseline")
    started = time.perf_counter()
    result = {"task": task_name, "options": options, "steps": args.steps, "budget": budget,
              "mlp": {"plain": confirm(mlp, task_name, options, plain, seeds, log)}}
    if args.pick is None:
        pick, val, trials = search(task_name, options, tokens, plain, args.trials, log, args.d_model)
    else:                                  # confirm an earlier search's pick only
        pick, val, trials = ArchConfig.load(args.pick), math.nan, []
    result.update(pick=pick.to_dict(), pick_summary=pick.summary(), pick_val=val,
                  trials=[{"arch": r.arch, "val": r.metrics[ACC]} for r in trials])
    result["pick_test"] = {"plain": confirm(pick, task_name, options, plain, seeds, log)}
    if not args.no_ace:
        result["mlp"]["ace"] = confirm(mlp, task_name, options, ace, seeds, log)
    if args.ace_pick:
        result["pick_test"]["ace"] = confirm(pick, task_name, options, ace, seeds, log)
    result["wall_s"] = time.perf_counter() - started
    return result


def table(results: list[dict]) -> str:
    rows = ["| task | model | replay | test acc (%) | margin vs MLP (points) | Welch t |",
            "|---|---|---|---:|---:|---:|"]
    for r in results:
        for loss in r["mlp"]:
            base = r["mlp"][loss]
            rows.append(f"| {r['task']} | {BASELINE} | {loss} | {cell(base)} | | |")
            if loss not in r["pick_test"]:
                continue
            pick = r["pick_test"][loss]
            margin = 100 * (statistics.mean(pick) - statistics.mean(base))
            name = r["pick_summary"].replace("|", "\\|")
            rows.append(f"| {r['task']} | pick `{name}` | {loss} | {cell(pick)} | "
                        f"{margin:+.1f} | {welch_t(pick, base):.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300, help="steps per experience")
    p.add_argument("--no-ace", action="store_true", help="skip the MLP's ER-ACE row")
    p.add_argument("--ace-pick", action="store_true", help="also train the pick with ER-ACE")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 trials, 2 seeds, 20 steps")
    p.add_argument("--pick", type=Path, help="skip the search: confirm this arch.json (one task)")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--d-model", type=int, nargs="+", help="the widths searched (default: 64 128)")
    p.add_argument("--tokens", nargs="+", help="the tokenisations searched (default: the task's list in TASKS)")
    args = p.parse_args(argv)
    if args.quick:
        args.trials, args.seeds, args.steps = 3, 2, 20
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    log = lambda msg: print(f"  [{time.perf_counter() - t0:6.0f}s] {msg}", flush=True)
    results = []
    for task_name in args.tasks:
        results.append(run_task(task_name, args, log))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    print(f"\n### Searched pick vs the MLP: {args.trials} tpe trials selected on validation, "
          f"{args.seeds} seeds, {args.steps} steps/experience, batch 128, lr 1e-3, "
          "class-balanced replay\n")
    print(table(results))
    for r in results:
        print(f"\n{r['task']}: pick {r['pick_summary']} (val {100 * r['pick_val']:.1f}), "
              f"{len(r['trials'])} trials, {r['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
