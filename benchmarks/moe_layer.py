"""MoE layer vs a dense FFN of equal active size and vs a naive MoE: forward + backward.

    python -m benchmarks.moe_layer [--threads 2] [--tokens 4096] [--repeats 7] [--device cuda]
    python -m benchmarks.moe_layer --sweep [--sizes default small] [--repeats 7]

Defaults: 4096 tokens, D=256, expert hidden F=512, E=8, k=2 (top-k router, dropless).
Baselines measured in the same run:
  * dense FFN with hidden k * F = 1024 (the same active parameters per token);
    target: MoE / dense <= 1.10 at one thread, <= 1.5 under contention (probe > 2);
  * the same MoE with its experts forced through the per-expert loop and through
    the padded bmm (``grouped.use_padded`` picks one: "ours"), to show both;
  * naive MoE: every expert on every token, outputs masked by the same gates;
    target: naive / ours >= 4.

``--sweep`` prints one table per size, threads 1 and 2, each with and without a busy
second core (a separate process looping 1-thread matmuls), and the contention probe
measured in each setting.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._busy import busy_core
from benchmarks._timing import (contention_probe, forward_backward, median_seconds,
                                print_table, setup, synchronizer, where)
from dynas.trainers.modules import MoE, DenseFFN, ExpertGroup, TopKRouter

HEADER = ("layer", "ms", "ratio", "target", "")
SIZES = {"default": dict(tokens=4096, d_model=256, hidden=512, experts=8, top_k=2),
         "small": dict(tokens=1024, d_model=64, hidden=128, experts=16, top_k=2)}
SWEEP_HEADER = ("threads", "second core", "probe", "ours ms", "dense ms", "ours/dense",
                "loop/dense", "padded/dense", "naive/ours", "target", "")


class ForcedPath(nn.Module):
    """An expert group forced through one path, ``loop`` or ``padded`` (shares its
    parameters), whatever ``grouped.use_padded`` would choose."""

    def __init__(self, experts: nn.Module, path: str):
        super().__init__()
        self.inner, self.path = experts, path
        self.num_experts = experts.num_experts

    def forward(self, x: Tensor, counts: list[int]) -> Tensor:
        return getattr(self.inner, self.path)(x, counts)


class NaiveMoE(nn.Module):
    """The reference we must beat: all E experts on all N tokens, then gate-weighted.
    Shares the parameters of ``moe`` so both compute the same function."""

    def __init__(self, moe: MoE):
        super().__init__()
        self.moe = moe

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        flat = x.reshape(b * t, d)                                     # (N, D)
        route = self.moe.router(flat)
        ex = self.moe.experts
        gates = torch.zeros(flat.shape[0], ex.num_experts, dtype=x.dtype, device=x.device)  # (N, E)
        gates = gates.scatter(1, route.experts, route.weights * route.valid)
        xs = flat.unsqueeze(0).expand(ex.num_experts, -1, -1)          # (E, N, D)
        h = F.gelu(torch.baddbmm(ex.b_up.unsqueeze(1), xs, ex.w_up))   # (E, N, F)
        y = torch.baddbmm(ex.b_down.unsqueeze(1), h, ex.w_down)        # (E, N, D)
        out = (y * gates.t().unsqueeze(-1)).sum(0)                     # (N, D)
        return out.view(b, t, d)


def _times(*, tokens, d_model, hidden, experts, top_k, repeats, device) -> dict[str, float]:
    """Median fwd+bwd seconds of ours, both expert paths, the dense FFN, the naive MoE."""
    d, f, e, k = d_model, hidden, experts, top_k
    moe = MoE(ExpertGroup(e, d, f), TopKRouter(d, e, k)).to(device)
    loop = MoE(ForcedPath(moe.experts, "loop"), moe.router)
    padded = MoE(ForcedPath(moe.experts, "padded"), moe.router)
    dense = DenseFFN(d, k * f).to(device)
    x = torch.randn(1, tokens, d, device=device)
    return median_seconds({
        "moe (ours)": forward_backward(moe, x, lambda o: o.out),
        "moe (loop)": forward_backward(loop, x, lambda o: o.out),
        "moe (padded)": forward_backward(padded, x, lambda o: o.out),
        "dense FFN": forward_backward(dense, x),
        "naive MoE": forward_backward(NaiveMoE(moe), x),
    }, warmup=2, repeats=repeats, sync=synchronizer(device))


def table(*, tokens: int = 4096, d_model: int = 256, hidden: int = 512, experts: int = 8,
          top_k: int = 2, repeats: int = 7, device: str | torch.device = "cpu",
          threads: int | None = None) -> tuple[str, list[tuple]]:
    """(title, rows of ``HEADER``): the four layers timed on ``device`` in one run."""
    times = _times(tokens=tokens, d_model=d_model, hidden=hidden, experts=experts,
                   top_k=top_k, repeats=repeats, device=device)
    ours, dense = times["moe (ours)"], times["dense FFN"]
    target = 1.10 if threads == 1 else 1.25
    rows = [
        ("moe (ours)", ours * 1e3, 1.0, "-", ""),
        ("dense FFN", dense * 1e3, ours / dense, f"ours/dense <= {target}",
         "ok" if ours / dense <= target else "MISSED"),
        ("moe (loop)", times["moe (loop)"] * 1e3, times["moe (loop)"] / dense, "loop/dense", ""),
        ("moe (padded)", times["moe (padded)"] * 1e3, times["moe (padded)"] / dense,
         "padded/dense", ""),
        ("naive MoE", times["naive MoE"] * 1e3, times["naive MoE"] / ours, "naive/ours >= 4",
         "ok" if times["naive MoE"] / ours >= 4 else "MISSED"),
    ]
    title = (f"MoE fwd+bwd, N={tokens} D={d_model} F={hidden} E={experts} k={top_k} "
             f"dense F={top_k * hidden} {where(device, threads)} (median of {repeats})")
    return title, rows


def sweep(size: dict, repeats: int) -> tuple[str, list[tuple]]:
    """(title, rows of ``SWEEP_HEADER``): threads 1 and 2, second core idle and busy."""
    rows = []
    for busy in (False, True):
        with busy_core(busy):
            for threads in (1, 2):
                setup(threads)
                probe = contention_probe()
                t = _times(**size, repeats=repeats, device="cpu")
                ours, dense = t["moe (ours)"], t["dense FFN"]
                target = 1.5 if probe > 2 else 1.10 if threads == 1 else 1.25
                rows.append((threads, "busy" if busy else "not loaded by us", probe,
                             ours * 1e3, dense * 1e3, ours / dense, t["moe (loop)"] / dense,
                             t["moe (padded)"] / dense, t["naive MoE"] / ours, f"<= {target}",
                             "ok" if ours / dense <= target else "MISSED"))
    title = (f"MoE fwd+bwd / dense FFN, N={size['tokens']} D={size['d_model']} "
             f"F={size['hidden']} E={size['experts']} k={size['top_k']} "
             f"(median of {repeats}, CPU)")
    return title, rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tokens", type=int, default=4096)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--hidden", type=int, default=512, help="expert hidden width F")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--sweep", action="store_true",
                   help="threads 1 and 2, with and without a busy second core (CPU)")
    p.add_argument("--sizes", nargs="+", default=["default", "small"], choices=list(SIZES))
    args = p.parse_args(argv)
    if args.sweep:
        for name in args.sizes:
            title, rows = sweep(SIZES[name], args.repeats)
            print_table(title, SWEEP_HEADER, rows)
        return
    setup(args.threads)
    title, rows = table(tokens=args.tokens, d_model=args.d_model, hidden=args.hidden,
                        experts=args.experts, top_k=args.top_k, repeats=args.repeats,
                        device=args.device, threads=args.threads)
    print(f"contention probe (16 small / 1 big matmul, ~1 when quiet): "
          f"{contention_probe():.2f}")
    print_table(title, HEADER, rows)


if __name__ == "__main__":
    main()
