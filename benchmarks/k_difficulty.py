"""Does a token-dependent k follow difficulty? Dynamic-k routers on ``hard_easy``.

    python -m benchmarks.k_difficulty [--seeds 0 1 2] [--steps 1500] [--hard-terms 2]
                                      [--l1 0 0.001 0.003 0.01] [--only top2 ...]

``hard_easy`` marks a known share of its answer positions hard (the sum of the first
``hard_terms`` inputs mod 10) and the rest easy (a copy of one input), so the experts
a router gives each answer position can be compared with its difficulty. Routers,
same model and budget: ``topk`` k = 2; the ``dynamic`` top-p router, alone and with
the entropy "dynamic loss"; the ``relu`` router (ReMoE) with one row group per
``router_l1`` weight. Printed per router and MoE layer, then summed over the layers
(experts per token in the whole model): mean realised k on hard and on easy answer
positions of the test split, their ratio (target: >= 1.5; mean over seeds and the
lowest seed's), k over every token, and
test accuracy overall, on hard and on easy positions (target: within 1 point of
top-2). Mean +- std over seeds. The test split is only measured here: no run reads
it while training; the defaults (steps, hard_terms, the L1 weights) were set from a
seed-0 probe of this script, which is why every L1 weight tried is printed.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._timing import print_table, setup
from dynas.analysis.inspect import trace
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.settings import LossWeights, TaskSettings, TrainingSettings
from dynas.trainers.fitting import STATE_FILE, fit, load_state
from dynas.trainers.model import build_model
from dynas.trainers.tasks import build_task
from dynas.trainers.tasks.dynamic import easy_positions, hard_positions


def routers(args) -> dict[str, tuple[RouterConfig, LossWeights]]:
    """Name -> (router, loss weights): the baselines, then one relu row per L1 weight."""
    dynamic = RouterConfig("dynamic", args.experts, args.top_p)
    out = {"top2": (RouterConfig("topk", 2), LossWeights()),
           "dynamic_k": (dynamic, LossWeights()),
           "dynamic_k+entropy": (dynamic, dataclasses.replace(LossWeights(), router_entropy=args.entropy))}
    for l1 in args.l1:
        out[f"relu+l1={l1:g}"] = (RouterConfig("relu", args.experts),
                                  dataclasses.replace(LossWeights(), router_l1=l1))
    return out


EVERY_LAYER = "sum of layers"     # experts per token over the whole model


def ratio(hard: float, easy: float) -> float:
    """hard / easy; inf when only hard positions use experts, nan when neither does."""
    if easy:
        return hard / easy
    return float("inf") if hard else float("nan")


def run(router: RouterConfig, weights: LossWeights, task, args, seed: int) -> dict:
    ffn = FFNConfig("moe", expansion=1, experts=args.experts, router=router, capacity_factor=0.0,
                    balance="aux_loss")
    arch = ArchConfig(args.d_model, (LayerConfig(AttentionConfig("full", args.heads), ffn),) * args.layers)
    cfg = TrainingSettings(steps_per_experience=args.steps, batch_size=args.batch, lr=args.lr, seed=seed,
                           device="cpu", loss_weights=weights)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = fit(arch, task, cfg, checkpoint_dir=tmp)
        model = build_model(arch, task.shape)
        model.load_state_dict(load_state(Path(tmp) / STATE_FILE)["model"])
    x, y = task.experiences[0].test.tensors                      # (N, T)
    per_token, _ = trace(model, x)
    classes = torch.tensor(task.experiences[0].classes)         # task-IL: its own classes, as fit scores
    with torch.no_grad():
        pick = classes[model(x).logits[..., classes].argmax(dim=-1)]   # (N, T)
    right = (pick == y).flatten()                                # (N*T,)
    hard, easy = hard_positions(x).flatten(), easy_positions(x).flatten()
    layers = {}
    for layer, ks in per_token.items():
        k = torch.tensor(ks, dtype=torch.float)                   # (N*T,)
        layers[layer] = (float(k[hard].mean()), float(k[easy].mean()), float(k.mean()))
    layers[EVERY_LAYER] = tuple(sum(v[i] for v in layers.values()) for i in range(3))
    return {"acc": metrics.values[f"test.{names.FINAL_AVG_ACCURACY}"], "layers": layers,
            "hard_acc": float(right[hard].float().mean()), "easy_acc": float(right[easy].float().mean())}


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """mean +- std; every value when one is not finite (a ratio with no easy k)."""
    if not all(math.isfinite(v) for v in values):
        return ", ".join(f"{v * scale:.{digits}f}" for v in values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * scale:.{digits}f} +- {sd * scale:.{digits}f}"


def rows_of(name: str, runs: list[dict]) -> list[list[str]]:
    """One table row per MoE layer of one router's runs (one run per seed)."""
    out = []
    for layer in runs[0]["layers"]:                  # the layers in order, then their sum
        hard = [r["layers"][layer][0] for r in runs]
        easy = [r["layers"][layer][1] for r in runs]
        ratios = list(map(ratio, hard, easy))
        out.append([name, layer, spread(hard), spread(easy), spread(ratios), f"{min(ratios):.2f}",
                    spread([r["layers"][layer][2] for r in runs]),
                    spread([r["acc"] for r in runs], 100, 1),
                    spread([r["hard_acc"] for r in runs], 100, 1),
                    spread([r["easy_acc"] for r in runs], 100, 1)])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--top-p", type=float, default=0.6)
    p.add_argument("--entropy", type=float, default=0.1)
    p.add_argument("--l1", type=float, nargs="+", default=[0.0, 0.001, 0.003, 0.01],
                   help="router_l1 weights of the relu router (one row group each)")
    p.add_argument("--hard-share", type=float, default=0.25)
    p.add_argument("--hard-terms", type=int, default=2, help="numbers a hard answer sums (0: all)")
    p.add_argument("--only", nargs="+", help="router names to run (default: all)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    setup(args.threads)
    options = {"n_experiences": 1, "hard_share": args.hard_share, "hard_terms": args.hard_terms,
               "n_train": 4000}
    rows = []
    for name, (router, weights) in routers(args).items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        runs = [run(router, weights, build_task(TaskSettings("hard_easy", options), seed=seed), args, seed)
                for seed in args.seeds]
        rows += rows_of(name, runs)
        print(f"  {name} done ({time.perf_counter() - start:.0f} s)", flush=True)
    print_table(f"realised k on hard vs easy answer positions of hard_easy {options}, seeds {args.seeds}, "
                f"{args.steps} steps, threads={args.threads}",
                ["router", "layer", "k hard", "k easy", "hard/easy", "min seed", "k all", "test acc %",
                 "hard acc %", "easy acc %"], rows)


if __name__ == "__main__":
    main()
