"""Do dynas text models learn? Held-out bits per character against zlib, bz2 and xz.

    python -m benchmarks.text_bpc [--split val] [--steps 400] [--seeds 0] [--recipe-seeds 1 2]
        [--models full dynamic_span top2 dynamic_k+entropy dynamic_k] [--json docs/text_bpc.json]
    python -m benchmarks.text_bpc --seq-len 1024 --batch 8 --models full sliding_window dynamic_span

Data: the ``text_lm`` corpus (BBC News, ``trainers.tasks.text``) with exactly
``text_lm``'s seed-0 article split (80/10/10 per category, by article). Every model
trains on one stream: the training articles of all five categories, joined with a blank
line, read as random crops of ``--seq-len`` + 1 characters (i.i.d., not the continual
stream: this measures what the model can learn, not what it forgets).

Held-out text: per category, the ``--split`` articles joined the same way and cut into
non-overlapping windows of ``--seq-len`` characters (the last partial window is left
out; ``--heldout-windows`` caps the windows per category). Tokens are characters (the
98-id character vocabulary, one id per character), so bits per token are bits per
character: **bpc = mean cross-entropy in bits over every predicted character**, through
dynas's own validation pass (``trainers.dynamics.measure``); **accuracy** is the share of
those characters the model's most likely next character gets right (same pass). Each window starts without
context, which costs the model a little against a compressor that reads the text whole.

Baselines on the same characters (the id stream as one byte per character, from the
first window's first character to the last window's last label): zlib -9, bz2 -9 and
xz -9e (``lzma`` preset 9 | extreme), 8 x compressed bytes / characters. *Alone*
compresses the held-out text by itself; *conditional* is
``compress(train + held-out) - compress(train)``, the fairer comparison with a model
that has read the training text.

Models come from architecture specs through ``trainers.model.build_model``; the
training loop is here only for its schedule: AdamW, linear warm-up over ``--warmup``
of the steps, cosine decay to ``--min-lr`` x lr, gradient norm clipped at ``--clip``,
plus the model's auxiliary losses at their ``LossWeights``. Dynamic-compute checks at
the same budget: ``dynamic_span`` and ``sliding_window`` (``--window``) vs ``full``
(attention QK^T+AV FLOPs at the learned, cropped spans; at T = 1024 with ``--batch 8`` the
tokens per step stay the recipe's 8,192) and the ``dynamic`` top-p router vs ``topk`` k = 2 (expert FLOPs per
token at the realised k), and per MoE layer the Spearman correlation between a token's
realised k and its loss. The defaults are the recipe of ``docs/benchmarks.md``; it was
chosen with ``--split val`` (tune there: the test articles are for the final figures).
"""
from __future__ import annotations

import argparse
import bz2
import dataclasses
import json
import lzma
import math
import time
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from benchmarks._timing import contention_probe, setup
from benchmarks.dynamic_compute import attention_core_flops, expert_flops_per_token
from benchmarks.text_bpc_report import report
from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                                     TaskShape)
from dynas.search_space.cost import Realised, estimate_cost
from dynas.search_space.settings import LossWeights
from dynas.trainers.dynamics import learned_spans, measure
from dynas.trainers.model import build_model
from dynas.trainers.modules.span import DynamicSpanAttention
from dynas.trainers.system import AUX_TERMS
from dynas.trainers.modules import MoE
from dynas.trainers.tasks.text import (CATEGORIES, SEPARATOR, VOCAB_SIZE, article_splits, encode,
                                       read_corpus, windows)

DATA_SEED = 0          # text_lm's seed-0 article split, whatever the model's seed
SPLITS = ("train", "val", "test")
COMPRESSORS = {"zlib -9": lambda b: zlib.compress(b, 9),
               "bz2 -9": lambda b: bz2.compress(b, 9),
               "xz -9e": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME)}


# --- data ----------------------------------------------------------------------------
def corpus_ids(split: str) -> tuple[Tensor, dict[str, Tensor]]:
    """(training stream of every category, held-out ids per category) as character ids."""
    corpus, train, held = read_corpus(), [], {}
    for e, cat in enumerate(CATEGORIES):
        generator = torch.Generator().manual_seed(DATA_SEED * 1_000_003 + e)   # as text_lm
        parts = dict(zip(SPLITS, article_splits(len(corpus[cat]), generator)))
        train.append(SEPARATOR.join(corpus[cat][i] for i in parts["train"]))
        held[cat] = encode(SEPARATOR.join(corpus[cat][i] for i in parts[split]))
    return encode(SEPARATOR.join(train)), held


