"""MkDocs hooks: the command-line reference page, generated from the argparse parsers,
and the source tree the API reference (mkdocstrings) reads.

``reference/cli.md`` is never written by hand: at every build this hook asks
``dynas.analysis.cli.build_parser()`` for each command's ``--help`` text, so the page
cannot drift from the CLI. It needs ``dynas`` importable (installed, or on PYTHONPATH);
building the parser imports no torch and no Ray.

The repository root *is* the ``dynas`` package (pyproject's ``package-dir``), but its
folder may have any name and also holds tests, examples and ``.venv``. mkdocstrings
reads source statically from a folder named after the package, so ``on_config`` lays
out a temporary ``dynas/`` of links to the package's own files only.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

PAGE = "reference/cli.md"
WIDTH = "100"      # argparse wraps help to $COLUMNS: fixed, so the page is the same everywhere


PACKAGE_PARTS = ("__init__.py", "search_space", "trainers", "controllers", "analysis")


@event_priority(100)      # before mkdocstrings' on_config, which creates its handlers
def on_config(config):
    root = Path(config.config_file_path).resolve().parent
    tree = Path(tempfile.mkdtemp(prefix="dynas-docs-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    (tree / "dynas").mkdir()
    for part in PACKAGE_PARTS:
        (tree / "dynas" / part).symlink_to(root / part)
    python = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    python.setdefault("paths", []).insert(0, str(tree))
    return config


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=cli_markdown()))
    return files


def cli_markdown() -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        from dynas.analysis.cli import build_parser

        root = build_parser()
        lines = ["# Command line", "",
                 "Generated at every docs build from the `dynas` argument parsers "
                 "(`dynas.analysis.cli.build_parser`), so it matches the installed "
                 "version exactly. `dynas COMMAND --help` prints the same text.", ""]
        sections = list(_walk(root, ["dynas"]))
        lines += ["| command | what |", "|---|---|"]
        lines += [f"| [`{' '.join(path)}`](#{_anchor(path)}) | {summary} |"
                  for path, _, summary in sections[1:]]
        lines.append("")
        for path, parser, _ in sections:
            lines += [f"## {' '.join(path)} {{#{_anchor(path)}}}", "",
                      "```text", parser.format_help().rstrip(), "```", ""]
        return "\n".join(lines)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _walk(parser: argparse.ArgumentParser, path: list[str], summary: str = ""):
    """(path, parser, one-line help) for this parser and every subcommand below it."""
    yield path, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: (choice.help or "") for choice in action._choices_actions}
            seen = set()
            for name, child in action.choices.items():
                if id(child) in seen:      # an alias names the same parser twice
                    continue
                seen.add(id(child))
                yield from _walk(child, path + [name], helps.get(name, "").replace("|", "\\|"))


def _anchor(path: list[str]) -> str:
    return "-".join(path)
