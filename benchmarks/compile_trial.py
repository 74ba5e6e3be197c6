"""Does ``torch.compile`` repay its compilation within a trial? (CPU, one thread)

    nice -n 19 python -m benchmarks.compile_trial [--cases quickstart text_static text_dynamic]
        [--steps 30] [--block 10] [--repeats 5] [--json docs/compile_trial.json]

A trial builds a fresh model for its architecture, so a compiled trial pays the
compilation once per trial (per architecture), and wins only if its steps are cheaper
by enough: break-even = compile overhead / (eager step - compiled step). Per case, one
architecture (``quickstart``: the first of the quickstart space's draw with seed 0, the
draw ``dynas calibrate`` makes; ``text_static``: the first of ``examples/text_search.yaml``'s
draw with only full or sliding-window attention and dense FFNs; ``text_dynamic``: the first
with a ``dynamic_span`` layer and a ``dynamic``-router MoE, blocks with data-dependent
shapes: a span's crop and an MoE's split sizes are read on the host every forward) is
trained from one initialisation twice in one process on the same batches of the task's
first experience, eager and ``torch.compile``d (default mode, inductor): a training step
as a trial's (the file's loss weights on the model's auxiliary losses, AdamW, the
file's gradient clipping). Reported:

- compile overhead: the first ``--steps`` compiled steps' wall time minus that many
  steady compiled steps (every compilation and recompilation among them);
- per-step time, eager and compiled: the median over ``--repeats`` interleaved blocks of
  ``--block`` steps each, after both have run ``--steps`` steps (wall and process CPU);
- correctness: the largest relative difference of the loss between the two over the
  first ``--steps`` steps (same initialisation, same batches; float reassociation in
  fused kernels makes the trajectories drift apart slowly, a wrong graph at once);
- dynamo's counts: graphs compiled (recompilations included: torch counts no
  recompilations apart) and graph breaks (by reason).

The break-even is compared with the trials the project runs: quickstart 60 steps per
experience x 5 experiences (300 steps; 1200 at x4), the text file 40 x 2 (80; 1280 at x16).
Evaluation passes (no_grad, another batch size) compile again and are not counted here.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import median_wall_and_cpu, setup  # noqa: E402
from dynas.search_space.experiment import load_experiment  # noqa: E402
from dynas.trainers.evaluation import cross_entropy  # noqa: E402
from dynas.trainers.model import build_model  # noqa: E402
from dynas.trainers.tasks import build_task  # noqa: E402

CONFIGS = {"quickstart": "examples/quickstart.yaml", "text_static": "examples/text_search.yaml",
           "text_dynamic": "examples/text_search.yaml"}
TRIAL_STEPS = {"quickstart": (300, 1200), "text_static": (80, 1280), "text_dynamic": (80, 1280)}
AUX = ("balance", "z_loss", "span", "router_entropy")


def pick(case: str, space, shape):
    """The case's architecture: the first of the seed-0 draw that fits its description."""
    from benchmarks.supernet_ranking import draw

    archs = draw(space, shape, 40, 0)
    kinds = lambda a: {(l.attention.kind, l.ffn.kind, getattr(getattr(l.ffn, "router", None), "kind", None))
                       for l in a.layers}
    fits = {"quickstart": lambda a: True,
            "text_static": lambda a: all(at in ("full", "sliding_window") and f == "dense" for at, f, _ in kinds(a)),
            "text_dynamic": lambda a: any(at == "dynamic_span" for at, _, _ in kinds(a))
            and any(f == "moe" and r == "dynamic" for _, f, r in kinds(a))}[case]
    for arch in archs:
        if fits(arch):
            return arch
    raise SystemExit(f"{case}: no architecture of the draw fits")


def batches(task, batch_size: int, n: int, seed: int = 0) -> list:
    """``n`` training batches of the first experience, drawn once (both runs see them)."""
    x, y = task.experiences[0].train.tensors[:2]
    g = torch.Generator().manual_seed(seed)
    return [(x[idx], y[idx]) for idx in (torch.randint(0, len(y), (batch_size,), generator=g) for _ in range(n))]


class Trainer:
    """A trial's training step on one model: loss with weighted aux terms, clip, AdamW."""

    def __init__(self, model: torch.nn.Module, training, compiled: bool):
        self.model = model
        self.forward = torch.compile(model) if compiled else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay)
        self.weights = {k: float(getattr(training.loss_weights, k)) for k in AUX}
        self.clip = float(training.grad_clip)

    def step(self, x, y) -> float:
        out = self.forward(x)
        loss = cross_entropy(out.logits, y)
        for name, value in out.aux_losses.items():
            if self.weights.get(name):
                loss = loss + self.weights[name] * value
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return float(loss.detach())


