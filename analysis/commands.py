"""``dynas report`` and ``dynas export``: the analysis subcommands.

Handlers import pandas and matplotlib lazily, so ``dynas --help`` stays instant.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

PICK_HELP = ("knee (the front's knee), best-accuracy, or max-flops=X (best accuracy "
             "with forward FLOPs per sample <= X; X like 2e6 or 2.5M)")


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="write a Markdown report with figures of one or more runs",
        description="Load the trial records of RUN_DIRs and write report.md, trials.csv "
        "and PNG figures (Pareto front, hypervolume per trial, choices on the front, "
        "expert load, accuracy matrix). Several runs are compared on one reference point.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory of a search")
    report.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: RUN_DIR/report of the first run)")
    report.add_argument("--cost", choices=("flops", "flops_effective"), default=None,
                        help="draw the front on static FLOPs or on effective FLOPs (learned "
                        "spans, realised k) instead of the search's own FLOPs objective")
    report.set_defaults(handler=_report)

    export = sub.add_parser(
        "export", help="export one architecture of a run as arch.json (+ pareto.json)",
        description="Pick one trial of RUN_DIR by a rule and write its architecture "
        "(readable by `dynas train --arch`) and, beside it, the whole Pareto front.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a search")
    export.add_argument("--pick", default="knee", metavar="RULE", help=PICK_HELP + " (default: knee)")
    export.add_argument("--out", required=True, metavar="FILE",
                        help="arch JSON file to write (a folder means FOLDER/arch.json; with --weights a folder)")
    export.add_argument("--weights", action="store_true",
                        help="also write the pick's kept model (weights.safetensors, model.json with the "
                        "preprocessing state) into the --out folder, for load_model and train --init-from")
    export.add_argument("--force", action="store_true", help="overwrite existing output files")
    export.set_defaults(handler=_export)
    from .inspect import register as register_inspect   # its own module: dynas inspect
    register_inspect(sub)


def write_report_for(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None,
                     cost: str | None = None) -> Path:
    """Write the report of ``run_dirs`` (after a search, or from ``dynas report``) and
    say where it is."""
    from .report import write_report

    path = write_report(list(run_dirs), out, cost=cost)
    print(f"report: {path}")
    return path


def _report(args: argparse.Namespace) -> int:
    write_report_for(args.run_dirs, args.out, args.cost)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_arch, pareto_path_for

    path = export_arch(args.run_dir, args.pick, args.out, force=args.force, weights=args.weights)
    print(f"arch: {path}\npareto front: {pareto_path_for(path)}")
    if args.weights:
        print(f"model: {path.parent} (load_model, dynas train --init-from)")
    return 0
