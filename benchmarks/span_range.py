"""Do learned spans find the range a task needs? ``dynamic_span`` on ``span_range``.

    python -m benchmarks.span_range [--distances 16 64 192] [--seeds 0 1 2] [--steps 400]

The T = 256 recipe on docs/benchmarks.md (d = 192 learned, spans held):
``--d-model 16 --steps 800 --lr 1e-2 --lr-schedule cosine --warmup 0.05 --n-train 2000
--penalty-hold 300``.

``span_range`` makes every answer depend on one token exactly d tokens back and on
nothing farther (``trainers.tasks.dynamic``), so a learned span has a right value.
Two studies, same model size, steps, seeds:

* **one distance at a time**: for each d, a one-experience stream; ``dynamic_span``
  (max_span = T, L1 span penalty ``--span-penalty``) vs ``full`` attention. Printed:
  each layer's largest learned span z and its reach z + R (the farthest key of
  nonzero weight), whether the reach lies in [d, 1.5 d + R] (the issue's target), and
  test accuracy of both (target: within 1 point of full).
* **a stream that needs a longer range later**: experiences with d = the distances
  in order; the spans per layer and head after every experience (target: they grow
  during the experience that needs more).

``--penalty-hold N`` holds the L1 penalty at 0 for the first N steps of each
experience (``DynamicSpanAttention.penalty_hold``: under Adam the penalty alone
shrinks a span by lr x max_span tokens a step, whatever its weight, so at d = 192 the
spans fell below the need before the model had learned it).
``--lr-schedule cosine --warmup F`` trains both models with a linear warm-up over the
first F of the steps, then a cosine (``TrainingSettings``); ``--study full`` trains
full attention only (is the baseline's recipe learning the range at all?).
``--positions rope|alibi|none`` compares the position kinds (issue 24, item 6).
``--init``, ``--no-grow`` and ``--no-reopen`` reproduce older behaviour (spans started
at 0, no probe beyond the ramp, spans not reopened when a later experience starts)
for comparison. Mean +- std over seeds; every row's numbers are
measured in this process. CPU, ``--threads`` threads.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import contextmanager

from benchmarks._timing import print_table, setup
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.kinds.attention import span_ramp
from dynas.search_space.settings import LossWeights, TaskSettings, TrainingSettings
from dynas.trainers.fitting import fit
from dynas.trainers.modules import span as span_module
from dynas.trainers.tasks import build_task


def arch(kind: str, args) -> ArchConfig:
    att = AttentionConfig(kind, args.heads, max_span=args.seq_len) if kind == "dynamic_span" \
        else AttentionConfig(kind, args.heads)
    layer = LayerConfig(att, FFNConfig("dense", expansion=2))
    return ArchConfig(args.d_model, (layer,) * args.layers, positions=args.positions)


@contextmanager
def span_options(init: float, grow: bool, reopen: bool, penalty_hold: int = span_module.PENALTY_HOLD):
    """Build every span module with this init, growth, reopening and penalty hold (the
    benchmark's knob)."""
    original = span_module.DynamicSpanAttention.__init__

    def patched(self, *a, **kw):
        original(self, *a, **{**kw, "init_fraction": init, "grow": grow, "reopen": reopen,
                              "penalty_hold": penalty_hold})

    span_module.DynamicSpanAttention.__init__ = patched
    try:
        yield
    finally:
        span_module.DynamicSpanAttention.__init__ = original


def train(kind: str, distances: list[int], seed: int, args) -> dict:
    options = {"distances": distances, "seq_len": args.seq_len, "causal": True,
               "n_train": args.n_train, "n_val": 200, "n_test": 500}
    task = build_task(TaskSettings("span_range", options), seed=seed)
    weights = LossWeights(span=args.span_penalty if kind == "dynamic_span" else 0.0)
    cfg = TrainingSettings(steps_per_experience=args.steps, batch_size=args.batch, lr=args.lr,
                           lr_schedule=args.lr_schedule, warmup=args.warmup, seed=seed,
                           eval_batch_size=100, device="cpu", loss_weights=weights)
    with span_options(args.init, not args.no_grow, not args.no_reopen, args.penalty_hold):
        metrics = fit(arch(kind, args), task, cfg)
    spans = [{name: v["heads"] for name, v in entry["spans"].items()} for entry in metrics.dynamics]
    return {"acc": metrics.values[f"test.{names.FINAL_AVG_ACCURACY}"],
            "diag": [metrics.test_acc_matrix[j][j] for j in range(len(distances))],
            "spans": spans}


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.1f} +- {sd:.1f}"