def heldout_windows(ids: Tensor, seq_len: int, limit: int) -> tuple[TensorDataset, Tensor]:
    """(windows to score, the characters they cover: first input .. last label)."""
    x, y = windows(ids, seq_len, limit)
    return TensorDataset(x, y), ids[:x.numel() + 1]


def as_bytes(ids: Tensor) -> bytes:
    """One byte per character (ids < 256), so compressed bits / len = bits per character."""
    return bytes(ids.to(torch.uint8).tolist())


# --- baselines ---------------------------------------------------------------------------
def compressed_bits(data: bytes) -> dict[str, int]:
    """Compressor name -> bits of its output."""
    return {name: 8 * len(fn(data)) for name, fn in COMPRESSORS.items()}


def conditional_bits(context: bytes, data: bytes) -> dict[str, int]:
    """compress(context + data) - compress(context): ``data``'s cost given ``context``."""
    before, after = compressed_bits(context), compressed_bits(context + data)
    return {name: after[name] - before[name] for name in COMPRESSORS}


# --- model and training --------------------------------------------------------------------
def architectures(args) -> dict[str, tuple[ArchConfig, LossWeights]]:
    """name -> (arch, loss weights): same depth, width and budget; attention full
    unless the name says otherwise, FFN dense x4 or a dropless MoE of x1 experts."""
    d, h, t = args.d_model, args.heads, args.seq_len
    dense = FFNConfig("dense", expansion=args.expansion)

    def moe(router: RouterConfig) -> FFNConfig:
        return FFNConfig("moe", expansion=1, experts=args.experts, router=router,
                         capacity_factor=0.0, balance="aux_loss")

    def stack(att: AttentionConfig, ffn: FFNConfig) -> ArchConfig:
        return ArchConfig(d, tuple(LayerConfig(att, ffn) for _ in range(args.layers)),
                          positions=args.positions)

    full, base = AttentionConfig("full", h), LossWeights()
    dynamic = RouterConfig("dynamic", args.cap, args.top_p)
    return {"full": (stack(full, dense), base),
            "dynamic_span": (stack(AttentionConfig("dynamic_span", h, max_span=t), dense),
                             dataclasses.replace(base, span=args.span_penalty, span_hold=args.span_hold)),
            "sliding_window": (stack(AttentionConfig("sliding_window", h, window=args.window), dense), base),
            "top2": (stack(full, moe(RouterConfig("topk", 2))), base),
            "dynamic_k": (stack(full, moe(dynamic)), base),
            "dynamic_k+entropy": (stack(full, moe(dynamic)),
                                  dataclasses.replace(base, router_entropy=args.entropy_penalty))}


