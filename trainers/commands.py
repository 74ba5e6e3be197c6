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

from dynas.search_space.errors import ConfigError
from dynas.search_space.names import FINAL_AVG_ACCURACY, FLOPS, FORGETTING_LAST, PARAMS


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train an exported architecture, from scratch or from saved weights",
        description="Train an architecture (arch.json, e.g. from `dynas export`) with the task "
        "and training settings of an experiment file; writes last.ckpt, metrics.json, "
        "acc_matrix.csv, arch.json, curves/ (TensorBoard) and the model (weights.safetensors, "
        "model.json) into --out; the file's space section, if any, is not used. "
        "--init-from starts from a model folder's weights (the same or another task): blocks "
        "and norm always transfer; embedding, positions and head when their sizes match.")
    p.add_argument("--arch", type=Path, metavar="FILE", help="architecture JSON file (default with --init-from: its arch.json)")
    p.add_argument("--init-from", type=Path, metavar="DIR",
                   help="model folder (dynas export --weights, dynas train) whose weights start the training")
    p.add_argument("--config", required=True, type=Path, metavar="FILE", help="experiment YAML (task + training)")
    p.add_argument("--steps", type=int, metavar="N", help="steps per experience (overrides the experiment's)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="set an experiment setting by its key path, checked as if the file held it "
                   "(repeatable; e.g. training.lr=0.001, task.options.patch=4)")
    p.add_argument("--seed", type=int, metavar="N", help="training seed (default: training.seed)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output directory (default: runs/train-<arch_id>)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    again.add_argument("--force", action="store_true", help="overwrite results already in --out")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true", help="no line per experience")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="each experience's line also shows its row of the accuracy matrix")
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

    comp = sub.add_parser(
        "compress", help="prune, recover and int8-quantise a model folder; before/after table",
        description="Structured pruning (least-loaded experts on the validation splits, least "
        "important heads and FFN channels), a short recovery fine-tune that distils the original "
        "on a class-balanced replay sample of every experience (KL on softened logits plus the "
        "label loss), and int8 (torchao: Linear layers on int8 units, heads and experts stored "
        "int8; --qat first runs the same distillation with fake quantisation). Prints params, "
        "file size, CPU latency at each --latency-batches size (median of repeats) and test "
        "accuracy, per stage; the last row is measured on the written folder, loaded back.")
    comp.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    comp.add_argument("--config", type=Path, metavar="FILE", help="experiment YAML the model was trained with: its task "
                      "options and training settings (default: the task the model folder records, with "
                      "that task's default options, and the default training settings)")
    comp.add_argument("--prune", default="", metavar="SPEC", help="experts=N,heads=N,ffn=F (any subset)")
    comp.add_argument("--int8", action="store_true", help="int8: Linear layers on int8 units (activations "
                      "quantised per token), heads and MoE experts stored int8")
    comp.add_argument("--qat", action="store_true", help="quantisation-aware training before int8 "
                      "(implies --int8): --qat-steps distillation steps with fake quantisation")
    comp.add_argument("--qat-steps", type=int, default=200, metavar="N", help="steps of --qat (default: 200)")
    comp.add_argument("--latency-batches", type=int, nargs="+", default=[1, 64], metavar="B",
                      help="batch sizes to time each stage at (default: 1 64)")
    recovery_flags(comp)
    comp.add_argument("--repeats", type=int, default=30, metavar="N", help="timed repeats per latency, "
                      "median (default: 30)")
    comp.add_argument("--out", required=True, type=Path, metavar="DIR")
    comp.add_argument("--force", action="store_true", help="overwrite a model already in --out")
    comp.set_defaults(handler=cmd_compress)


def recovery_flags(parser: argparse.ArgumentParser) -> None:
    """The pruning and recovery options; defaults are ``RecoverySettings``'s (measured)."""
    from .recovery_settings import IMPORTANCES, RecoverySettings

    d = RecoverySettings()
    parser.add_argument("--importance", choices=IMPORTANCES, default=d.importance, help="how heads and FFN "
                        f"channels are ranked: taylor (gradients on the replay sample) or weight norms (default: {d.importance})")
    parser.add_argument("--prune-rounds", type=int, default=d.rounds, metavar="N",
                        help=f"prune and recover in N equal steps (default: {d.rounds})")
    parser.add_argument("--recover-steps", type=int, default=d.steps, metavar="N",
                        help=f"distillation steps after each pruning round (default: {d.steps})")
    parser.add_argument("--recover-lr", type=float, default=d.lr, metavar="LR", help=f"(default: {d.lr})")
    parser.add_argument("--temperature", type=float, default=d.temperature, metavar="T",
                        help=f"distillation temperature (default: {d.temperature})")
    parser.add_argument("--distil-weight", type=float, default=d.alpha, metavar="A", help="weight of the KL "
                        f"term, 1 - A on the labels (default: {d.alpha})")
    parser.add_argument("--recover-per-class", type=int, default=d.per_class, metavar="N",
                        help=f"replay samples per class of every experience (default: {d.per_class})")


