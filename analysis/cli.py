"""``dynas``: the command line. Each package registers its own subcommands.

This root lives in the last layer because it is the only place allowed to see every
package: ``space`` (search_space), ``train`` (trainers), ``search``/``resume``
(controllers), ``report``/``export`` (analysis). Handlers import heavy libraries
lazily, so ``dynas --help`` stays instant.

A user error (``DynasError``) prints one line and exits with 2, never a traceback; a
fault of the machine (``InfrastructureError``) one line and 75; a search stopped by
SIGINT/SIGTERM one line (how to resume) and 130/143, without a report.

``--plugin NAME_OR_PATH`` (any number, on every command, before or after it) imports
the user's modules before the parser is built, so whatever they register (a
strategy, a task, a kind) is known to every check (``search_space.plugins``).
``--trust-plugins`` consents to import the plugins a run directory or a model folder
recorded (without it, or the same plugin passed with ``--plugin``, they are refused).
"""
from __future__ import annotations

import argparse
import sys

from dynas.controllers.interrupt import Interrupted, InterruptedNow
from dynas.search_space.errors import DynasError, InfrastructureError

EXIT_USER_ERROR = 2
EXIT_INFRASTRUCTURE = 75      # EX_TEMPFAIL: a full disk, a lost node; fix it and resume


class _Defaults(argparse.HelpFormatter):
    """``--help`` shows each option's default: ``(default: X)`` appended to a help
    text that does not already say its default, for a default worth showing (not
    None, False or empty: those mean "not given")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, [], "") or default is argparse.SUPPRESS
                or not action.option_strings or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Argument errors are user errors too: one line and exit code 2, no usage dump
    (subparsers inherit the class, so every subcommand behaves the same); every
    ``--help`` shows defaults (``_Defaults``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Defaults)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


TRUST_HELP = ("import the plugins the run directory or model folder recorded (code that came with "
              "it); without this only those also passed with --plugin are imported")
PLUGIN_HELP = ("import this module, .py file or folder first (repeatable); what it registers "
               "(tasks, kinds, strategies, metrics, evaluators) is usable everywhere")


def build_parser() -> argparse.ArgumentParser:
    from dynas.search_space import commands as space_commands
    from dynas.trainers import commands as train_commands
    from dynas.controllers import commands as search_commands
    from dynas.controllers.records import dynas_version
    from dynas.analysis import commands as analysis_commands
    from dynas.analysis import listing

    parser = _Parser(
        prog="dynas",
        description="Dynamic architecture search for MoE / attention transformers "
        "under a continual-learning curriculum.",
    )
    parser.add_argument("--version", action="version", version=f"dynas {dynas_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The space commands need a task's shape (sequence length) for the cost model;
    # only trainers knows tasks, so the root hands search_space a resolver.
    # Strategy names are controllers' (a registry plugins extend): the root hands
    # search_space the check, as it hands it the task shape.
    space_commands.register(sub, task_shape_fn=_task_shape, search_check_fn=_check_search)
    for module in (train_commands, search_commands, analysis_commands, listing):
        module.register(sub)
    _add_plugin_flag(parser)
    return parser


def _add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    """``--plugin`` on this parser and every subcommand below it (``_plugin_args``
    reads the values before any parser exists; these only make argparse accept them)."""
    parser.add_argument("--plugin", action="append", metavar="NAME_OR_PATH", help=PLUGIN_HELP)
    parser.add_argument("--trust-plugins", action="store_true", default=argparse.SUPPRESS, help=TRUST_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_plugin_flag(child)


def _plugin_args(argv: list[str]) -> argparse.Namespace:
    """The ``--plugin`` values and ``--trust-plugins`` anywhere in ``argv`` (before ``--``)."""
    argv = argv[: argv.index("--")] if "--" in argv else argv
    scan = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    scan.add_argument("--plugin", action="append", default=[])
    scan.add_argument("--trust-plugins", action="store_true")
    return scan.parse_known_args(argv)[0]


def load_cli_plugins(argv: list[str]) -> None:
    from dynas.search_space.plugins import load_plugins, trust_plugins

    flags = _plugin_args(argv)
    trust_plugins(flags.trust_plugins)
    load_plugins(flags.plugin, key="--plugin")


def _task_shape(task_settings):
    from dynas.trainers.tasks import task_shape

    return task_shape(task_settings)


def _check_search(experiment):
    """The search section's checks only controllers know: the strategy and its settings,
    and (an architecture space) objectives naming metrics that training reports."""
    from dynas.controllers.policies import check_search
    from dynas.controllers.run.prepare import check_metrics, search_baselines
    from dynas.search_space.space import ArchSpace

    check_search(experiment.search)
    if isinstance(experiment.space, ArchSpace):
        check_metrics(experiment.search)
        search_baselines(experiment, experiment.search)     # what `search` refuses, validate refuses


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_cli_plugins(argv)
    except DynasError as err:
        print(f"dynas: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
        run_dir = getattr(result, "run_dir", None)       # a search command's RunResult
        if run_dir is not None and not getattr(args, "no_report", True):
            from dynas.analysis.commands import write_report_for

            write_report_for([run_dir], out=None)
        return int(getattr(result, "exit_code", result) or 0)
    except DynasError as err:
        print(f"dynas: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except InfrastructureError as err:
        print(f"dynas: error: {err}", file=sys.stderr)
        return EXIT_INFRASTRUCTURE
    except (Interrupted, InterruptedNow) as err:    # a search stopped by a signal
        print(err.line(), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("dynas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
