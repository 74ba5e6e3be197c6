"""The tables of ``benchmarks.text_bpc``: bits per character against the compressors,
attention kinds against full attention (claim (a) of the design documents: 42% less
attention compute at 98.7% of accuracy at 1024 tokens) and dynamic-k against top-2
(claim (b): 35% less compute per token and lower perplexity), each checked as measured.

Rows are ``text_bpc``'s (one per model and seed, also read back from its ``--json``
files); a study compares only the seeds every model in it ran (``paired``).
"""
from __future__ import annotations

import math
import statistics

from benchmarks._timing import print_table
from dynas.trainers.tasks.text import CATEGORIES


def spread(values: list[float], digits: int = 3) -> str:
    if any(math.isnan(v) for v in values):
        return "undefined"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def report(rows: list[dict], baselines: dict, args) -> None:
    by = {n: [r for r in rows if r["name"] == n] for n in dict.fromkeys(r["name"] for r in rows)}
    cats = [*CATEGORIES, "all"]
    table = [(f"{n} (seeds {[r['seed'] for r in rs]})", *(spread([r["bpc"][c] for r in rs]) for c in cats))
             for n, rs in by.items()]
    table += [(f"{name} {kind}", *(f"{baselines[kind][c][name]:.3f}" if c in baselines[kind] else "-"
                                  for c in cats))
              for kind in ("alone", "conditional") for name in baselines["alone"]["all"]]
    print_table(f"held-out ({args.split}) bits per character, T={args.seq_len}, {args.steps} steps x "
                f"batch {args.batch}", ("model / compressor", *cats), table)
    attention = [n for n in ("full", "sliding_window", "dynamic_span") if n in by]
    if "full" in by and len(attention) > 1:
        attention_study(paired(by, *attention), args.seq_len)
    routers = [n for n in ("top2", "dynamic_k", "dynamic_k+entropy") if n in by]
    if "top2" in by and len(routers) > 1:
        router_study(paired(by, *routers), routers, args.seq_len)


def paired(by: dict[str, list[dict]], *names: str) -> dict[str, list[dict]]:
    """Rows of ``names`` restricted to the seeds all of them ran (a like-for-like mean)."""
    seeds = set.intersection(*({r["seed"] for r in by[n]} for n in names))
    return {n: [r for r in by[n] if r["seed"] in seeds] for n in names}


def mean_of(rows: list[dict], key: str, scale: float = 1.0) -> float:
    """Mean of ``row[key]`` / ``scale`` over the rows that recorded it (nan if none did:
    rows saved before the key existed)."""
    values = [r[key] / scale for r in rows if key in r]
    return statistics.fmean(values) if values else math.nan


def mean_accuracy(rows: list[dict]) -> float:
    """Mean next-character accuracy over the rows that recorded it (nan if none did)."""
    values = [r["accuracy"]["all"] for r in rows if "accuracy" in r]
    return statistics.fmean(values) if values else math.nan


def accuracy_spread(rows: list[dict]) -> str:
    values = [r["accuracy"]["all"] for r in rows if "accuracy" in r]
    return spread(values) if len(values) == len(rows) else "-"


def attention_study(by: dict[str, list[dict]], t: int) -> None:
    """Attention QK^T+AV FLOPs at the learned crops, whole-model FLOPs per token at
    them, bpc and accuracy: each attention kind vs full, same seeds; claim (a) checked."""
    att = {n: statistics.fmean(r["attention_flops"] for r in by[n]) for n in by}
    model = {n: mean_of(by[n], "model_flops_effective", t) for n in by}
    bpc = {n: [r["bpc"]["all"] for r in by[n]] for n in by}
    seeds = [r["seed"] for r in by["full"]]
    print_table(f"attention kinds vs full attention, T={t}, seeds {seeds}",
                ("model", "attn FLOPs/sample", "vs full", "model FLOPs/token", "vs full", "bpc", "accuracy",
                 "crops per seed"),
                [(n, f"{att[n]:.4g}", f"{att[n] / att['full']:.3f}", f"{model[n]:.4g}",
                  f"{model[n] / model['full']:.3f}", spread(bpc[n]), accuracy_spread(by[n]),
                  [r["crops"] for r in by[n]] if n == "dynamic_span" else "-") for n in by])
    for n in (m for m in by if m != "full"):
        acc = 100 * mean_accuracy(by[n]) / mean_accuracy(by["full"])
        acc_text = "accuracy not recorded" if math.isnan(acc) else f"{acc:.1f}% of full's next-character accuracy"
        print(f"claim (a) '42% less attention compute at 98.7% of accuracy', {n}: "
              f"{100 * (1 - att[n] / att['full']):.1f}% less attention FLOPs at {acc_text}, "
              f"{statistics.fmean(bpc[n]) - statistics.fmean(bpc['full']):+.3f} bpc; seeds {seeds}")


def router_study(by: dict[str, list[dict]], routers: list[str], t: int) -> None:
    """Realised k, expert and whole-model FLOPs per token, bpc and Spearman(k, loss) per
    layer, same seeds; claim (b) checked."""
    flops = {n: statistics.fmean(r["expert_flops_per_token"] for r in by[n]) for n in routers}
    model = {n: mean_of(by[n], "model_flops_effective", t) for n in routers}
    bpc = {n: [r["bpc"]["all"] for r in by[n]] for n in routers}
    print_table(f"dynamic-k vs top-2 (dropless MoE), seeds {[r['seed'] for r in by['top2']]}",
                ("router", "realised k", "expert FLOPs/token", "vs top2", "model FLOPs/token", "vs top2", "bpc",
                 "Spearman(k, loss) per layer"),
                [(n, spread([r["realised_k"] for r in by[n]]), f"{flops[n]:.4g}", f"{flops[n] / flops['top2']:.3f}",
                  f"{model[n]:.4g}", f"{model[n] / model['top2']:.3f}", spread(bpc[n]),
                  {layer: spread([r["spearman_k_loss"][layer] for r in by[n]])
                   for layer in by[n][0]["spearman_k_loss"]}) for n in routers])
    for n in routers[1:]:
        print(f"claim (b) '35% less compute per token with dynamic k and lower perplexity', {n}: "
              f"{100 * (1 - flops[n] / flops['top2']):.1f}% fewer expert FLOPs, "
              f"{100 * (1 - model[n] / model['top2']):.1f}% fewer model FLOPs per token, "
              f"{statistics.fmean(bpc[n]) - statistics.fmean(bpc['top2']):+.3f} bpc vs top2 "
              f"({'lower' if statistics.fmean(bpc[n]) < statistics.fmean(bpc['top2']) else 'not lower'})")
