"""MkDocs hook: the command-line reference page, generated from the argparse parsers.

``reference/cli.md`` is never written by hand: at every build this hook asks
``dynas.analysis.cli.build_parser()`` for each command's ``--help`` text, so the page
cannot drift from the CLI. It needs ``dynas`` importable (installed, or on PYTHONPATH);
building the parser imports no torch and no Ray.
"""
from __future__ import annotations

import argparse
import os

from mkdocs.structure.files import File

PAGE = "reference/cli.md"
WIDTH = "100"      # argparse wraps help to $COLUMNS: fixed, so the page is the same everywhere


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
