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
ORDERS = ("objective", "knee")   # controllers.run.confirm.ORDERS (likewise)
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
    p.add_argument("--strategy", metavar="NAME", help="search policy, a registered strategy: "
                   f"{', '.join(POLICIES)} or a plugin's (default: the file's search.strategy)")
    p.add_argument("--trials", type=int, metavar="N", help="distinct architectures to train to completion, "
                   "failure or pruning (duplicates are reused, not counted; default: the file's search.trials)")
    p.add_argument("--concurrent", type=int, metavar="N",
                   help="trials running at once (default: the file's search.concurrent)")
    p.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address (default: a private local instance)")
    p.add_argument("--name", metavar="NAME", help="run directory name (default: <config>-<strategy>-<UTC time>)")
    p.add_argument("--seed", type=int, metavar="N", help="policy seed (default: the file's search.seed)")
    p.add_argument("--storage", type=Path, metavar="DIR", help="parent of run directories (default: search.storage)")
    p.add_argument("--runner", choices=EXECUTORS, default="ray",
                   help="where trials train: ray (Ray Tune; default) or local (this process, no Ray)")
    add_set_flag(p)
    _common(p)
    p.set_defaults(handler=_search)

    r = sub.add_parser(
        "resume", help="continue a killed search, or extend a finished one",
        description="Continue a search run directory until it holds its requested number of "
        "distinct finished architectures (plus --extra-trials).")
    r.add_argument("run_dir", type=Path, help="run directory made by `dynas search`")
    r.add_argument("--extra-trials", type=int, default=0, metavar="N",
                   help="train this many more architectures (default: 0)")
    r.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address (default: a private local instance)")
    add_set_flag(r, RUN_SET_NOTE)
    _runner(r)
    _common(r)
    r.set_defaults(handler=_resume)

    c = sub.add_parser(
        "confirm", help="re-train the best front candidates with new seeds",
        description="Give the K best candidates of a run (front rank, then --order, on "
        "validation values), or the trials named by --trials, S seed repeats each, trained like "
        "any trial with fresh training seeds and recorded as repeats of their trial; a line per "
        "finished repeat (k of N, ETA). The report then shows the front from means with error "
        "bars. Rerunning trains only what is missing.")
    c.add_argument("run_dir", type=Path, help="run directory made by `dynas search`")
    which = c.add_mutually_exclusive_group(required=True)
    which.add_argument("--top", type=int, metavar="K", help="confirm the K best candidates")
    which.add_argument("--trials", type=_trial_ids, metavar="ID,ID",
                       help="confirm these trials (proposal ids as in trials.csv, e.g. 9,6)")
    c.add_argument("--order", choices=ORDERS, default="objective",
                   help="with --top, within a front rank: objective (the first objective, best first) "
                   "or knee (the front's knee first, then the candidates nearest to it) (default: objective)")
    c.add_argument("--seeds", type=int, required=True, metavar="S", help="seed repeats per candidate")
    c.add_argument("--address", metavar="HOST:PORT", help="Ray cluster address (default: a private local instance)")
    add_set_flag(c, RUN_SET_NOTE)
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
    add_set_flag(k, "; a new calibration only")
    _common(k)
    k.set_defaults(handler=_calibrate)

    d = sub.add_parser(
        "dashboard", help="serve a run's Optuna study with optuna-dashboard, on 127.0.0.1 only",
        description="Serve RUN_DIR/optuna.db (the Optuna study a tpe or nsga2 run mirrors) with "
        "optuna-dashboard (pip install 'dynas[dashboard]'), listening on 127.0.0.1 only: "
        "reach it from another machine through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT).")
    d.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory made by `dynas search`")
    d.add_argument("--port", type=int, default=8080, metavar="N", help="port on 127.0.0.1")
    d.set_defaults(handler=_dashboard)


SET_HELP = ("set an experiment setting by its key path, checked as if the file held it "
            "(repeatable; e.g. training.steps_per_experience=20, search.concurrent=4)")
