"""`dynas report` and `dynas export` through their argparse handlers (and through
the real `dynas` root once every package registers its commands)."""
import argparse
import importlib.util
import json

import pytest

from dynas.analysis import commands
from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError


def parse(argv):
    parser = argparse.ArgumentParser(prog="dynas")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_report_command(runs, tmp_path, capsys):
    a = runs.make("a", runs.synthetic(10, seed=1))
    b = runs.make("b", runs.synthetic(10, seed=2))
    args = parse(["report", str(a), str(b), "--out", str(tmp_path / "rep")])
    assert args.handler(args) == 0
    assert (tmp_path / "rep" / "report.md").is_file()
    assert f"report: {tmp_path / 'rep' / 'report.md'}" in capsys.readouterr().out


def test_report_default_out_and_write_report_for(runs):
    run = runs.make("solo", runs.synthetic(5, seed=1))
    assert commands.write_report_for([run], out=None) == run / "report" / "report.md"


def test_export_command(runs, tmp_path, capsys):
    run = runs.make("s", runs.synthetic(15, seed=5))
    out = tmp_path / "arch.json"
    args = parse(["export", str(run), "--pick", "max-flops=2e7", "--out", str(out)])
    assert args.handler(args) == 0
    assert ArchConfig.load(out).arch_id == json.loads((tmp_path / "pareto.json").read_text())["picked"]["arch_id"]
    said = capsys.readouterr().out
    assert said.startswith("picked trial ") and " by max-flops=2e7\n" in said
    assert f"wrote {(tmp_path / 'pareto.json').resolve()} (Pareto front and the pick)" in said
    with pytest.raises(DynasError, match="--force"):
        args.handler(args)
    forced = parse(["export", str(run), "--out", str(out), "--force"])
    assert forced.pick == "auto" and forced.handler(forced) == 0
    assert " by knee (the default: no --pick given)" in capsys.readouterr().out


def test_export_needs_out():
    with pytest.raises(SystemExit):
        parse(["export", "somewhere"])


@pytest.mark.skipif(importlib.util.find_spec("dynas.controllers.commands") is None
                    or importlib.util.find_spec("dynas.trainers.commands") is None
                    or importlib.util.find_spec("dynas.search_space.commands") is None,
                    reason="the other packages' commands are not written yet")
def test_the_dynas_root_runs_report_and_reports_user_errors(runs, tmp_path, capsys):
    from dynas.analysis.cli import main

    run = runs.make("s", runs.synthetic(8, seed=1))
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    assert main(["export", str(tmp_path / "missing"), "--out", str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dynas: error:") and "no such run directory" in err and "\n" not in err


def test_commands_and_package_import_without_pandas_or_matplotlib():
    """`dynas --help` imports analysis.commands: it must stay instant."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, analysis, analysis.commands; "
            "print(any(m in sys.modules for m in ('pandas', 'matplotlib')))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_public_surface_resolves():
    from dynas import analysis

    for name in analysis.__all__:
        assert callable(getattr(analysis, name)), name
