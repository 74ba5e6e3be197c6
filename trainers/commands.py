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
        "and training settings of an experiment file (its space section, if any, is not "
        "used); writes last.ckpt, metrics.json, acc_matrix.csv, arch.json and curves/ "
        "(TensorBoard) into --out.")
    p.add_argument("--arch", required=True, type=Path, help="architecture JSON file")
    p.add_argument("--config", required=True, type=Path, help="experiment YAML (task + training)")
    p.add_argument("--steps", type=int, help="steps per experience (overrides the experiment's)")
    p.add_argument("--seed", type=int, help="training seed (default: training.seed)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/train-<arch_id>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--force", action="store_true", help="overwrite results already in --out")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="no line per experience")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="each experience's line also shows its row of the accuracy matrix")
    p.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from search_space.arch import ArchConfig
    from search_space.experiment import load_experiment

    arch = ArchConfig.load(args.arch)
    experiment = load_experiment(args.config, need_space=False)
    training = experiment.training
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError("--steps", f"must be >= 1, got {args.steps}")
        training = dataclasses.replace(training, steps_per_experience=args.steps)

    from .downstream import default_out_dir, train_arch   # torch + Lightning from here on
    from .results import NonFiniteLoss

    out = args.out if args.out is not None else default_out_dir(arch)
    progress = [] if args.quiet else [ExperienceLines(verbose=args.verbose)]
    try:
        with experiment.attribute_errors():       # task options, device: name the file
            metrics = train_arch(arch, experiment.task, training, out_dir=out, seed=args.seed,
                                 resume=args.resume, force=args.force, callbacks=progress)
    except NonFiniteLoss as err:
        print(f"dynas: training diverged: {err}", file=sys.stderr)
        return 1
    v = metrics.values
    print(f"trained {arch.arch_id} on {experiment.task.name} for {metrics.steps} steps "
          f"in {metrics.wall_time_s:.1f} s")
    print(f"  {FINAL_AVG_ACCURACY} {v[FINAL_AVG_ACCURACY]:.4f}  {FORGETTING_LAST} "
          f"{v[FORGETTING_LAST]:.4f}  {FLOPS} {v[FLOPS]:.3g}  {PARAMS} {int(v[PARAMS])}")
    print(f"  results in {out} (curves: tensorboard --logdir {out})")
    return 0


class ExperienceLines:
    """A ``FitCallback``: one line per finished experience, with the time since start."""

    def __init__(self, verbose: bool = False):
        import time

        self.verbose, self.clock = verbose, time.monotonic
        self.started = self.clock()

    def on_experience_end(self, progress: Any) -> None:
        v = progress.values
        width = len(str(progress.num_experiences))
        line = (f"experience {progress.experience + 1:>{width}}/{progress.num_experiences}  "
                f"{FINAL_AVG_ACCURACY} {v.get(FINAL_AVG_ACCURACY, float('nan')):.4f}  "
                f"{FORGETTING_LAST} {v.get(FORGETTING_LAST, float('nan')):.4f}  "
                f"({self.clock() - self.started:.1f} s)")
        if self.verbose and progress.acc_matrix:
            line += "  row " + " ".join(f"{a:.3f}" for a in progress.acc_matrix[-1])
        print(line, flush=True)