def check_size(arch, experiment, batch_size: int, source: str) -> None:
    """Before torch allocates anything: an architecture too large for this machine is a
    one-line error (``search_space.constraints.size_problem``), not a minute of swapping."""
    from dynas.search_space.constraints import MemoryLimit, size_problem

    from .tasks import task_shape

    with experiment.attribute_errors():
        shape = task_shape(experiment.task)
    problem = size_problem(arch, shape, MemoryLimit.per_trial(batch_size))
    if problem:
        raise ConfigError("", f"architecture too large: {problem}", source)


def cmd_train(args: argparse.Namespace) -> int:
    from dynas.search_space.arch import ArchConfig
    from dynas.search_space.experiment import load_experiment

    if args.arch is None and args.init_from is None:
        raise ConfigError("--arch", "required (or --init-from DIR, whose arch.json is used)")
    arch = ArchConfig.load(args.arch if args.arch is not None else args.init_from / "arch.json")
    experiment = load_experiment(args.config, need_space=False)
    if args.set:
        from dynas.search_space.experiment import override_experiment
        from dynas.search_space.overrides import parse_assignment

        experiment = override_experiment(experiment, dict(parse_assignment(t) for t in args.set))
    training = experiment.training
    if args.steps is not None:
        if args.steps < 1:
            raise ConfigError("--steps", f"must be >= 1, got {args.steps}")
        training = dataclasses.replace(training, steps_per_experience=args.steps)
    check_size(arch, experiment, training.batch_size, str(args.arch))

    from .downstream import default_out_dir, train_arch   # torch + Lightning from here on
    from .results import NonFiniteLoss

    out = args.out if args.out is not None else default_out_dir(arch)
    progress = [] if args.quiet else [ExperienceLines(verbose=args.verbose)]
    try:
        with experiment.attribute_errors():       # task options, device: name the file
            metrics = train_arch(arch, experiment.task, training, out_dir=out, seed=args.seed,
                                 resume=args.resume, force=args.force, init_from=args.init_from,
                                 callbacks=progress)
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
    print(f"  results in {out} (curves: tensorboard --logdir {out})")
    return 0


def cmd_portable(args: argparse.Namespace) -> int:
    from dynas.search_space.errors import DynasError

    if args.out.exists() and not args.force:
        raise DynasError(f"{args.out} exists; pass --force to overwrite it")
    from . import compress  # noqa: F401  (registers the rebuild of compressed bundles)
    from .bundle import load_bundle_model
    from .portable import export_portable

    model, bundle = load_bundle_model(args.model_dir)
    print(f"portable model: {export_portable(model, bundle, args.out)}")
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from dynas.search_space.errors import DynasError
    from dynas.search_space.experiment import load_experiment

    from .pruning import PruneSpec

    spec = PruneSpec.parse(args.prune)
    int8 = args.int8 or args.qat
    if not int8 and spec == PruneSpec():
        raise ConfigError("--prune", "nothing to do: give --prune and/or --int8")
    if args.repeats < 1:
        raise ConfigError("--repeats", "--repeats must be >= 1")
    if args.qat and args.qat_steps < 1:
        raise ConfigError("--qat-steps", f"must be >= 1 with --qat, got {args.qat_steps}")
    if min(args.latency_batches) < 1:
        raise ConfigError("--latency-batches", f"batch sizes must be >= 1, got {min(args.latency_batches)}")
    from .recovery_settings import RecoverySettings

    recovery = RecoverySettings(args.recover_steps, args.recover_lr, args.temperature, args.distil_weight,
                                args.recover_per_class, importance=args.importance, rounds=args.prune_rounds)
    recovery.check()
    if args.out.resolve() == args.model_dir.resolve():
        raise DynasError(f"{args.out}: --out must differ from MODEL_DIR")
    from .bundle import BUNDLE_FILES

    taken = [n for n in BUNDLE_FILES if (args.out / n).exists()]
    if taken and not args.force:
        raise DynasError(f"{args.out / taken[0]} exists; pass --force to overwrite it")
    from .compress import compress, table
    from .tasks import build_task

    if args.config is not None:
        experiment = load_experiment(args.config, need_space=False)
        training = experiment.training
        with experiment.attribute_errors():
            task = build_task(experiment.task, seed=training.seed)
    else:
        task, training = task_of_model(args.model_dir)
    rows = compress(args.model_dir, task, args.out, spec, int8,
                    dataclasses.replace(recovery, batch_size=training.batch_size), args.repeats,
                    qat_steps=args.qat_steps if args.qat else 0,
                    latency_batches=tuple(dict.fromkeys(args.latency_batches)))
    import torch

    print(f"compressed {args.model_dir} -> {args.out} (CPU, {torch.get_num_threads()} threads)")
    print(table(rows))
    return 0


def task_of_model(model_dir: Path) -> tuple[Any, Any]:
    """(the task a model folder records, built with that task's default options; the
    default training settings): what ``compress`` measures accuracy on and distils
    with when no ``--config`` is given. One line when the defaults do not give the
    shape the model was trained on."""
    from dynas.search_space.settings import TaskSettings, TrainingSettings

    from .bundle import read_bundle
    from .tasks import build_task

    bundle, training = read_bundle(model_dir), TrainingSettings()
    task = build_task(TaskSettings(name=bundle.task), seed=training.seed)
    if task.shape != bundle.shape:
        raise ConfigError("--config", f"{model_dir} was trained on {bundle.task} with other options "
                          f"({bundle.shape}, the defaults give {task.shape}): give the experiment file")
    return task, training


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
