"""``--help`` of the commands: defaults shown, one metavar style (a word for what the
value is: N, FILE, DIR, NAME, HOST:PORT, or the choices), never argparse's DEST."""
from __future__ import annotations

import argparse

import pytest

from dynas.analysis.cli import build_parser

COMMANDS = ("search", "resume", "confirm", "report", "export", "list", "train", "compress", "portable")


def subparsers():
    root = build_parser()
    action = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", COMMANDS)
def test_every_value_option_names_its_value(command):
    parser = subparsers()[command]
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.dest in ("help", "plugin"):
            continue
        assert action.metavar is not None or action.choices, f"{command} {action.option_strings[0]}"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_default_worth_showing_is_shown(command):
    parser = subparsers()[command]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0 or action.default in (None, False, [], ""):
            continue
        line = formatter._expand_help(action)
        assert "default" in line, f"{command} {action.option_strings[-1]}: {action.default!r} not in {line!r}"


def test_defaults_come_from_the_formatter():
    text = " ".join(subparsers()["confirm"].format_help().split())
    assert "--order {objective,knee} with --top" in text and "(default: objective)" in text
    assert "--seeds S seed repeats per candidate" in text
