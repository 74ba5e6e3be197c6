"""Does dynamic compute pay off? Learned spans and dynamic-k on real text (text_lm).

    python -m benchmarks.dynamic_compute [--seq-len 512] [--steps 150] [--seeds 0 1 2]

Every model trains through the same ``text_lm`` stream (the first ``--experiences``
BBC categories, next-character prediction) with the same step budget and seeds, and
is then measured the way a user sees it:

* attention study (dense FFN): ``full`` attention vs ``sliding_window`` (w =
  ``--window``) vs ``dynamic_span`` (max_span = T) with its L1 span penalty: attention
  FLOPs per sample at the evaluated spans (QK^T and AV only; the projections are the
  same for all three), measured evaluation time of the whole model, next-character
  test accuracy (R's final average) and validation bits per character;
* router study (sliding-window attention, MoE FFN of ``--experts`` dropless experts):
  the ``dynamic`` top-p router (with and without its entropy "dynamic loss") vs
  ``topk`` with k = 2: realised k on the validation pass, expert FLOPs per token at
  that k, accuracy and bits per character.

Targets (issue 12): dynamic span >= 40% fewer attention FLOPs than full at >= 98% of
its accuracy; its cropped evaluation time ratio (vs full) within 1.2x of its FLOP
ratio; dynamic-k >= 30% fewer expert FLOPs than top-2 at <= 1 point accuracy loss.
Mean +- std over seeds; evaluation times are medians of round-robin repeats per seed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._timing import contention_probe, median_seconds, print_table, setup
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.cost import Realised, realised_attention
from dynas.search_space.kinds import ATTENTION, FFN, linear
from dynas.search_space.settings import LossWeights, TaskSettings, TrainingSettings
from dynas.trainers.fitting import STATE_FILE, fit, load_state
from dynas.trainers.model import build_model
from dynas.trainers.modules.span import DynamicSpanAttention
from dynas.trainers.tasks import build_task


def architectures(args) -> dict[str, tuple[ArchConfig, LossWeights]]:
    """name -> (arch, loss weights); the two studies share depth and width."""
    t, d, h = args.seq_len, args.d_model, args.heads
    dense = FFNConfig("dense", expansion=2)

    def stack(att: AttentionConfig, ffn: FFNConfig) -> ArchConfig:
        return ArchConfig(d, tuple(LayerConfig(att, ffn) for _ in range(args.layers)))

    def moe(router: RouterConfig) -> FFNConfig:
        return FFNConfig("moe", expansion=1, experts=args.experts, router=router,
                         capacity_factor=0.0, balance="aux_loss")

    base = LossWeights()
    window = AttentionConfig("sliding_window", h, window=args.window)
    dynamic = RouterConfig("dynamic", args.cap, args.top_p)
    return {
        "full": (stack(AttentionConfig("full", h), dense), base),
        "sliding_window": (stack(window, dense), base),
        "dynamic_span": (stack(AttentionConfig("dynamic_span", h, max_span=t), dense),
                         dataclasses.replace(base, span=args.span_penalty)),
        "top2": (stack(window, moe(RouterConfig("topk", 2))), base),
        "dynamic_k": (stack(window, moe(dynamic)), base),
        "dynamic_k+entropy": (stack(window, moe(dynamic)),
                              dataclasses.replace(base, router_entropy=args.entropy_penalty)),
    }


ATTENTION_STUDY = ("full", "sliding_window", "dynamic_span")
ROUTER_STUDY = ("top2", "dynamic_k", "dynamic_k+entropy")


def attention_core_flops(arch: ArchConfig, t: int, realised: Realised) -> float:
    """QK^T and AV FLOPs per sample over all layers, at the evaluated spans."""
    d, total = arch.d_model, 0.0
    projections = (linear(d, 3 * d, t) + linear(d, d, t)).flops
    for i, layer in enumerate(arch.layers):
        att = realised_attention(layer.attention, realised.spans.get(i))
        total += ATTENTION.get(att.kind).cost(att, d, t, True).flops - projections
    return total


def expert_flops_per_token(arch: ArchConfig, realised: Realised) -> tuple[float, float]:
    """(routed-expert FLOPs per token summed over MoE layers, mean realised k)."""
    flops, ks = 0.0, []
    for i, layer in enumerate(arch.layers):
        f = layer.ffn
        if f.kind != "moe":
            continue
        k = realised.k.get(i, float(f.router.top_k))
        flops += k * FFN.get(f.expert).token_cost(arch.d_model, f.expansion * arch.d_model)[1]
        ks.append(k)
    return flops, statistics.fmean(ks) if ks else 0.0


def train_one(name: str, arch: ArchConfig, weights: LossWeights, task, args, seed: int):
    """Fit ``arch`` and rebuild the trained model from its saved state."""
    cfg = TrainingSettings(steps_per_experience=args.steps, batch_size=args.batch, lr=args.lr,
                           seed=seed, eval_batch_size=args.batch, device="cpu",
                           loss_weights=weights)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        metrics = fit(arch, task, cfg, checkpoint_dir=tmp)
        train_s = time.perf_counter() - started
        model = build_model(arch, task.shape)
        model.load_state_dict(load_state(Path(tmp) / STATE_FILE)["model"])
    realised = Realised.from_dynamics(metrics.dynamics[-1])
    row = {
        "name": name, "seed": seed, "train_s": train_s,
        "accuracy": metrics.values[names.FINAL_AVG_ACCURACY],
        "bpc": metrics.values[names.FINAL_AVG_BPC],
        "flops": metrics.values[names.FLOPS],
        "flops_effective": metrics.values[names.FLOPS_EFFECTIVE],
        "attention_flops": attention_core_flops(arch, task.shape.seq_len, realised),
        "static_attention_flops": attention_core_flops(arch, task.shape.seq_len, Realised()),
        "expert_flops_per_token": expert_flops_per_token(arch, realised)[0],
        "realised_k": expert_flops_per_token(arch, realised)[1],
        "spans": {n: v["heads"] for n, v in metrics.dynamics[-1]["spans"].items()},
        "crops": {n: v["crop"] for n, v in metrics.dynamics[-1]["spans"].items()},
        "k_hist": {n: v["hist"] for n, v in metrics.dynamics[-1]["k"].items()},
    }
    print(f"  {name:18s} seed {seed}: acc {row['accuracy']:.4f} bpc {row['bpc']:.3f} "
          f"crops {row['crops']} k {row['realised_k']:.3f} ({train_s:.0f}s)", flush=True)
    return row, model.eval()


def eval_closure(model, x):
    def run() -> None:
        with torch.no_grad():
            model(x)
    return run


def time_evaluation(models: dict, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median eval-forward time of every model, round-robin; the span model also uncropped."""
    fns = {name: eval_closure(m, x) for name, m in models.items()}
    span = models.get("dynamic_span")
    if span is not None:
        uncropped = build_model(span.arch, span.shape)
        uncropped.load_state_dict(span.state_dict())
        for module in uncropped.modules():
            if isinstance(module, DynamicSpanAttention):
                module.crop = False
        fns["dynamic_span (uncropped)"] = eval_closure(uncropped.eval(), x)
    return median_seconds(fns, warmup=1, repeats=repeats)


