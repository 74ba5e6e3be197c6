"""Does attention's wall time follow its FLOPs? Whole models, evaluation forward, CPU.

    python -m benchmarks.attention_time [--threads 1 2] [--lengths 512 1024 2048]
                                        [--causal 1 0] [--repeats 5] [--json out.json]

Every model is the ``dynamic_compute`` benchmark's shape: ``--layers`` layers at
``--d-model`` with ``--heads`` heads, a dense FFN x2, a 98-character vocabulary, one
no-grad forward of ``--batch`` windows of T tokens. Per attention kind and T it prints
the whole model's FLOP ratio against the full-attention model (``estimate_cost``, the
cropped spans' effective cost for ``dynamic_span``, the count ``FlopCounterMode``
agrees with), the time ratio (median of round-robin repeats, wall clock and process
CPU clock), and whether two targets hold on the wall clock:

* ``1.3x``: time ratio <= 1.3 x FLOP ratio (T >= 1024; shown for T = 512 too);
* ``<= full``: the blocked kind is no slower than full attention (T = 1024).

``dynamic_span`` runs with max_span = T at fixed learned spans (``--spans``, tokens,
every head): 0 is what ``benchmarks/dynamic_compute.py`` learned at T = 512 (crop 32).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from benchmarks._timing import contention_probe, median_wall_and_cpu, print_table, setup
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import Realised, estimate_cost
from dynas.search_space.kinds.attention import cropped_span
from dynas.trainers.model import build_model
from dynas.trainers.modules.span import DynamicSpanAttention

VOCAB = 98                 # the BBC text_lm character set of benchmarks/dynamic_compute.py
TARGET = 1.3               # time ratio <= TARGET x FLOP ratio
TARGET_FROM = 1024         # ... at T >= this
NO_SLOWER_AT = 1024        # blocked kinds no slower than full attention at this T
HEADER = ("threads", "causal", "T", "kind", "FLOPs vs full", "wall vs full", "cpu vs full",
          "wall / FLOP", "1.3x", "<= full", "wall ms")


def kinds(t: int, args) -> dict[str, tuple[AttentionConfig, float | None]]:
    """name -> (attention config, learned span of every head or None)."""
    h = args.heads
    out = {"full": (AttentionConfig("full", h), None)}
    for w in args.windows:
        out[f"sliding_window w={w}"] = (AttentionConfig("sliding_window", h, window=w), None)
    for z in args.spans:
        crop = cropped_span(z, t)
        out[f"dynamic_span z={z:g} (crop {crop})"] = (AttentionConfig("dynamic_span", h, max_span=t), z)
    return out


def model_and_flops(att: AttentionConfig, span: float | None, shape: TaskShape, args):
    """The evaluation-mode model (spans set, cropped) and its effective FLOPs."""
    arch = ArchConfig(args.d_model, tuple(LayerConfig(att, FFNConfig("dense", expansion=2))
                                          for _ in range(args.layers)))
    model = build_model(arch, shape).eval()
    realised = Realised()
    if span is not None:
        for module in model.modules():
            if isinstance(module, DynamicSpanAttention):
                module.span_fraction.data.fill_(span / module.max_span)
        realised = Realised({i: (span,) * att.heads for i in range(args.layers)})
    return model, estimate_cost(arch, shape, realised).flops


def rows_for(t: int, causal: bool, threads: int, args) -> list[tuple]:
    """One row per attention kind at sequence length ``t``."""
    shape = TaskShape(seq_len=t, num_classes=VOCAB, vocab_size=VOCAB, per_token=True, causal=causal)
    x = torch.randint(0, VOCAB, (args.batch, t))
    fns, flops = {}, {}
    for name, (att, span) in kinds(t, args).items():
        model, flops[name] = model_and_flops(att, span, shape, args)

        def run(model=model) -> None:
            with torch.no_grad():
                model(x)
        fns[name] = run
    wall, cpu = median_wall_and_cpu(fns, warmup=1, repeats=args.repeats)
    rows = []
    for name in fns:
        if name == "full":
            continue
        f_ratio, w_ratio, c_ratio = flops[name] / flops["full"], wall[name] / wall["full"], cpu[name] / cpu["full"]
        follows = "ok" if w_ratio <= TARGET * f_ratio else ("MISSED" if t >= TARGET_FROM else "(missed)")
        no_slower = ("ok" if w_ratio <= 1.0 else "MISSED") if t == NO_SLOWER_AT else "-"
        rows.append((threads, causal, t, name, f_ratio, w_ratio, c_ratio, w_ratio / f_ratio,
                     follows, no_slower, 1e3 * wall[name]))
    rows.append((threads, causal, t, "full", 1.0, 1.0, 1.0, 1.0, "-", "-", 1e3 * wall["full"]))
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--causal", type=int, nargs="+", default=[1, 0], help="1 causal, 0 bidirectional")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--windows", type=int, nargs="+", default=[64, 256])
    p.add_argument("--spans", type=float, nargs="+", default=[0.0, 96.0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the rows and probes here")
    args = p.parse_args(argv)
    rows, probes = [], {}
    for threads in args.threads:
        setup(threads)
        probes[threads] = contention_probe()
        print(f"threads={threads}: contention probe {probes[threads]:.2f} (1 = quiet)", flush=True)
        for causal in map(bool, args.causal):
            for t in args.lengths:
                rows += rows_for(t, causal, threads, args)
                print_table(f"threads={threads} causal={causal} T={t}", HEADER, rows[-len(kinds(t, args)):])
    print_table(f"whole-model evaluation forward, B={args.batch} D={args.d_model} H={args.heads} "
                f"layers={args.layers}, median of {args.repeats}; probes {probes}", HEADER, rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "probes": probes,
                                               "header": HEADER, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
