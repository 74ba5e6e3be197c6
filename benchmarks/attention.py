"""Sliding-window (segmented) attention vs full attention: forward + backward time.

    python -m benchmarks.attention [--threads 2] [--window 256] [--lengths 1024 4096 8192]
                                   [--device cuda]

Targets (non-causal and causal alike): sliding / full <= 0.6 at T=4096, <= 0.35 at
T=8192. ``--extra`` adds dynamic-span (max_span = window) and linear attention rows.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks._timing import (contention_probe, forward_backward, median_seconds,
                                print_table, setup, synchronizer, where)
from dynas.trainers.modules import (DynamicSpanAttention, FullAttention, LinearAttention,
                              SlidingWindowAttention)

TARGETS = {4096: 0.6, 8192: 0.35}
HEADER = ("T", "causal", "kind", "full ms", "kind ms", "ratio", "target", "")


def table(*, lengths: list[int] = (1024, 4096, 8192), window: int = 256, batch: int = 1,
          d_model: int = 256, heads: int = 4, repeats: int = 5, extra: bool = False,
          device: str | torch.device = "cpu", threads: int | None = None) -> tuple[str, list[tuple]]:
    """(title, rows of ``HEADER``): each kind against full attention on ``device``."""
    d, h, w = d_model, heads, window
    rows = []
    for causal in (False, True):
        kinds = {
            "full": FullAttention(d, h, causal=causal),
            "sliding_window": SlidingWindowAttention(d, h, w, causal=causal),
        }
        if extra:
            kinds["dynamic_span"] = DynamicSpanAttention(d, h, w, causal=causal)
            kinds["linear"] = LinearAttention(d, h, causal=causal)
        kinds = {name: m.to(device) for name, m in kinds.items()}
        for t in lengths:
            x = torch.randn(batch, t, d, device=device)
            times = median_seconds(
                {name: forward_backward(m, x, lambda o: o[0]) for name, m in kinds.items()},
                warmup=1, repeats=repeats, sync=synchronizer(device))
            for name, sec in times.items():
                if name == "full":
                    continue
                ratio = sec / times["full"]
                target = TARGETS.get(t) if name == "sliding_window" else None
                verdict = "" if target is None else ("ok" if ratio <= target else "MISSED")
                rows.append((t, causal, name, times["full"] * 1e3, sec * 1e3, ratio,
                             f"<= {target}" if target else "-", verdict))
    title = (f"attention fwd+bwd, B={batch} D={d} H={h} window={w} {where(device, threads)} "
             f"(median of {repeats})")
    return title, rows


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
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)
    setup(args.threads)
    title, rows = table(lengths=args.lengths, window=args.window, batch=args.batch,
                        d_model=args.d_model, heads=args.heads, repeats=args.repeats,
                        extra=args.extra, device=args.device, threads=args.threads)
    print(f"contention probe (16 small / 1 big matmul, ~1 when quiet): "
          f"{contention_probe():.2f}")
    print_table(title, HEADER, rows)


if __name__ == "__main__":
    main()
