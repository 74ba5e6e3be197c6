"""Structured pruning that keeps accuracy: params kept vs accuracy, old recovery vs new.

    python -m benchmarks.pruning --tune   [--seeds 0 1 2]      # choose on Split-Digits (validation)
    python -m benchmarks.pruning --report [--tasks split_fashion_mnist split_digits]

Per task and seed: one dense transformer (2 layers, d_model 128, 4 heads, FFN x4)
trained with reservoir replay, 5 x 2 class-IL (as ``benchmarks/compress_int8.py``);
the trained models are kept under ``--work`` so the tuning and the report prune the
same ones. Then, per pruning level, two arms measured in the same process:

* ``old``: the previous ``dynas compress`` recipe: heads and channels by weight norms,
  then 200 AdamW steps (lr 3e-3) of MSE to the original's logits on all training inputs;
* ``new``: ``trainers.recovery.prune_and_recover`` with the given ``RecoverySettings``
  (Taylor importance on a class-balanced replay sample of every experience, KL + label
  loss on that sample).

``--tune`` runs a coordinate search over importance, temperature, distil weight, lr,
steps and rounds on Split-Digits at ``--tune-level``, scoring each setting by the mean
*validation* accuracy over seeds; the test split is only printed. Output: mean and
standard deviation over seeds of the accuracy change (points) against the unpruned
model, validation and test, and the params kept. Raw rows go to ``--json``.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import ReplaySettings, TaskSettings, TrainingSettings
from dynas.trainers.bundle import load_bundle_model
from dynas.trainers.compress import count_params, expert_loads
from dynas.trainers.downstream import train_arch
from dynas.trainers.evaluation import evaluate_row
from dynas.trainers.pruning import PruneSpec, apply_plan, make_plan
from dynas.trainers.recovery import prune_and_recover
from dynas.trainers.recovery_settings import RecoverySettings
from dynas.trainers.tasks import build_task

TASKS = {"split_digits": TaskSettings("split_digits", {"patch": 2}),
         "split_fashion_mnist": TaskSettings("split_fashion_mnist", {"patch": 7, "train_per_class": 1000,
                                                                      "test_per_class": 500})}
LEVELS = ("ffn=0.75", "ffn=0.5", "heads=2,ffn=0.5")
OLD_STEPS, OLD_LR = 200, 3e-3


def arch() -> ArchConfig:
    layer = LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=4))
    return ArchConfig(128, (layer, layer))


def old_recover(student: torch.nn.Module, teacher: torch.nn.Module, task: Any, steps: int, lr: float,
                batch_size: int, seed: int = 0) -> None:
    """The recovery ``dynas compress`` had before (the baseline): MSE to the teacher's
    logits on all training inputs, no labels."""
    inputs = torch.cat([exp.train.tensors[0] for exp in task.experiences])
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr)
    teacher.eval()
    student.train()
    for _ in range(steps):
        x = inputs[torch.randint(len(inputs), (batch_size,), generator=generator)]
        with torch.no_grad():
            target = teacher(x).logits
        loss = F.mse_loss(student(x).logits, target)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    student.eval()


def accuracies(model: torch.nn.Module, task: Any) -> dict[str, float]:
    """Mean over experiences of the validation and the test accuracy."""
    out = {}
    for split in ("val", "test"):
        row, _ = evaluate_row(model, task.experiences, scenario=task.scenario, num_classes=task.shape.num_classes,
                              batch_size=256, device=torch.device("cpu"), split=split)
        out[split] = 100 * sum(row) / len(row)
    return out


def trained(name: str, seed: int, steps: int, work: Path) -> tuple[torch.nn.Module, Any]:
    """(the model trained on ``name`` with ``seed``, the task built with that seed);
    trained once, then read from ``work``."""
    cfg = TrainingSettings(steps_per_experience=steps, batch_size=64, device="cpu", seed=seed,
                           replay=ReplaySettings("reservoir", 500))
    out = work / f"{name}-s{seed}-{steps}"
    if not (out / "model.json").exists():
        train_arch(arch(), TASKS[name], cfg, out_dir=out, force=True)
    model, _ = load_bundle_model(out)
    return model.eval(), build_task(TASKS[name], seed=seed)


def prune_old(model: torch.nn.Module, task: Any, spec: PruneSpec, seed: int) -> torch.nn.Module:
    student = copy.deepcopy(model)
    apply_plan(student, make_plan(student, spec, expert_loads(model, task)))
    old_recover(student, model, task, OLD_STEPS, OLD_LR, 64, seed)
    return student


def prune_new(model: torch.nn.Module, task: Any, spec: PruneSpec, settings: RecoverySettings,
              seed: int) -> torch.nn.Module:
    _, student = prune_and_recover(model, task, spec, settings, expert_loads(model, task), seed=seed)
    return student


def row(arm: str, level: str, seed: int, base: dict[str, float], model: torch.nn.Module, params0: int,
        stream: Any, **extra: Any) -> dict[str, Any]:
    acc = accuracies(model, stream)
    return {"arm": arm, "level": level, "seed": seed, "params_kept": count_params(model) / params0,
            "val_delta": acc["val"] - base["val"], "test_delta": acc["test"] - base["test"],
            "val": acc["val"], "test": acc["test"], **extra}


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):+.2f} ± {sd:.2f}"


def summary(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("level", "arm")) -> str:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    lines = [f"| {' | '.join(keys)} | params kept % | val change (points) | test change (points) | per-seed test change |",
             "|" + "---|" * (len(keys) + 4)]
    for key, rs in groups.items():
        lines.append(f"| {' | '.join(map(str, key))} | {100 * rs[0]['params_kept']:.1f} "
                     f"| {spread([r['val_delta'] for r in rs])} | {spread([r['test_delta'] for r in rs])} "
                     "| " + ", ".join(f"{r['test_delta']:+.1f}" for r in rs) + " |")
    return "\n".join(lines)


def report(args: argparse.Namespace, settings: RecoverySettings) -> list[dict[str, Any]]:
    rows = []
    for name in args.tasks:
        for seed in args.seeds:
            model, task = trained(name, seed, args.steps, args.work)
            base, params0 = accuracies(model, task), count_params(model)
            print(f"{name} seed {seed}: original val {base['val']:.2f} test {base['test']:.2f}", flush=True)
            for level in args.levels:
                spec = PruneSpec.parse(level)
                arms = {"old": lambda: prune_old(model, task, spec, seed),
                        "new": lambda: prune_new(model, task, spec, settings, seed)}
                for arm, run in ((a, arms[a]) for a in args.arms):
                    start = time.perf_counter()
                    rows.append(row(arm, level, seed, base, run(), params0, task, task=name,
                                    seconds=time.perf_counter() - start))
                    print(f"  {level} {arm}: test {rows[-1]['test_delta']:+.2f} val {rows[-1]['val_delta']:+.2f}",
                          flush=True)
        print(f"\n## {name} (new = {settings})\n" + summary([r for r in rows if r["task"] == name]), flush=True)
    return rows


def tune(args: argparse.Namespace) -> tuple[RecoverySettings, list[dict[str, Any]]]:
    """Coordinate search on Split-Digits' validation accuracy at ``--tune-level``."""
    spec, rows = PruneSpec.parse(args.tune_level), []
    models = [trained("split_digits", seed, args.steps, args.work) for seed in args.seeds]
    bases = [(accuracies(m, t), count_params(m)) for m, t in models]
    scores: dict[RecoverySettings, float] = {}

    def score(settings: RecoverySettings) -> float:
        if settings not in scores:
            rs = [row("new", args.tune_level, seed, base, prune_new(m, t, spec, settings, seed), p0, t,
                      task="split_digits", settings=dataclasses.asdict(settings))
                  for seed, (m, t), (base, p0) in zip(args.seeds, models, bases)]
            rows.extend(rs)
            scores[settings] = statistics.mean(r["val_delta"] for r in rs)
            print(f"  {settings}: val {spread([r['val_delta'] for r in rs])} "
                  f"(test {spread([r['test_delta'] for r in rs])})", flush=True)
        return scores[settings]

    best = RecoverySettings()
    grid = {"importance": ("weight", "taylor"), "temperature": (1.0, 2.0, 4.0), "alpha": (0.5, 0.9),
            "lr": (3e-4, 1e-3, 3e-3), "steps": (200, 500), "rounds": (1, 3)}
    for field, values in grid.items():
        best = max((dataclasses.replace(best, **{field: v}) for v in values), key=score)
        print(f"{field}: {getattr(best, field)}", flush=True)
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="choose the recovery settings on Split-Digits")
    parser.add_argument("--report", action="store_true", help="the curve, old vs new, on --tasks")
    parser.add_argument("--tasks", nargs="+", default=["split_fashion_mnist", "split_digits"], choices=list(TASKS))
    parser.add_argument("--levels", nargs="+", default=list(LEVELS), help="prune specs of the curve")
    parser.add_argument("--arms", nargs="+", default=["old", "new"], choices=["old", "new"])
    parser.add_argument("--tune-level", default="ffn=0.5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="training steps per experience")
    parser.add_argument("--settings", default="{}", help="JSON of RecoverySettings fields for the new arm "
                        "(default: RecoverySettings' defaults)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/dynas-pruning-bench"))
    parser.add_argument("--json", type=Path, help="write the raw rows here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    settings, rows = RecoverySettings(**json.loads(args.settings)), []
    if args.tune:
        settings, rows = tune(args)
        print(f"\nchosen on Split-Digits validation: {settings}", flush=True)
    if args.report:
        rows += report(args, settings)
    if args.json:
        args.json.write_text(json.dumps({"settings": dataclasses.asdict(settings), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