def dynamo_counts() -> dict:
    from torch._dynamo.utils import counters

    breaks = Counter()
    for reason, n in counters["graph_break"].items():
        breaks[str(reason).splitlines()[0][:80]] += n
    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(breaks.values())), "break_reasons": dict(breaks.most_common(4)),
            "frames_ok": int(counters["frames"].get("ok", 0))}


def measure(case: str, steps: int, block: int, repeats: int) -> dict:
    import torch._dynamo

    torch._dynamo.reset()
    from torch._dynamo.utils import counters
    counters.clear()
    exp = load_experiment(CONFIGS[case])
    task = build_task(exp.task, seed=exp.training.seed)
    arch = pick(case, exp.space, task.shape)
    torch.manual_seed(0)
    model = build_model(arch, task.shape)
    runs = {"eager": Trainer(copy.deepcopy(model), exp.training, False),
            "compiled": Trainer(copy.deepcopy(model), exp.training, True)}
    data = batches(task, exp.training.batch_size, steps + block)
    losses, walls = {}, {}
    for name, run in runs.items():
        losses[name], walls[name] = [], []
        for x, y in data[:steps]:
            t = time.perf_counter()
            losses[name].append(run.step(x, y))
            walls[name].append(time.perf_counter() - t)
    extra = data[steps:steps + block]
    wall, cpu = median_wall_and_cpu({n: (lambda r=r: [r.step(x, y) for x, y in extra]) for n, r in runs.items()},
                                    warmup=0, repeats=repeats)
    per = {n: wall[n] / block for n in runs}
    overhead = sum(walls["compiled"]) - steps * per["compiled"]
    gain = per["eager"] - per["compiled"]
    rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["eager"], losses["compiled"]))
    return {"case": case, "arch_id": arch.arch_id, "arch": arch.summary(), "batch": exp.training.batch_size,
            "params": sum(p.numel() for p in model.parameters()),
            "eager_step_ms": 1000 * per["eager"], "compiled_step_ms": 1000 * per["compiled"],
            "eager_cpu_ms": 1000 * cpu["eager"] / block, "compiled_cpu_ms": 1000 * cpu["compiled"] / block,
            "first_compiled_step_s": walls["compiled"][0], "compile_overhead_s": overhead,
            "break_even_steps": overhead / gain if gain > 0 else None,
            "trial_steps": TRIAL_STEPS[case], "max_rel_loss_diff": rel,
            "loss_first_last": {n: [l[0], l[-1]] for n, l in losses.items()}, "dynamo": dynamo_counts()}


def table(results: list[dict]) -> list[str]:
    lines = ["| case | architecture | eager step (ms) | compiled step (ms) | speed-up | compile overhead (s) | "
             "break-even (steps) | trial steps x1 / longest | max rel. loss diff | graphs / graph breaks |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        d = r["dynamo"]
        be = "never" if r["break_even_steps"] is None else f"{r['break_even_steps']:.0f}"
        lines.append(f"| {r['case']} | {r['arch'].replace(' | ', ': ')} | {r['eager_step_ms']:.1f} | {r['compiled_step_ms']:.1f} | "
                     f"{r['eager_step_ms'] / r['compiled_step_ms']:.2f}x | {r['compile_overhead_s']:.1f} | {be} | "
                     f"{r['trial_steps'][0]} / {r['trial_steps'][1]} | {r['max_rel_loss_diff']:.1e} | "
                     f"{d['graphs']} / {d['graph_breaks']} |")
    for r in results:
        if r["dynamo"]["break_reasons"]:
            lines.append(f"\n{r['case']} graph breaks: {r['dynamo']['break_reasons']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--steps", type=int, default=30, help="steps of each run before the timed blocks")
    p.add_argument("--block", type=int, default=10, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per run (median)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    setup(1)
    import torch._inductor.config as inductor
    inductor.compile_threads = 1             # one thread, compilation included
    results = []
    for case in args.cases:
        started = time.perf_counter()
        results.append(measure(case, args.steps, args.block, args.repeats))
        print(f"[{time.perf_counter() - started:.0f}s] {case} done", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"command": "nice -n 19 python -m benchmarks.compile_trial "
                                             + " ".join(sys.argv[1:]), "threads": 1, "torch": torch.__version__,
                                             "results": results}, indent=1))
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