RUN_SET_NOTE = ("; on a run only settings that leave what its trials measure unchanged: "
                "search.concurrent, cpus_per_trial, gpus_per_trial, max_failures, loggers, "
                "keep_weights, confirm")


def add_set_flag(p: argparse.ArgumentParser, note: str = "") -> None:
    """``--set KEY.PATH=VALUE`` (repeatable) on ``p``; ``settings_of(args)`` reads it.
    One helper for every command that runs an experiment (search, resume, confirm,
    calibrate): the value is parsed as in the YAML file (``search_space.overrides``)."""
    p.add_argument("--set", action="append", default=[], dest="set", metavar="KEY.PATH=VALUE",
                   help=SET_HELP + note)


def settings_of(args: argparse.Namespace) -> dict:
    """The ``--set`` assignments of ``args`` as ``{key path: value}``, in order (a bad
    one is a one-line ``ConfigError``)."""
    from dynas.search_space.overrides import parse_assignment

    return dict(parse_assignment(text) for text in getattr(args, "set", None) or ())


def _trial_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected trial ids like 9,6, got {text!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one trial id")
    return ids


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
    from dynas.search_space.experiment import load_experiment, override_experiment

    from .runs import run_search

    settings = settings_of(args)
    experiment = override_experiment(load_experiment(args.config), settings) if settings else args.config
    return _finished(run_search(experiment, strategy=args.strategy, trials=args.trials,
                                concurrent=args.concurrent, address=args.address, name=args.name,
                                seed=args.seed, storage=args.storage, verbose=args.verbose,
                                runner=args.runner))


def _resume(args: argparse.Namespace) -> RunResult:
    from .runs import resume_search

    return _finished(resume_search(args.run_dir, args.extra_trials, address=args.address,
                                   verbose=args.verbose, runner=args.runner, settings=settings_of(args)))


def _confirm(args: argparse.Namespace) -> RunResult:
    from .runs import confirm_run

    return _finished(confirm_run(args.run_dir, args.top, args.seeds, address=args.address,
                                 verbose=args.verbose, runner=args.runner, trials=args.trials,
                                 order=args.order, settings=settings_of(args)))


def _dashboard(args: argparse.Namespace) -> int:
    """optuna-dashboard on the run's study, bound to loopback (never all interfaces)."""
    from dynas.search_space.errors import ConfigError, DynasError

    from .records import OPTUNA_DB, require_run_dir
    from .tune.cluster import LOOPBACK

    study = require_run_dir(args.run_dir).resolve() / OPTUNA_DB
    if not study.is_file():
        raise DynasError(f"{study}: no Optuna study in this run (only tpe and nsga2 runs keep one); "
                         f"`dynas report {args.run_dir}` shows any run")
    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"must be 1-65535, got {args.port}")
    try:
        from optuna_dashboard import run_server
    except ImportError:
        raise DynasError("optuna-dashboard is not installed: pip install 'dynas[dashboard]'") from None
    print(f"serving {study} on http://{LOOPBACK}:{args.port}/ (Ctrl-C stops)", flush=True)
    run_server(f"sqlite:///{study.as_posix()}", host=LOOPBACK, port=args.port)
    return 0


def _calibrate(args: argparse.Namespace) -> RunResult:
    from .run.calibrate import run_calibration

    return _finished(run_calibration(args.config, archs=args.archs, seeds=args.seeds, budgets=args.budgets,
                                     runner=args.runner, address=args.address, storage=args.storage,
                                     name=args.name, seed=args.seed, verbose=args.verbose,
                                     settings=settings_of(args)))


def _finished(run_dir: Path) -> RunResult:
    """Exit 0 when some trial completed; else one line and exit 1."""
    from .records import iter_records

    print(run_dir)
    if any(r.state == "complete" for r in iter_records(run_dir)):
        return RunResult(run_dir)
    print(f"dynas: no trial completed in {run_dir}; see the reasons in trials.jsonl", file=sys.stderr)
    return RunResult(run_dir, EXIT_NOTHING_COMPLETED)
