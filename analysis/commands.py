"""``dynas report`` and ``dynas export``: the analysis subcommands.

Handlers import pandas and matplotlib lazily, so ``dynas --help`` stays instant.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

from dynas.search_space.errors import DynasError

PICK_HELP = ("knee (the knee of the front of first measurements), knee-means (the knee of "
             "the front of seed means, as the report re-picks it after `dynas confirm`), "
             "best-accuracy, max-flops=X (best accuracy with forward FLOPs per sample <= X; X like "
             "2e6 or 2.5M), trial=N (a trial id of trials.csv) or arch_id=HEX (default: knee-means "
             "when the run has confirmed candidates, else knee; the command says which it used)")


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser(
        "report", help="write a Markdown report with figures of one or more runs",
        description="Load the trial records of RUN_DIRs and write report.md, trials.csv "
        "and PNG figures (Pareto front, hypervolume per trial, choices on the front, "
        "expert load, accuracy matrix). Several runs are compared on one reference point.")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directory of a search")
    report.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: RUN_DIR/report of the first run)")
    report.add_argument("--cost", choices=("flops", "flops_effective", "latency_ms"), default=None,
                        help="draw the front on static FLOPs, effective FLOPs (learned spans, realised k) "
                        "or measured latency instead of the search's own FLOPs objective (default: the "
                        "search's own)")
    report.add_argument("--mixed-budgets", action="store_true",
                        help="compare the hypervolumes of runs trained at different budgets anyway "
                        "(default: refused, with a line saying why)")
    report.set_defaults(handler=_report)

    export = sub.add_parser(
        "export", help="export one architecture of a run as arch.json (+ pareto.json)",
        description="Pick one trial of RUN_DIR by a rule and write its architecture "
        "(readable by `dynas train --arch`) and, beside it, the whole Pareto front.")
    export.add_argument("run_dir", metavar="RUN_DIR", help="run directory of a search")
    export.add_argument("--pick", default="auto", metavar="RULE", help=PICK_HELP)
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
                     cost: str | None = None, mixed_budgets: bool = False) -> Path:
    """Write the report of ``run_dirs`` (after a search, or from ``dynas report``) and
    say where it is."""
    from .report import write_report

    try:
        path = write_report(list(run_dirs), out, cost=cost, mixed_budgets=mixed_budgets)
    except OSError as err:      # a read-only run directory, --out a file or under /proc
        where = out if out is not None else Path(run_dirs[0]) / "report"
        raise DynasError(f"{where}: cannot write the report there ({err.strerror or err}); "
                         "give --out a writable folder") from None
    print(f"report: {path}")
    return path


def _report(args: argparse.Namespace) -> int:
    write_report_for(args.run_dirs, args.out, args.cost, args.mixed_budgets)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_arch, pareto_path_for

    try:
        path = export_arch(args.run_dir, args.pick, args.out, force=args.force, weights=args.weights)
    except OSError as err:      # --out on a read-only file system, under /proc, below a file
        raise DynasError(f"{args.out}: cannot write there ({err.strerror or err})") from None
    sidecar = pareto_path_for(path)
    picked = json.loads(sidecar.read_text())["picked"]
    default = " (the default: no --pick given)" if args.pick == "auto" else ""
    print(f"picked trial {picked['proposal_id']} ({picked['arch_id']}) by {picked['rule']}{default}")
    for wrote, what in written_files(path, args.weights):
        print(f"wrote {wrote.resolve()} ({what})")
    if args.weights:
        print(f"model: {path.parent.resolve()} (load_model, dynas train --init-from)")
    return 0


def written_files(arch_path: Path, weights: bool) -> list[tuple[Path, str]]:
    """Every file ``dynas export`` wrote, with what it holds: the arch (with --weights
    the whole model bundle) and the front."""
    from dynas.trainers.bundle import BUNDLE_FILES

    from .export import pareto_path_for

    files = [arch_path.parent / name for name in BUNDLE_FILES] if weights else [arch_path]
    return ([(f, "architecture" if f.name == arch_path.name else "model") for f in files if f.exists()]
            + [(pareto_path_for(arch_path), "Pareto front and the pick")])
