"""Sliding-window (segmented) attention vs full attention: forward + backward time.

    python -m benchmarks.attention [--threads 2] [--window 256] [--lengths 1024 4096 8192]

Targets (non-causal and causal alike): sliding / full <= 0.6 at T=4096, <= 0.35 at
T=8192. ``--extra`` adds dynamic-span (max_span = window) and linear attention rows.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks._timing import (contention_probe, forward_backward, median_seconds,
                                print_table, setup)
from dynas.trainers.modules import (DynamicSpanAttention, FullAttention, LinearAttention,
                              SlidingWindowAttention)

TARGETS = {4096: 0.6, 8192: 0.35}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8192])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--extra", action="store_true", help="also time dynamic span and linear")
    args = p.parse_args(argv)
    setup(args.threads)
    d, h, w = args.d_model, args.heads, args.window
    rows = []
    for causal in (False, True):
        kinds = {
            "full": FullAttention(d, h, causal=causal),
            "sliding_window": SlidingWindowAttention(d, h, w, causal=causal),
        }
        if args.extra:
            kinds["dynamic_span"] = DynamicSpanAttention(d, h, w, causal=causal)
            kinds["linear"] = LinearAttention(d, h, causal=causal)
        for t in args.lengths:
            x = torch.randn(args.batch, t, d)
            times = median_seconds(
                {name: forward_backward(m, x, lambda o: o[0]) for name, m in kinds.items()},
                warmup=1, repeats=args.repeats)
            for name, sec in times.items():
                if name == "full":
                    continue
                ratio = sec / times["full"]
                target = TARGETS.get(t) if name == "sliding_window" else None
                verdict = "" if target is None else ("ok" if ratio <= target else "MISSED")
                rows.append((t, causal, name, times["full"] * 1e3, sec * 1e3, ratio,
                             f"<= {target}" if target else "-", verdict))
    print(f"contention probe (16 small / 1 big matmul, ~1 when quiet): "
          f"{contention_probe():.2f}")
    print_table(f"attention fwd+bwd, B={args.batch} D={d} H={h} window={w} "
                f"threads={args.threads} (median of {args.repeats})",
                ("T", "causal", "kind", "full ms", "kind ms", "ratio", "target", ""), rows)


if __name__ == "__main__":
    main()
