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
        "train", help="train an exported architecture, from scratch or from saved weights",
        description="Train an architecture (arch.json, e.g. from `dynas export`) with the task "
        "and training settings of an experiment file; writes last.ckpt, metrics.json, "
        "acc_matrix.csv, arch.json and the model (weights.safetensors, model.json) into --out. "
        "--init-from starts from a model folder's weights (the same or another task): blocks "
        "and norm always transfer; embedding, positions and head when their sizes match.")
    p.add_argument("--arch", type=Path, help="architecture JSON file (default with --init-from: its arch.json)")
    p.add_argument("--init-from", type=Path, metavar="DIR",
                   help="model folder (dynas export --weights, dynas train) whose weights start the training")
    p.add_argument("--config", required=True, type=Path, help="experiment YAML (task + training)")
    p.add_argument("--steps", type=int, help="steps per experience (overrides the experiment's)")
    p.add_argument("--seed", type=int, help="training seed (default: training.seed)")
    p.add_argument("--out", type=Path, help="output directory (default: runs/train-<arch_id>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--force", action="store_true", help="overwrite results already in --out")
    p.set_defaults(handler=cmd_train)

    port = sub.add_parser(
        "portable", help="write a model folder as a portable file (.pt2 torch.export, .onnx)",
        description="Export a model folder (dynas export --weights, dynas train) to a torch.export "
        "program (.pt2) or ONNX (.onnx, needs the onnx extra): preprocessed inputs -> logits, "
        "dynamic batch size. The preprocessing state stays in the folder's model.json.")
    port.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    port.add_argument("--out", required=True, type=Path, metavar="FILE", help="FILE.pt2 or FILE.onnx")
    port.add_argument("--force", action="store_true", help="overwrite an existing file")
    port.set_defaults(handler=cmd_portable)


def cmd_train(args: argparse.Namespace) -> int:
    from search_space.arch import ArchConfig
    from search_space.experiment import load_experiment

    if args.arch is None and args.init_from is None:
        raise ConfigError("--arch", "required (or --init-from DIR, whose arch.json is used)")
    arch = ArchConfig.load(args.arch if args.arch is not None else args.init_from / "arch.json")
    experiment = load_experiment(args.config)
    training = experiment.training
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError("--steps", f"must be >= 1, got {args.steps}")
        training = dataclasses.replace(training, steps_per_experience=args.steps)

    from .downstream import default_out_dir, train_arch   # torch + Lightning from here on
    from .results import NonFiniteLoss

    out = args.out if args.out is not None else default_out_dir(arch)
    try:
        with experiment.attribute_errors():       # task options, device: name the file
            metrics = train_arch(arch, experiment.task, training, out_dir=out, seed=args.seed,
                                 resume=args.resume, force=args.force, init_from=args.init_from)
    except NonFiniteLoss as err:
        print(f"dynas: training diverged: {err}", file=sys.stderr)
        return 1
    v = metrics.values
    print(f"trained {arch.arch_id} on {experiment.task.name} for {metrics.steps} steps "
          f"in {metrics.wall_time_s:.1f} s")
    print(f"  {FINAL_AVG_ACCURACY} {v[FINAL_AVG_ACCURACY]:.4f}  {FORGETTING_LAST} "
          f"{v[FORGETTING_LAST]:.4f}  {FLOPS} {v[FLOPS]:.3g}  {PARAMS} {int(v[PARAMS])}")
    if args.init_from is not None:
        from .transfer import plan_transfer
        from .tasks import task_shape

        print(f"  {plan_transfer(args.init_from, arch, task_shape(experiment.task)).describe()}")
    print(f"  results in {out}")
    return 0


def cmd_portable(args: argparse.Namespace) -> int:
    from search_space.errors import DynasError

    if args.out.exists() and not args.force:
        raise DynasError(f"{args.out} exists; pass --force to overwrite it")
    from .bundle import load_bundle_model
    from .portable import export_portable

    model, bundle = load_bundle_model(args.model_dir)
    print(f"portable model: {export_portable(model, bundle, args.out)}")
    return 0
