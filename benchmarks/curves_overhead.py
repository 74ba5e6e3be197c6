"""What keeping a trial's TensorBoard curves costs: ``fit`` with and without ``log_dir``.

    python -m benchmarks.curves_overhead [--repeats 5] [--threads 1]

One quickstart trial (examples/quickstart.yaml's training settings on Split-Digits: 5
experiences x 60 steps, batch 64, class-balanced replay of 200) of a 2-layer MoE
architecture, run without curves, with the default ``log_every: 10`` and with
``log_every: 1`` (the worst case). Runs alternate so machine load hits all alike;
times are process CPU seconds (the event writer's thread included), which a shared
machine disturbs far less than wall time. Prints medians, the ratio to no curves and
the size of a trial's event files. Target: <= 3% at the default.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.experiment import load_experiment
from dynas.trainers.fitting import fit
from dynas.trainers.tasks import build_task

TARGET = 0.03
ROOT = Path(__file__).resolve().parents[1]


def quickstart_arch() -> ArchConfig:
    moe = FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2), balance="aux_loss",
                    shared_experts=1)
    return ArchConfig(64, (LayerConfig(AttentionConfig("full", 4), moe),
                           LayerConfig(AttentionConfig("sliding_window", 4, window=4), moe)))


def one_fit(arch, task, training, log_every: int | None) -> tuple[float, int]:
    """CPU seconds of one fit, and the bytes of its event files."""
    cfg = dataclasses.replace(training, log_every=log_every or 10)
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp) / "curves" if log_every else None
        start = time.process_time()
        fit(arch, task, cfg, log_dir=log_dir)
        cpu = time.process_time() - start
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    return cpu, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    experiment = load_experiment(ROOT / "examples" / "quickstart.yaml")
    training = dataclasses.replace(experiment.training, device="cpu")
    task = build_task(experiment.task, seed=training.seed)
    arch = quickstart_arch()
    variants = {"no curves": None, "log_every 10 (default)": 10, "log_every 1": 1}
    one_fit(arch, task, training, None)                       # warm-up: imports, allocator
    times = {name: [] for name in variants}
    sizes = {name: 0 for name in variants}
    for _ in range(args.repeats):
        for name, every in variants.items():
            cpu, size = one_fit(arch, task, training, every)
            times[name].append(cpu)
            sizes[name] = size
    base = statistics.median(times["no curves"])
    print(f"one quickstart trial, {args.repeats} repeats, {args.threads} thread(s), CPU seconds")
    print(f"{'variant':24s} {'median s':>9s} {'ratio':>7s} {'event files':>12s}  all")
    for name in variants:
        med = statistics.median(times[name])
        print(f"{name:24s} {med:9.2f} {med / base:7.3f} {sizes[name]:>10d} B  "
              + " ".join(f"{t:.2f}" for t in times[name]))
    overhead = statistics.median(times["log_every 10 (default)"]) / base - 1
    print(f"default overhead {overhead:+.1%} (target <= {TARGET:.0%}): "
          f"{'met' if overhead <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
