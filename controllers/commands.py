"""``dynas search``, ``dynas resume`` and ``dynas confirm``: the controllers' subcommands.

Each returns a ``RunResult`` (the run directory and the exit code) so the CLI root
writes the report afterwards (unless ``--no-report``). The exit code is 0 when some
trial completed and 1 (after one line saying so) when none did. Ray is imported only
when a handler runs; ``--strategy`` accepts any registered strategy, checked with the
file's (``controllers.policies.check_search``) once the file's plugins are imported.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

EXECUTORS = ("ray", "local")     # controllers.runs.EXECUTORS (not imported: --help stays light)
EXIT_NOTHING_COMPLETED = 1


@dataclass(frozen=True)
class RunResult:
    """What a search command hands the CLI root: where the run is, how to exit."""

    run_dir: Path
    exit_code: int = 0


def register(sub: argparse._SubParsersAction) -> None:
    from .policies import POLICIES

    p = sub.add_parser(
        "search", help="search an experiment's space on Ray Tune (or in this process)",
        description="Search an experiment file's space with a policy on Ray Tune. Without "
        "--address a private local Ray instance is started; with it, dynas joins that cluster "
        "(token auth: set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH).")
    p.add_argument("config", type=Path, help="experiment file (YAML)")
    p.add_argument("--strategy", help="search policy, a registered strategy: "
                   f"{', '.join(POLICIES)} or a plugin's (default: the file's search.strategy)")
    p.add_argument("--trials", type=int, help="distinct architectures to train to completion, "
                   "failure or pruning (duplicates are reused, not counted)")
    p.add_argument("--concurrent", type=int, help="trials running at once")
    p.add_argument("--address", help="Ray cluster address HOST:PORT (default: a private local instance)")
    p.add_argument("--name", help="run directory name (default: <config>-<strategy>-<UTC time>)")
    p.add_argument("--seed", type=int, help="policy seed (default: the file's search.seed)")
    p.add_argument("--storage", type=Path, help="parent of run directories (default: search.storage)")
    p.add_argument("--runner", choices=EXECUTORS, default="ray",
                   help="where trials train: ray (Ray Tune; default) or local (this process, no Ray)")
    _common(p)
    p.set_defaults(handler=_search)

    r = sub.add_parser(
        "resume", help="continue a killed search, or extend a finished one",
        description="Continue a search run directory until it holds its requested number of "
        "distinct finished architectures (plus --extra-trials).")
    r.add_argument("run_dir", type=Path, help="run directory made by `dynas search`")
    r.add_argument("--extra-trials", type=int, default=0, help="train this many more architectures")
    r.add_argument("--address", help="Ray cluster address HOST:PORT (default: a private local instance)")
    _runner(r)
    _common(r)
    r.set_defaults(handler=_resume)

    c = sub.add_parser(
        "confirm", help="re-train the best front candidates with new seeds",
        description="Give the K best candidates of a run (front rank, then the first objective, "
        "on validation values) S seed repeats each, trained like any trial with fresh training "
        "seeds and recorded as repeats of their trial. The report then shows the front from "
        "means with error bars. Rerunning trains only what is missing.")
    c.add_argument("run_dir", type=Path, help="run directory made by `dynas search`")
    c.add_argument("--top", type=int, required=True, help="candidates to confirm (K)")
    c.add_argument("--seeds", type=int, required=True, help="seed repeats per candidate (S)")
    c.add_argument("--address", help="Ray cluster address HOST:PORT (default: a private local instance)")
    _runner(c)
    _common(c)
    c.set_defaults(handler=_confirm)
    _register_calibrate(sub)


def _register_calibrate(sub: argparse._SubParsersAction) -> None:
    k = sub.add_parser(
        "calibrate", help="does the search's ranking hold across seeds and longer training?",
        description="Train N architectures drawn uniformly from an experiment's space at several "
        "budgets (multiples of training.steps_per_experience) with S training seeds each, through "
        "the same executors as a search, and report the noise ceiling (Kendall tau between seeds), "
        "seed std against the spread across architectures, the transfer of rankings between budgets "
        "(tau, bootstrap intervals) and the smallest budget whose ranking transfers to the largest. "
        "Given a calibration's run directory instead, trains only what it still misses.")
    k.add_argument("config", type=Path, help="experiment file (YAML), or a calibration run directory to finish")
    k.add_argument("--archs", type=int, default=24, help="architectures to draw (default 24)")
    k.add_argument("--seeds", type=int, default=2, help="training seeds per architecture and budget (default 2)")
    k.add_argument("--budgets", type=int, nargs="+", default=[1, 4],
                   help="increasing multiples of steps_per_experience (default: 1 4)")
    k.add_argument("--seed", type=int, help="seed of the architecture draw (default: the file's search.seed)")
    k.add_argument("--address", help="Ray cluster address HOST:PORT (default: a private local instance)")
    k.add_argument("--name", help="run directory name (default: <config>-calibrate-<UTC time>)")
    k.add_argument("--storage", type=Path, help="parent of run directories (default: search.storage)")
    k.add_argument("--runner", choices=EXECUTORS, default="ray",
                   help="where trainings run: ray (Ray Tune; default) or local (this process, no Ray)")
    _common(k)
    k.set_defaults(handler=_calibrate)


def _runner(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runner", choices=EXECUTORS, default=None,
                   help="where trials train: ray or local (default: the runner that made the run)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose",
                      help="print only the summary at the end (and errors)")
    talk.add_argument("-v", "--verbose", type=int, nargs="?", const=2, default=1, choices=(0, 1, 2, 3),
                      help="1 (default): one line per finished trial; 2 (plain --verbose): and Ray "
                      "Tune's status table; 3: and the workers' logs and tracebacks; 0: as --quiet")
    p.set_defaults(verbose=1)             # both options share the dest


def _search(args: argparse.Namespace) -> RunResult:
    from .runs import run_search

    return _finished(run_search(args.config, strategy=args.strategy, trials=args.trials,
                                concurrent=args.concurrent, address=args.address, name=args.name,
                                seed=args.seed, storage=args.storage, verbose=args.verbose,
                                runner=args.runner))


def _resume(args: argparse.Namespace) -> RunResult:
    from .runs import resume_search

    return _finished(resume_search(args.run_dir, args.extra_trials, address=args.address,
                                   verbose=args.verbose, runner=args.runner))


def _confirm(args: argparse.Namespace) -> RunResult:
    from .runs import confirm_run

    return _finished(confirm_run(args.run_dir, args.top, args.seeds, address=args.address,
                                 verbose=args.verbose, runner=args.runner))


def _calibrate(args: argparse.Namespace) -> RunResult:
    from .run.calibrate import run_calibration

    return _finished(run_calibration(args.config, archs=args.archs, seeds=args.seeds, budgets=args.budgets,
                                     runner=args.runner, address=args.address, storage=args.storage,
                                     name=args.name, seed=args.seed, verbose=args.verbose))


def _finished(run_dir: Path) -> RunResult:
    """Exit 0 when some trial completed; else one line and exit 1."""
    from .records import iter_records

    print(run_dir)
    if any(r.state == "complete" for r in iter_records(run_dir)):
        return RunResult(run_dir)
    print(f"dynas: no trial completed in {run_dir}; see the reasons in trials.jsonl", file=sys.stderr)
    return RunResult(run_dir, EXIT_NOTHING_COMPLETED)
