"""``dynas space validate | describe | sample CONFIG``: look at a space before searching it.

The task's shape (needed for FLOPs) comes from ``task_shape_fn``, and the check of the
search section's strategy and its settings from ``search_check_fn``, both handed in by
the CLI root: only ``trainers`` knows tasks, only ``controllers`` knows strategies.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any, Callable

from .arch import ArchConfig, TaskShape
from .constraints import fmt, is_feasible, require_feasible
from .cost import estimate_cost
from .experiment import Experiment, load_experiment
from .instances import check_every_instance
from .names import ACTIVE_PARAMS, FLOPS, PARAMS
from .settings import TaskSettings
from .space import ArchSpace
from .suggest import Decision, RandomSuggester

TaskShapeFn = Callable[[TaskSettings], TaskShape]
SearchCheckFn = Callable[[Experiment], None]   # the search section's checks (strategy, metrics)


def register(sub: Any, task_shape_fn: TaskShapeFn | None = None,
             search_check_fn: SearchCheckFn | None = None) -> None:
    parser = sub.add_parser(
        "space", help="validate, describe or sample the search space of an experiment file",
        description="Check an experiment file and look at its search space before searching it.")
    actions = parser.add_subparsers(dest="space_command", required=True, metavar="ACTION")

    p = actions.add_parser("validate", help="check the whole file; print the space size",
                           description="Validate every section, build (config, checks and cost) "
                           "one architecture per kind combination the space allows; with a "
                           "budget, also check that some sampled architecture fits it.")
    p.add_argument("config", type=Path, metavar="CONFIG", help="experiment YAML file")
    p.set_defaults(handler=cmd_validate, task_shape_fn=task_shape_fn, search_check_fn=search_check_fn)

    p = actions.add_parser("describe", help="decisions, space size and cost range",
                           description="Print every decision (options, condition), the space "
                           "size and min/median/max FLOPs and params over random samples.")
    p.add_argument("config", type=Path, metavar="CONFIG", help="experiment YAML file")
    p.add_argument("--samples", type=int, default=200, help="architectures sampled for the cost range")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sampler")
    p.set_defaults(handler=cmd_describe, task_shape_fn=task_shape_fn)

    p = actions.add_parser("sample", help="print (and save) random architectures",
                           description="Sample architectures with a seeded random suggester.")
    p.add_argument("config", type=Path, metavar="CONFIG", help="experiment YAML file")
    p.add_argument("--n", type=int, default=3, help="how many to sample")
    p.add_argument("--seed", type=int, default=0, help="seed of the random sampler")
    p.add_argument("--out", type=Path, default=None, help="directory for one JSON file per sample")
    p.set_defaults(handler=cmd_sample, task_shape_fn=task_shape_fn)


def cmd_validate(args: argparse.Namespace) -> int:
    exp = load_experiment(args.config)
    check = getattr(args, "search_check_fn", None)
    if check is not None:
        with exp.attribute_errors():
            check(exp)
    if exp.evaluator.name:
        from .evaluators import get_evaluator

        with exp.attribute_errors():
            get_evaluator(exp.evaluator.name)
    shape = _shape(args, exp)
    built = ""
    if shape is not None and isinstance(exp.space, ArchSpace):
        with exp.attribute_errors():
            built = f", {check_every_instance(exp.space, shape)} kind combinations built"
    require_feasible(exp.space, shape, exp.search.budget, seed=exp.search.seed, source=str(args.config))
    size = exp.space.size()
    print(f"OK: {args.config}: {len(exp.space.decisions())} decisions, space size {size}{built}")
    return 0


def cmd_describe(args: argparse.Namespace) -> int:
    exp = load_experiment(args.config)
    decisions = exp.space.decisions()
    scored_by = f"evaluator {exp.evaluator.name}" if exp.evaluator.name else f"task {exp.task.name}"
    print(f"{args.config}: {type(exp.space).__name__}, {scored_by}")
    print(decision_table(decisions))
    print(f"{len(decisions)} decisions, space size {exp.space.size()}")
    shape = _shape(args, exp)
    if shape is not None and isinstance(exp.space, ArchSpace):
        rng = RandomSuggester(args.seed)
        costs = [estimate_cost(exp.space.sample(rng), shape) for _ in range(max(args.samples, 1))]
        print(f"cost over {len(costs)} sampled architectures (seq_len {shape.seq_len}, "
              f"seed {args.seed}):")
        for name in (FLOPS, PARAMS, ACTIVE_PARAMS):
            values = [c.as_metrics()[name] for c in costs]
            print(f"  {name:<14} min {fmt(min(values)):>8}  median {fmt(statistics.median(values)):>8}"
                  f"  max {fmt(max(values)):>8}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    exp = load_experiment(args.config)
    shape = _shape(args, exp) if isinstance(exp.space, ArchSpace) else None
    rng = RandomSuggester(args.seed)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    for i in range(max(args.n, 0)):
        cand = exp.space.sample(rng)
        line = f"[{i}] arch_id {cand.arch_id}"
        if shape is not None:
            cost = estimate_cost(cand, shape)
            ok, reason = is_feasible(cand, shape, exp.search.budget)
            line += f"  flops {fmt(cost.flops)}  params {fmt(cost.params)}"
            line += "" if ok else f"  (infeasible: {reason})"
        print(line)
        print(cand.describe() if isinstance(cand, ArchConfig) else json.dumps(cand.to_dict()))
        if args.out is not None:
            path = args.out / f"{cand.arch_id}.json"
            if isinstance(cand, ArchConfig):
                cand.save(path)
            else:
                path.write_text(json.dumps(cand.to_dict(), indent=2, sort_keys=True) + "\n")
            print(f"saved {path}")
    return 0


def decision_table(decisions: list[Decision]) -> str:
    """Aligned columns: name, options, condition ("-" when always asked)."""
    rows = [("decision", "options", "condition")]
    rows += [(d.name, _options_text(d), d.condition or "-") for d in decisions]
    widths = [max(len(r[c]) for r in rows) for c in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows)


def _options_text(d: Decision) -> str:
    if d.kind == "int" and isinstance(d.options, range):
        r = d.options
        return f"{r[0]}..{r[-1]}" + (f" step {r.step}" if r.step > 1 else "")
    return ", ".join(str(o) for o in d.options)


def _shape(args: argparse.Namespace, exp: Experiment) -> TaskShape | None:
    """The task's shape, which also validates ``task``; None without a resolver."""
    fn = getattr(args, "task_shape_fn", None)
    if fn is None:
        return None
    with exp.attribute_errors():
        return fn(exp.task)
