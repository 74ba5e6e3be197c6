"""Does a token-dependent k follow difficulty? Dynamic-k routers on ``hard_easy``.

    python -m benchmarks.k_difficulty [--seeds 0 1 2] [--steps 400]

``hard_easy`` marks a known share of its answer positions hard (the sum of every
input) and the rest easy (a copy of one input), so the experts a router gives each
answer position can be compared with its difficulty. Three routers, same model and
budget: ``topk`` k = 2, the ``dynamic`` top-p router, and the same with the entropy
"dynamic loss". Printed per router and MoE layer: mean realised k on hard and on easy
answer positions of the test split, their ratio (target, issue 24: >= 1.5), and test
accuracy (target: within 1 point of top-2). Mean +- std over seeds. The test split is
only measured here, never used to choose anything.
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
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
    dynamic = RouterConfig("dynamic", args.experts, args.top_p)
    return {"top2": (RouterConfig("topk", 2), LossWeights()),
            "dynamic_k": (dynamic, LossWeights()),
            "dynamic_k+entropy": (dynamic, dataclasses.replace(LossWeights(), router_entropy=args.entropy))}


def run(name: str, router: RouterConfig, weights: LossWeights, task, args, seed: int) -> dict:
    ffn = FFNConfig("moe", expansion=1, experts=args.experts, router=router, capacity_factor=0.0,
                    balance="aux_loss")
    arch = ArchConfig(args.d_model, (LayerConfig(AttentionConfig("full", args.heads), ffn),) * args.layers)
    cfg = TrainingSettings(steps_per_experience=args.steps, batch_size=args.batch, lr=args.lr, seed=seed,
                           device="cpu", loss_weights=weights)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = fit(arch, task, cfg, checkpoint_dir=tmp)
        model = build_model(arch, task.shape)
        model.load_state_dict(load_state(Path(tmp) / STATE_FILE)["model"])
    x, _ = task.experiences[0].test.tensors                      # (N, T)
    per_token, _ = trace(model, x)
    hard, easy = hard_positions(x).flatten(), easy_positions(x).flatten()
    layers = {}
    for layer, ks in per_token.items():
        k = torch.tensor(ks, dtype=torch.float)                   # (N*T,)
        layers[layer] = (float(k[hard].mean()), float(k[easy].mean()))
    return {"acc": metrics.values[f"test.{names.FINAL_AVG_ACCURACY}"], "layers": layers}


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values) * scale:.{digits}f} +- {sd * scale:.{digits}f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--top-p", type=float, default=0.6)
    p.add_argument("--entropy", type=float, default=0.1)
    p.add_argument("--hard-share", type=float, default=0.25)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    setup(args.threads)
    rows = []
    for name, (router, weights) in routers(args).items():
        runs = []
        for seed in args.seeds:
            task = build_task(TaskSettings("hard_easy", {"n_experiences": 1, "hard_share": args.hard_share,
                                                         "n_train": 4000}), seed=seed)
            runs.append(run(name, router, weights, task, args, seed))
        for layer in sorted(runs[0]["layers"]):
            hard = [r["layers"][layer][0] for r in runs]
            easy = [r["layers"][layer][1] for r in runs]
            ratio = [h / e if e else float("nan") for h, e in zip(hard, easy)]
            rows.append([name, layer, spread(hard), spread(easy), spread(ratio),
                         spread([r["acc"] for r in runs], 100, 1)])
        print(f"  {name} done", flush=True)
    print_table("realised k on hard vs easy answer positions of hard_easy", ["router", "layer", "k hard", "k easy", "hard/easy", "test acc %"], rows)


if __name__ == "__main__":
    main()
