"""bf16 autocast vs fp32 on CPU: per block kind, and one whole quickstart trial.

    python -m benchmarks.precision [--threads 1] [--repeats 7] [--seeds 0 1 2] [--skip-trial]

Blocks: forward + backward of one transformer block (batch 32, T = 64, d_model 128,
4 heads): the attention kinds (full, sliding_window w=16, dynamic_span max 32) with a
dense x2 FFN, and the FFN kinds (dense x2, MoE of 4 experts top-2 with a shared
expert) behind an identity token mixer. fp32 and ``torch.autocast("cpu", bfloat16)``
are timed round-robin in one process; medians of ``--repeats``.

Trial: ``fit`` of the quickstart architecture (``benchmarks.curves_overhead``) with
examples/quickstart.yaml's training settings on Split-Digits, ``training.precision``
fp32 and bf16 alternating per seed; process CPU seconds and final average accuracy
(validation and test), mean and std over the seeds. The contention probe is printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from benchmarks._timing import contention_probe, forward_backward, median_seconds, print_table, setup
from benchmarks.curves_overhead import quickstart_arch
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig, TaskShape
from dynas.search_space.experiment import load_experiment
from dynas.search_space.names import FINAL_AVG_ACCURACY, TEST_PREFIX
from dynas.trainers.fitting import fit
from dynas.trainers.model import build_model
from dynas.trainers.precision import autocast
from dynas.trainers.tasks import build_task

ROOT = Path(__file__).resolve().parents[1]
DENSE = FFNConfig("dense", 2)
MOE = FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2), shared_experts=1,
                balance="aux_loss")
BLOCKS = {
    "full attention": LayerConfig(AttentionConfig("full", 4), DENSE),
    "sliding_window attention": LayerConfig(AttentionConfig("sliding_window", 4, window=16), DENSE),
    "dynamic_span attention": LayerConfig(AttentionConfig("dynamic_span", 4, max_span=32), DENSE),
    "dense FFN": LayerConfig(AttentionConfig("identity", 1), DENSE),
    "MoE FFN": LayerConfig(AttentionConfig("identity", 1), MOE),
}
BLOCK_HEADER = ("block", "fp32 ms", "bf16 ms", "bf16 / fp32")
TRIAL_HEADER = ("precision", "CPU s (mean ± std)", "val acc (mean ± std)", "test acc (mean ± std)",
                "per seed val acc")


def _under(precision: str, step):
    def run() -> None:
        with autocast(precision, "cpu"):
            step()
    return run


def block_rows(*, batch: int = 32, seq_len: int = 64, d_model: int = 128,
               repeats: int = 7) -> list[tuple]:
    """(block, fp32 ms, bf16 ms, ratio) per block kind, timed round-robin."""
    rows = []
    shape = TaskShape(seq_len=seq_len, num_classes=10, input_dim=8)
    for name, layer in BLOCKS.items():
        block = build_model(ArchConfig(d_model, (layer,)), shape).layers[0]
        x = torch.randn(batch, seq_len, d_model)
        step = forward_backward(block, x, lambda out: out.x)
        t = median_seconds({p: _under(p, step) for p in ("fp32", "bf16")}, repeats=repeats)
        rows.append((name, t["fp32"] * 1e3, t["bf16"] * 1e3, t["bf16"] / t["fp32"]))
    return rows


def _mean_std(xs: list[float], scale: float = 1.0, digits: int = 2) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs) * scale:.{digits}f} ± {sd * scale:.{digits}f}"


def trial_rows(seeds: list[int]) -> list[tuple]:
    """One quickstart trial per (seed, precision), the precisions alternating."""
    experiment = load_experiment(ROOT / "examples" / "quickstart.yaml")
    training = dataclasses.replace(experiment.training, device="cpu")
    task = build_task(experiment.task, seed=training.seed)
    arch = quickstart_arch()
    got: dict[str, dict[str, list[float]]] = {p: {"cpu": [], "val": [], "test": []}
                                             for p in ("fp32", "bf16")}
    for seed in seeds:
        for precision, runs in got.items():
            start = time.process_time()
            m = fit(arch, task, dataclasses.replace(training, precision=precision), seed=seed)
            runs["cpu"].append(time.process_time() - start)
            runs["val"].append(m.values[FINAL_AVG_ACCURACY])
            runs["test"].append(m.values[TEST_PREFIX + FINAL_AVG_ACCURACY])
    return [(p, _mean_std(r["cpu"], digits=1), _mean_std(r["val"], 100, 1), _mean_std(r["test"], 100, 1),
             " ".join(f"{a * 100:.1f}" for a in r["val"])) for p, r in got.items()]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--skip-trial", action="store_true", help="only the per-block table")
    args = p.parse_args(argv)
    setup(args.threads)
    print(f"contention probe (16 small / 1 big matmul, ~1 when quiet): {contention_probe():.2f}")
    print(f"CPU bf16 support: {torch.backends.mkldnn.is_available()=} "
          f"{torch.backends.cpu.get_cpu_capability()=}")
    print_table(f"block fwd+bwd, batch 32, T=64, d_model 128, threads={args.threads} "
                f"(median of {args.repeats})", BLOCK_HEADER, block_rows(repeats=args.repeats))
    if not args.skip_trial:
        print_table(f"quickstart trial, seeds {args.seeds}, threads={args.threads}", TRIAL_HEADER,
                    trial_rows(args.seeds))
        print(f"contention probe after: {contention_probe():.2f}")


if __name__ == "__main__":
    main()
