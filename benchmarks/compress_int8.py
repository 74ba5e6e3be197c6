"""``dynas compress`` on properly trained models: pruning + recovery + int8 vs the original.

    python -m benchmarks.compress_int8 [--quick] [--tasks split_digits split_fashion_mnist]

Per task: one dense transformer (2 layers, d_model 128, 4 heads, FFN x4) trained with
reservoir replay, 5 x 2 class-IL; then three compressions measured in the same process
on one CPU thread: int8 only; heads=2,ffn=0.5 + 200 distillation steps; the same + int8
(defaults; --steps, --recover-steps, --repeats change them). Each table row is params,
weights file size, batch-1 and batch-64 CPU latency (median of the repeats) and test accuracy (mean over experiences of the final row of R). Targets:
int8 >= 2x smaller, >= 1.3x faster at batch 64, <= 1 point accuracy lost; the design
documents' claim is 99.2% of accuracy kept under int8.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import ReplaySettings, TaskSettings, TrainingSettings
from dynas.trainers.compress import compress, table
from dynas.trainers.downstream import train_arch
from dynas.trainers.pruning import PruneSpec
from dynas.trainers.recovery_settings import RecoverySettings
from dynas.trainers.tasks import build_task

TASKS = {"split_digits": TaskSettings("split_digits", {"patch": 2}),
         "split_fashion_mnist": TaskSettings("split_fashion_mnist", {"patch": 7, "train_per_class": 1000,
                                                                      "test_per_class": 500})}


def arch() -> ArchConfig:
    layer = LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=4))
    return ArchConfig(128, (layer, layer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--steps", type=int, default=300, help="training steps per experience")
    parser.add_argument("--recover-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps, repeats, recover_steps = (20, 5, 10) if args.quick else (args.steps, args.repeats, args.recover_steps)
    cfg = TrainingSettings(steps_per_experience=steps, batch_size=64, device="cpu",
                           replay=ReplaySettings("reservoir", 500))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.tasks:
            settings = TASKS[name]
            model_dir = Path(tmp) / name
            metrics = train_arch(arch(), settings, cfg, out_dir=model_dir)
            task = build_task(settings, seed=cfg.seed)
            print(f"\n## {name}: trained {steps} steps x {task.num_experiences} experiences, "
                  f"final_avg_accuracy {100 * metrics.values['final_avg_accuracy']:.2f}")
            for label, spec, int8 in (("int8", PruneSpec(), True),
                                      ("prune heads=2,ffn=0.5", PruneSpec(heads=2, ffn=0.5), False),
                                      ("prune heads=2,ffn=0.5 + int8", PruneSpec(heads=2, ffn=0.5), True)):
                recovery = RecoverySettings(steps=recover_steps, batch_size=cfg.batch_size)
                rows = compress(model_dir, task, Path(tmp) / f"{name}-{label}", spec, int8, recovery, repeats)
                kept = rows[-1].accuracy / rows[0].accuracy
                print(f"\n### {label} (accuracy kept: {100 * kept:.1f}% of the original)\n{table(rows)}")


if __name__ == "__main__":
    main()
