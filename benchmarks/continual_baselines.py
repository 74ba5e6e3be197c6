"""Continual-learning baselines with one fixed small architecture, 5x2 class-IL.

    python -m benchmarks.continual_baselines [--quick] [--seeds 3] [--tasks split_digits ...]

Methods: fine-tuning (no memory), experience replay (reservoir buffer mixed into
every step), joint training on all experiences (the upper bound), and the entropy
curriculum against its random-order twin (both with the same replay). Each cell is
mean +- std over seeds; a seed draws the task's split and class order-independent
data subsample and the training. Expect fine-tuning near 1/5 (only the last
experience's two classes survive) and replay far above it.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import CurriculumSettings, ReplaySettings, TaskSettings, TrainingSettings
from dynas.trainers.fitting import fit
from dynas.trainers.tasks import build_task

# per task: steps per experience and the replay budget (samples in total)
FULL = {"split_digits": (300, 200), "split_fashion_mnist": (300, 1000)}
QUICK = {"split_digits": (30, 200), "split_fashion_mnist": (20, 1000)}
COLUMNS = (names.FINAL_AVG_ACCURACY, names.FORGETTING_LAST, names.LEARNING_ACCURACY)


def arch() -> ArchConfig:
    layer = LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2))
    return ArchConfig(64, (layer, layer))


def methods(steps: int, budget: int) -> dict[str, TrainingSettings]:
    base = TrainingSettings(steps_per_experience=steps, batch_size=64, lr=3e-3, device="cpu")
    replay = ReplaySettings("reservoir", budget)
    # a stage lasts at most a quarter of the experience, so the last quarter or more
    # always sees all the data even when promotion by accuracy stalls
    curriculum = CurriculumSettings(kind="entropy", pacing="sqrt", levels=3, threshold=0.9,
                                    patience=2, eval_every=max(1, steps // 12),
                                    max_stage_steps=max(1, steps // 4))
    return {
        "fine-tuning": base,
        f"replay (reservoir, {budget})": dataclasses.replace(base, replay=replay),
        "joint (upper bound)": dataclasses.replace(base, joint=True),
        "replay + entropy curriculum": dataclasses.replace(base, replay=replay, curriculum=curriculum),
        "replay + random-order twin": dataclasses.replace(
            base, replay=replay, curriculum=dataclasses.replace(curriculum, kind="random")),
    }


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few steps, one seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tasks", nargs="+", default=list(FULL))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = range(1 if args.quick else args.seeds)
    table = QUICK if args.quick else FULL
    started = time.perf_counter()
    for task_name in args.tasks:
        steps, budget = table[task_name]
        results: dict[str, list[dict]] = {}
        for seed in seeds:
            task = build_task(TaskSettings(task_name), seed=seed)
            for method, cfg in methods(steps, budget).items():
                t0 = time.perf_counter()
                metrics = fit(arch(), task, cfg, seed=seed)
                results.setdefault(method, []).append(metrics.values)
                print(f"  [{time.perf_counter() - started:6.0f}s] {task_name} seed {seed} {method}: "
                      f"final {metrics.values[names.FINAL_AVG_ACCURACY]:.3f} "
                      f"({time.perf_counter() - t0:.0f}s)", flush=True)
        n = len(list(seeds))
        print(f"\n### {task_name}: 5x2 class-IL, {steps} steps/experience, batch 64, "
              f"d_model 64 x 2 layers (full attention, dense FFN), {n} seed(s)\n")
        print("| method | final avg acc (%) | forgetting (%) | learning acc (%) |")
        print("|---|---:|---:|---:|")
        for method, runs in results.items():
            print(f"| {method} | " + " | ".join(cell([r[c] for r in runs]) for c in COLUMNS) + " |")
        print(flush=True)


if __name__ == "__main__":
    main()
