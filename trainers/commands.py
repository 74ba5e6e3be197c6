"""``dynas train``: downstream training of an exported architecture.

Importing this module loads neither torch nor Lightning (the handler does), so the
``dynas`` root and its ``--help`` stay fast.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from search_space.errors import ConfigError
from search_space.names import FINAL_AVG_ACCURACY, FLOPS, FORGETTING_LAST, PARAMS


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train an exported architecture from scratch",
        description="Train an architecture (arch.json, e.g. from `dynas export`) with the task "
        "and training settings of an experiment file; writes last.ckpt, metrics.json, "
        "acc_matrix.csv and arch.json into --out.")
    p.add_argument("--arch", required=True, type=Path, help="architecture JSON file")
    p.add_argument("--config", required=True, type=Path, help="experiment YAML (task + training)")
    p.add_argument("--steps", type=int, help="steps per experience (overrides the experiment's)")
    p.add_argument("--seed", type=int, help="training seed (default: training.seed)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/train-<arch_id>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.set_defaults(handler=cmd_train)


def check_size(arch, experiment, batch_size: int, source: str) -> None:
    """Before torch allocates anything: an architecture too large for this machine is a
    one-line error (``search_space.constraints.size_problem``), not a minute of swapping."""
    from search_space.constraints import MemoryLimit, size_problem

    from .tasks import task_shape

    with experiment.attribute_errors():
        shape = task_shape(experiment.task)
    problem = size_problem(arch, shape, MemoryLimit.per_trial(batch_size))
    if problem:
        raise ConfigError("", f"architecture too large: {problem}", source)


def cmd_train(args: argparse.Namespace) -> int:
    from search_space.arch import ArchConfig
    from search_space.experiment import load_experiment

    arch = ArchConfig.load(args.arch)
    experiment = load_experiment(args.config)
    training = experiment.training
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError("--steps", f"must be >= 1, got {args.steps}")
        training = dataclasses.replace(training, steps_per_experience=args.steps)
    check_size(arch, experiment, training.batch_size, str(args.arch))

    from .downstream import default_out_dir, train_arch   # torch + Lightning from here on
    from .results import NonFiniteLoss

    out = args.out if args.out is not None else default_out_dir(arch)
    try:
        with experiment.attribute_errors():       # task options, device: name the file
            metrics = train_arch(arch, experiment.task, training, out_dir=out, seed=args.seed,
                                 resume=args.resume, force=args.force)
    except NonFiniteLoss as err:
        print(f"dynas: training diverged: {err}", file=sys.stderr)
        return 1
    v = metrics.values
    print(f"trained {arch.arch_id} on {experiment.task.name} for {metrics.steps} steps "
          f"in {metrics.wall_time_s:.1f} s")
    print(f"  {FINAL_AVG_ACCURACY} {v[FINAL_AVG_ACCURACY]:.4f}  {FORGETTING_LAST} "
          f"{v[FORGETTING_LAST]:.4f}  {FLOPS} {v[FLOPS]:.3g}  {PARAMS} {int(v[PARAMS])}")
    print(f"  results in {out}")
    return 0