def lr_factor(step: int, steps: int, warmup: int, floor: float) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine from 1 to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def crops(stream: Tensor, seq_len: int, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(B, T) inputs and labels: random windows of the stream, labels one character on."""
    starts = torch.randint(0, len(stream) - seq_len - 1, (batch, 1), generator=generator)
    idx = starts + torch.arange(seq_len)
    return stream[idx], stream[idx + 1]


def train(arch: ArchConfig, weights: LossWeights, stream: Tensor, args, seed: int) -> torch.nn.Module:
    """A fresh model from ``arch`` trained for ``args.steps`` steps of ``args.batch`` crops."""
    torch.manual_seed(seed)
    model = build_model(arch, shape(args.seq_len))
    for module in model.modules():         # as trainers.system sets it from loss_weights.span_hold
        if isinstance(module, DynamicSpanAttention):
            module.penalty_hold = weights.span_hold
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99),
                            weight_decay=args.weight_decay)
    warmup = max(1, round(args.warmup * args.steps))
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = args.lr * lr_factor(step, args.steps, warmup, args.min_lr)
        x, y = crops(stream, args.seq_len, args.batch, generator)
        out = model(x)
        loss = F.cross_entropy(out.logits.flatten(0, 1), y.flatten())
        for name in AUX_TERMS:                 # as trainers.system weighs them
            if name in out.aux_losses:
                loss = loss + getattr(weights, name) * out.aux_losses[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if (step + 1) % args.log_every == 0:
            cropped = {n: v["crop"] for n, v in learned_spans(model).items()}
            print(f"    step {step + 1}: train loss {loss.item():.3f} nats{f' crops {cropped}' if cropped else ''}",
                  flush=True)
    return model.eval()


def shape(seq_len: int) -> TaskShape:
    return TaskShape(seq_len=seq_len, num_classes=VOCAB_SIZE, vocab_size=VOCAB_SIZE,
                     per_token=True, causal=True)


# --- measurement ---------------------------------------------------------------------------
def heldout_bpc(model: torch.nn.Module, held: dict[str, TensorDataset], batch: int) -> tuple[dict, dict, dict]:
    """({category: bpc, "all": bpc over every character}, the same for next-character
    accuracy, dynamics entry: spans, realised k), all from one pass of ``measure``."""
    predicted: list[Tensor] = []          # measure's batches, in dataset order
    hook = model.register_forward_hook(lambda _m, _i, out: predicted.append(out.logits.argmax(-1).flatten()))
    try:
        row, entry = measure(model, list(held.values()), batch_size=batch, device=torch.device("cpu"))
    finally:
        hook.remove()
    counts = [d.tensors[1].numel() for d in held.values()]
    hits = (torch.cat(predicted) == torch.cat([d.tensors[1].flatten() for d in held.values()])).split(counts)
    bpc, acc = dict(zip(held, row)), {c: h.double().mean().item() for c, h in zip(held, hits)}
    bpc["all"] = sum(b * n for b, n in zip(row, counts)) / sum(counts)
    acc["all"] = sum(int(h.sum()) for h in hits) / sum(counts)
    return bpc, acc, entry


def token_k_and_loss(model: torch.nn.Module, x: Tensor, y: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """(realised k per token per MoE layer, loss in bits per token), both (B*T,) in the
    same (batch, position) order, from one no-grad forward."""
    per_token: dict[str, Tensor] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, MoE):
            def hook(_m, _inputs, out, name=name):
                per_token[name] = out.valid.sum(dim=1)            # (B*T,)
            hooks.append(module.router.register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model.eval()(x).logits
    finally:
        for h in hooks:
            h.remove()
    bits = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none") / math.log(2.0)
    return per_token, bits


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation (average ranks for ties); nan if either is constant."""
    import pandas as pd

    if len(a.unique()) < 2 or len(b.unique()) < 2:
        return math.nan
    return float(pd.Series(a.double().numpy()).corr(pd.Series(b.double().numpy()), method="spearman"))


def model_flops(arch: ArchConfig, t: int, row: dict) -> dict[str, float]:
    """FLOPs per sample at the spans and the per-layer realised k that ``row`` recorded:
    attention QK^T+AV, and the whole model's (``estimate_cost``) static and effective.
    A pure function of what was measured, so ``--report`` recounts saved rows with
    today's cost model (rows of one table then agree, whenever they ran)."""
    k = {n: {"mean": sum(i * c for i, c in enumerate(h)) / max(1, sum(h))} for n, h in row["k_hist"].items()}
    realised = Realised.from_dynamics({"spans": {n: {"heads": v} for n, v in row["spans"].items()}, "k": k})
    return {"attention_flops": attention_core_flops(arch, t, realised),
            "model_flops": estimate_cost(arch, shape(t)).flops,
            "model_flops_effective": estimate_cost(arch, shape(t), realised).flops}


def measure_model(model, arch: ArchConfig, held: dict[str, TensorDataset], args) -> dict:
    bpc, acc, entry = heldout_bpc(model, held, args.batch)
    realised = Realised.from_dynamics(entry)
    row = {"bpc": bpc, "accuracy": acc, "spans": {n: v["heads"] for n, v in entry["spans"].items()},
           "crops": {n: v["crop"] for n, v in entry["spans"].items()},
           "expert_flops_per_token": expert_flops_per_token(arch, realised)[0],
           "realised_k": expert_flops_per_token(arch, realised)[1],
           "k_hist": {n: v["hist"] for n, v in entry["k"].items()}}
    row.update(model_flops(arch, args.seq_len, row))
    if entry["k"]:
        x = torch.cat([d.tensors[0][:args.trace_windows] for d in held.values()])
        y = torch.cat([d.tensors[1][:args.trace_windows] for d in held.values()])
        ks, bits = token_k_and_loss(model, x, y)
        row["spearman_k_loss"] = {n: spearman(k, bits) for n, k in ks.items()}
    return row


# --- baselines on the held-out text ----------------------------------------------------
def baselines(stream: Tensor, covered: dict[str, Tensor], conditional: bool) -> dict:
    """{"alone": {category | "all": {compressor: bpc}}, "conditional": {"all": ...}}."""
    out: dict[str, dict] = {"alone": {}, "conditional": {}}
    totals = dict.fromkeys(COMPRESSORS, 0)
    for cat, ids in covered.items():
        bits = compressed_bits(as_bytes(ids))
        out["alone"][cat] = {n: b / len(ids) for n, b in bits.items()}
        totals = {n: totals[n] + bits[n] for n in COMPRESSORS}
    n_chars = sum(len(ids) for ids in covered.values())
    out["alone"]["all"] = {n: b / n_chars for n, b in totals.items()}
    if conditional:
        every = torch.cat([torch.cat([ids, encode(SEPARATOR)]) for ids in covered.values()])
        bits = conditional_bits(as_bytes(stream), as_bytes(every))
        out["conditional"]["all"] = {n: b / len(every) for n, b in bits.items()}
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--split", choices=("val", "test"), default="test", help="held-out articles")
    p.add_argument("--models", nargs="+", default=["full", "dynamic_span", "top2", "dynamic_k+entropy", "dynamic_k"],
                   help="names of architectures(); the first is the recipe")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="every model's seeds")
    p.add_argument("--recipe-seeds", type=int, nargs="*", default=[1, 2],
                   help="more seeds for the first model only (it runs every seed first)")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--warmup", type=float, default=0.05, help="share of the steps")
    p.add_argument("--min-lr", type=float, default=0.1, help="the cosine's floor, x lr")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--positions", default="rope", help="the model's positions kind")
    p.add_argument("--expansion", type=int, default=4, help="dense FFN width x d_model")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-p", type=float, default=0.5)
    p.add_argument("--cap", type=int, default=4, help="the dynamic router's top_k cap")
    p.add_argument("--window", type=int, default=128, help="sliding_window's width")
    p.add_argument("--span-penalty", type=float, default=0.01, help="loss_weights.span")
    p.add_argument("--span-hold", type=int, default=0,
                   help="loss_weights.span_hold: training steps with no span penalty (0: off)")
    p.add_argument("--entropy-penalty", type=float, default=0.01, help="loss_weights.router_entropy")
    p.add_argument("--heldout-windows", type=int, default=0, help="per category (0 = all)")
    p.add_argument("--trace-windows", type=int, default=32, help="per category, for Spearman(k, loss)")
    p.add_argument("--no-conditional", action="store_true", help="skip compress(train + held-out)")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write every row and the baselines here")
    p.add_argument("--report", nargs="+", default=None,
                   help="only print the tables of saved --json files (runs split over processes)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.report:                  # the rows of every file, the first file's baselines
        rows, settings = [], []
        for f in args.report:
            saved = json.loads(Path(f).read_text())
            settings.append(argparse.Namespace(**{**vars(parser().parse_args([])), **saved["args"]}))
            archs = architectures(settings[-1])
            rows += [{**r, **model_flops(archs[r["name"]][0], settings[-1].seq_len, r)} for r in saved["rows"]]
            if len(settings) == 1:   # the first file's baselines
                base = saved["baselines"]
        report(rows, base, settings[0])
        return
    setup(args.threads)
    print(f"contention probe: {contention_probe():.2f} (1 = quiet machine); args {vars(args)}", flush=True)
    stream, held_ids = corpus_ids(args.split)
    held, covered = {}, {}
    for cat, ids in held_ids.items():
        held[cat], covered[cat] = heldout_windows(ids, args.seq_len, args.heldout_windows)
    print(f"train stream {len(stream)} chars; held-out {sum(map(len, covered.values()))} chars "
          f"({', '.join(f'{c} {len(v)}' for c, v in covered.items())}); "
          f"unknown characters {int(sum((v == 1).sum() for v in covered.values()))}", flush=True)
    started = time.perf_counter()
    base = baselines(stream, covered, not args.no_conditional)
    print(f"compressors: {time.perf_counter() - started:.0f}s {json.dumps(base)}", flush=True)
    archs = architectures(args)
    rows = []
    first = [(seed, args.models[0]) for seed in args.seeds + args.recipe_seeds]    # the recipe first
    for seed, name in first + [(seed, name) for seed in args.seeds for name in args.models[1:]]:
        arch, weights = archs[name]
        started, cpu = time.perf_counter(), time.process_time()
        model = train(arch, weights, stream, args, seed)
        train_s = time.perf_counter() - started
        row = {"name": name, "seed": seed, "train_s": train_s, "train_cpu_s": time.process_time() - cpu,
               **measure_model(model, arch, held, args)}
        row["measure_s"] = time.perf_counter() - started - train_s
        rows.append(row)
        print(f"  {name} seed {seed}: {json.dumps(row)}", flush=True)
        if args.json:                        # after every run: a cut-short run keeps its rows
            Path(args.json).write_text(json.dumps({"args": vars(args), "baselines": base, "rows": rows},
                                                  indent=1))
    report(rows, base, args)


if __name__ == "__main__":
    main()
