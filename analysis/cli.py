"""``dynas``: the command line. Each package registers its own subcommands.

This root lives in the last layer because it is the only place allowed to see every
package: ``space`` (search_space), ``train`` (trainers), ``search``/``resume``
(controllers), ``report``/``export`` (analysis). Handlers import heavy libraries
lazily, so ``dynas --help`` stays instant.

A user error (``DynasError``) prints one line and exits with 2, never a traceback; a
fault of the machine (``InfrastructureError``) one line and 75; a search stopped by
SIGINT/SIGTERM one line (how to resume) and 130/143, without a report.
"""
from __future__ import annotations

import argparse
import sys

from controllers.interrupt import Interrupted, InterruptedNow
from search_space.errors import DynasError, InfrastructureError

EXIT_USER_ERROR = 2
EXIT_INFRASTRUCTURE = 75      # EX_TEMPFAIL: a full disk, a lost node; fix it and resume


class _Parser(argparse.ArgumentParser):
    """Argument errors are user errors too: one line and exit code 2, no usage dump
    (subparsers inherit the class, so every subcommand behaves the same)."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from search_space import commands as space_commands
    from trainers import commands as train_commands
    from controllers import commands as search_commands
    from analysis import commands as analysis_commands

    parser = _Parser(
        prog="dynas",
        description="Dynamic architecture search for MoE / attention transformers "
        "under a continual-learning curriculum.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # The space commands need a task's shape (sequence length) for the cost model;
    # only trainers knows tasks, so the root hands search_space a resolver.
    # Strategy names are controllers' (a registry plugins extend): the root hands
    # search_space the check, as it hands it the task shape.
    space_commands.register(sub, task_shape_fn=_task_shape, search_check_fn=_check_search)
    for module in (train_commands, search_commands, analysis_commands):
        module.register(sub)
    return parser


def _task_shape(task_settings):
    from trainers.tasks import task_shape

    return task_shape(task_settings)


def _check_search(search_settings):
    from controllers.objectives import check_objectives
    from controllers.policies import check_search
    from trainers.results import REPORTED_METRICS

    check_search(search_settings)
    check_objectives(search_settings.objectives, REPORTED_METRICS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
        run_dir = getattr(result, "run_dir", None)       # a search command's RunResult
        if run_dir is not None and not getattr(args, "no_report", True):
            from analysis.commands import write_report_for

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
