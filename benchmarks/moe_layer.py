"""MoE layer vs a dense FFN of equal active size and vs a naive MoE: forward + backward.

    python -m benchmarks.moe_layer [--threads 2] [--tokens 4096] [--repeats 7] [--device cuda]

Defaults: 4096 tokens, D=256, expert hidden F=512, E=8, k=2 (top-k router, dropless).
Baselines measured in the same run:
  * dense FFN with hidden k * F = 1024 (the same active parameters per token);
    target: MoE / dense <= 1.25;
  * naive MoE: every expert on every token, outputs masked by the same gates;
    target: naive / ours >= 4.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks._timing import (contention_probe, forward_backward, median_seconds,
                                print_table, setup, synchronizer, where)
from dynas.trainers.modules import MoE, DenseFFN, ExpertGroup, TopKRouter

HEADER = ("layer", "ms", "ratio", "target", "")


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


def table(*, tokens: int = 4096, d_model: int = 256, hidden: int = 512, experts: int = 8,
          top_k: int = 2, repeats: int = 7, device: str | torch.device = "cpu",
          threads: int | None = None) -> tuple[str, list[tuple]]:
    """(title, rows of ``HEADER``): the three layers timed on ``device`` in one run."""
    d, f, e, k = d_model, hidden, experts, top_k
    moe = MoE(ExpertGroup(e, d, f), TopKRouter(d, e, k)).to(device)
    dense = DenseFFN(d, k * f).to(device)
    naive = NaiveMoE(moe)
    x = torch.randn(1, tokens, d, device=device)
    times = median_seconds({
        "moe (ours)": forward_backward(moe, x, lambda o: o.out),
        "dense FFN": forward_backward(dense, x),
        "naive MoE": forward_backward(naive, x),
    }, warmup=2, repeats=repeats, sync=synchronizer(device))
    ours = times["moe (ours)"]
    rows = [
        ("moe (ours)", ours * 1e3, 1.0, "-", ""),
        ("dense FFN", times["dense FFN"] * 1e3, ours / times["dense FFN"], "ours/dense <= 1.25",
         "ok" if ours / times["dense FFN"] <= 1.25 else "MISSED"),
        ("naive MoE", times["naive MoE"] * 1e3, times["naive MoE"] / ours, "naive/ours >= 4",
         "ok" if times["naive MoE"] / ours >= 4 else "MISSED"),
    ]
    title = (f"MoE fwd+bwd, N={tokens} D={d} F={f} E={e} k={k} dense F={k * f} "
             f"{where(device, threads)} (median of {repeats})")
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
    args = p.parse_args(argv)
    setup(args.threads)
    title, rows = table(tokens=args.tokens, d_model=args.d_model, hidden=args.hidden,
                        experts=args.experts, top_k=args.top_k, repeats=args.repeats,
                        device=args.device, threads=args.threads)
    print(f"contention probe (16 small / 1 big matmul, ~1 when quiet): "
          f"{contention_probe():.2f}")
    print_table(title, HEADER, rows)


if __name__ == "__main__":
    main()