def one_distance_study(args) -> None:
    ramp = span_ramp(args.seq_len)
    rows = []
    for d in args.distances:
        full = [train("full", [d], s, args)["acc"] * 100 for s in args.seeds]
        runs = [train("dynamic_span", [d], s, args) for s in args.seeds]
        acc = [r["acc"] * 100 for r in runs]
        for layer in sorted(runs[0]["spans"][-1]):
            z = [max(r["spans"][-1][layer]) for r in runs]
            hits = sum(d <= v + ramp <= 1.5 * d + ramp for v in z)
            rows.append([d, layer, spread(z), spread([v + ramp for v in z]),
                         f"{hits}/{len(z)}", spread(acc), spread(full),
                         f"{statistics.fmean(acc) - statistics.fmean(full):+.1f}"])
            print("  per seed", d, layer, [[round(h, 1) for h in r["spans"][-1][layer]] for r in runs],
                  "acc", [round(r["acc"], 4) for r in runs], "full", [round(a, 2) for a in full], flush=True)
    print_table("one distance per stream: largest learned span per layer, vs full attention", ["d", "layer", "largest z", "reach z+R", "reach in [d,1.5d+R]",
                 "acc span %", "acc full %", "diff"], rows)


def stream_study(args) -> None:
    rows = []
    runs = [train("dynamic_span", list(args.distances), s, args) for s in args.seeds]
    for e, d in enumerate(args.distances):
        for layer in sorted(runs[0]["spans"][e]):
            heads = [r["spans"][e][layer] for r in runs]
            per_head = [spread([h[i] for h in heads]) for i in range(len(heads[0]))]
            rows.append([e, d, layer, *per_head, spread([r["diag"][e] * 100 for r in runs])])
    for s, r in zip(args.seeds, runs):
        print("  seed", s, "spans per experience", [{k: [round(h, 1) for h in v] for k, v in e.items()}
                                                     for e in r["spans"]], "diag", r["diag"], flush=True)
    print_table("a stream of growing distances: spans per head after each experience", ["after exp", "d", "layer", *[f"head {i} z" for i in range(args.heads)], "acc on it %"], rows)


class Parser(argparse.ArgumentParser):
    """Bad input: one line naming the flag, exit 2 (no usage block)."""

    def error(self, message: str):
        self.exit(2, f"span_range: {message}\n")


def nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def warmup_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("--distances", type=int, nargs="+", default=[16, 64, 192])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--warmup", type=warmup_fraction, default=0.0)
    p.add_argument("--span-penalty", type=float, default=0.1)
    p.add_argument("--init", type=float, default=span_module.INIT_FRACTION)
    p.add_argument("--no-grow", action="store_true")
    p.add_argument("--no-reopen", action="store_true")
    p.add_argument("--penalty-hold", type=nonnegative, default=span_module.PENALTY_HOLD)
    p.add_argument("--positions", choices=["learned", "rope", "alibi", "none"], default="learned")
    p.add_argument("--study", choices=["both", "distance", "stream", "full"], default="both")
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main() -> None:
    args = parse(sys.argv[1:])
    setup(args.threads)
    print(f"span_range: T={args.seq_len}, ramp {span_ramp(args.seq_len)}, init {args.init}, "
          f"grow {not args.no_grow}, reopen {not args.no_reopen}, "
          f"L1 hold {args.penalty_hold} steps, lr {args.lr} {args.lr_schedule} warmup {args.warmup}, d_model {args.d_model}, n_train {args.n_train}, positions {args.positions}, L1 {args.span_penalty}, {args.steps} steps, seeds {args.seeds}", flush=True)
    if args.study in ("both", "distance"):
        one_distance_study(args)
    if args.study == "full":
        for s in args.seeds:
            print("  full attention", args.distances, "seed", s, "diag %",
                  [round(a * 100, 1) for a in train("full", list(args.distances), s, args)["diag"]], flush=True)
    if args.study in ("both", "stream"):
        stream_study(args)


if __name__ == "__main__":
    main()
