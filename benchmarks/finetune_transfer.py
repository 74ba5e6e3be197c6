"""Fine-tuning from searched weights vs training from scratch, at equal steps.

    python -m benchmarks.finetune_transfer [--quick] [--seeds 3] [--steps 100]

1. A small random search on Split-Digits (patch 2: 16 tokens of 4 pixels) keeps its
   models (``keep_weights: front``); the best-accuracy pick is exported with weights.
2. That architecture is trained on Split-Fashion-MNIST (patch 7: 16 tokens of 49) for
   the same steps, from scratch and ``--init-from`` the export, one seed per row pair
   (the seed draws the training; the Fashion split is fixed). The embedding does not
   transfer (4 -> 49 inputs); positions (16 tokens), blocks, norm and the 10-class
   head do. Both arms use the same reservoir replay. The search's own training is not
   counted in the fine-tune's steps: the comparison is "same budget downstream".

Prints mean ± std over seeds of the final average accuracy, the learning accuracy
(mean of R[j][j]) and the first experience's accuracy right after training it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from dynas.analysis.export import export_arch
from dynas.controllers.runs import run_local_experiment
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.settings import ReplaySettings, TaskSettings, TrainingSettings
from dynas.trainers.downstream import train_arch

SPACE = {"layers": [1, 2], "d_model": [32, 64], "layer": {
    "attention": [{"kind": "full", "heads": [2, 4]}, {"kind": "sliding_window", "heads": [2, 4], "window": [8]}],
    "ffn": [{"kind": "dense", "expansion": [2, 4]}, {"kind": "moe", "experts": [4], "top_k": [1], "expansion": 2}]}}
FASHION = TaskSettings("split_fashion_mnist", {"patch": 7, "train_per_class": 500, "test_per_class": 200})


def search_and_export(work: Path, trials: int, steps: int) -> Path:
    experiment = parse_experiment({
        "space": SPACE, "task": {"name": "split_digits", "options": {"patch": 2}},
        "training": {"steps_per_experience": steps, "batch_size": 64, "device": "cpu",
                     "replay": {"policy": "reservoir", "budget": 200}},
        "search": {"strategy": "random", "trials": trials, "seed": 0, "keep_weights": "front"}})
    run_local_experiment(experiment, work / "search")
    export_arch(work / "search", "best-accuracy", work / "export", weights=True)
    return work / "export"


def cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps per experience downstream")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials, search_steps, steps = (2, 10, 5) if args.quick else (4, 150, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        export = search_and_export(work, trials, search_steps)
        arch = ArchConfig.load(export / "arch.json")
        print(f"searched on Split-Digits: picked {arch.arch_id} ({len(arch.layers)} layers, d_model "
              f"{arch.d_model}) in {time.perf_counter() - started:.0f} s")
        cfg = TrainingSettings(steps_per_experience=steps, batch_size=64, device="cpu",
                               replay=ReplaySettings("reservoir", 500))
        rows: dict[str, dict[str, list[float]]] = {}
        for seed in range(args.seeds):
            for arm, init in (("scratch", None), ("fine-tune from search", export)):
                m = train_arch(arch, FASHION, cfg, out_dir=work / f"{arm[:4]}-{seed}", seed=seed, init_from=init)
                cols = rows.setdefault(arm, {})
                for key, value in ((names.FINAL_AVG_ACCURACY, m.values[names.FINAL_AVG_ACCURACY]),
                                   (names.LEARNING_ACCURACY, m.values[names.LEARNING_ACCURACY]),
                                   ("R[0][0]", m.acc_matrix[0][0])):
                    cols.setdefault(key, []).append(value)
        print(f"\nSplit-Fashion-MNIST, {steps} steps x 5 experiences, {args.seeds} seeds (mean ± std, %)")
        keys = (names.FINAL_AVG_ACCURACY, names.LEARNING_ACCURACY, "R[0][0]")
        print("| arm | " + " | ".join(keys) + " |\n|---|" + "---|" * len(keys))
        for arm, cols in rows.items():
            print(f"| {arm} | " + " | ".join(cell(cols[k]) for k in keys) + " |")
        base, tuned = rows["scratch"], rows["fine-tune from search"]
        gain = [t - b for t, b in zip(tuned[names.FINAL_AVG_ACCURACY], base[names.FINAL_AVG_ACCURACY])]
        print(f"\nfine-tune - scratch, {names.FINAL_AVG_ACCURACY} per seed: "
              + ", ".join(f"{100 * g:+.1f}" for g in gain))
        print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