def mean_std(values: list[float]) -> str:
    m = statistics.fmean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.4g} ± {s:.2g}"


def summarise(rows: list[dict], times: list[dict[str, float]], args) -> dict:
    by = {n: [r for r in rows if r["name"] == n] for n in dict.fromkeys(r["name"] for r in rows)}
    mean = lambda name, key: statistics.fmean(r[key] for r in by[name])   # noqa: E731
    time_of = lambda name: [t[name] for t in times]                        # noqa: E731
    att_rows = []
    for n in ATTENTION_STUDY + ("dynamic_span (uncropped)",):
        src = "dynamic_span" if n.startswith("dynamic_span") else n
        flops_key = "static_attention_flops" if "uncropped" in n else "attention_flops"
        att_rows.append((n, mean_std([r[flops_key] for r in by[src]]),
                         mean(src, flops_key) / mean("full", "attention_flops"),
                         mean_std([1e3 * t for t in time_of(n)]),
                         statistics.fmean(time_of(n)) / statistics.fmean(time_of("full")),
                         mean_std([r["accuracy"] for r in by[src]]), mean_std([r["bpc"] for r in by[src]])))
    print_table(f"attention study: text_lm T={args.seq_len}, {args.experiences} experiences x "
                f"{args.steps} steps, seeds {args.seeds}",
                ("model", "attn FLOPs/sample", "vs full", "eval ms", "time vs full", "accuracy", "val bpc"),
                att_rows)
    router_rows = []
    for n in ROUTER_STUDY:
        router_rows.append((n, mean_std([r["realised_k"] for r in by[n]]),
                            mean_std([r["expert_flops_per_token"] for r in by[n]]),
                            mean(n, "expert_flops_per_token") / mean("top2", "expert_flops_per_token"),
                            mean_std([1e3 * t for t in time_of(n)]),
                            mean_std([r["accuracy"] for r in by[n]]), mean_std([r["bpc"] for r in by[n]])))
    print_table(f"router study: {args.experts} experts, dynamic top_p={args.top_p} cap {args.cap}, "
                f"entropy weight {args.entropy_penalty}",
                ("router", "realised k", "expert FLOPs/token", "vs top2", "eval ms", "accuracy", "val bpc"),
                router_rows)
    span_flop = mean("dynamic_span", "attention_flops") / mean("full", "attention_flops")
    span_model = mean("dynamic_span", "flops_effective") / mean("full", "flops")
    span_time = statistics.fmean(time_of("dynamic_span")) / statistics.fmean(time_of("full"))
    acc_ratio = mean("dynamic_span", "accuracy") / mean("full", "accuracy")
    targets = {"span: attention FLOPs saved >= 40%": (1 - span_flop, 1 - span_flop >= 0.40),
               "span: accuracy >= 98% of full": (acc_ratio, acc_ratio >= 0.98),
               "span: eval-time ratio <= 1.2 x model FLOP ratio": (span_time / span_model, span_time <= 1.2 * span_model)}
    for n in ROUTER_STUDY[1:]:
        saved = 1 - mean(n, "expert_flops_per_token") / mean("top2", "expert_flops_per_token")
        loss = 100 * (mean("top2", "accuracy") - mean(n, "accuracy"))
        targets[f"{n}: expert FLOPs saved >= 30%"] = (saved, saved >= 0.30)
        targets[f"{n}: accuracy loss <= 1 point"] = (loss, loss <= 1.0)
    print_table("targets (measured value, hit?)", ("target", "measured", "hit"),
                [(k, v, "yes" if ok else "MISSED") for k, (v, ok) in targets.items()])
    return {"targets": {k: [v, ok] for k, (v, ok) in targets.items()}}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--experiences", type=int, default=2, help="BBC categories, in order")
    p.add_argument("--steps", type=int, default=150, help="steps per experience (all models)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--window", type=int, default=64, help="sliding-window width")
    p.add_argument("--span-penalty", type=float, default=0.1, help="loss_weights.span")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-p", type=float, default=0.5)
    p.add_argument("--cap", type=int, default=4, help="the dynamic router's top_k cap")
    p.add_argument("--entropy-penalty", type=float, default=0.01, help="loss_weights.router_entropy")
    p.add_argument("--only", nargs="+", default=None, help="a subset of the models")
    p.add_argument("--eval-windows", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write every row and the targets here "
                   "(the README figures: docs/dynamic_compute_t512.json)")
    args = p.parse_args(argv)
    setup(args.threads)
    print(f"contention probe: {contention_probe():.2f} (1 = quiet machine)", flush=True)
    task = build_task(TaskSettings("text_lm", {"seq_len": args.seq_len, "categories": args.experiences,
                                               "n_val": 16, "n_test": 32}))
    x = torch.cat([e.test.tensors[0] for e in task.experiences])[:args.eval_windows]
    archs = architectures(args)
    if args.only:
        archs = {n: archs[n] for n in args.only}
    rows, times = [], []
    for seed in args.seeds:
        models = {}
        for name, (arch, weights) in archs.items():
            row, models[name] = train_one(name, arch, weights, task, args, seed)
            rows.append(row)
        times.append(time_evaluation(models, x, args.repeats))
    summary = summarise(rows, times, args) if not args.only else {}
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "eval_s": times,
                                               **summary}, indent=1))


if __name__ == "__main__":
    main()
