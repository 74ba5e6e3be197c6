"""``dynas dashboard RUN_DIR``: optuna-dashboard on the run's study, on 127.0.0.1 only;
one line when there is no study or the extra is not installed."""
from __future__ import annotations

import importlib.util

import pytest

from dynas.analysis.cli import main
from dynas.controllers.records import OPTUNA_DB
from tests.analysis.conftest import synthetic_records, write_run


def test_a_run_without_a_study_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "random-run", synthetic_records(3))
    assert main(["dashboard", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no Optuna study in this run (only tpe and nsga2" in err


def test_a_bad_port_is_one_line(tmp_path, capsys):
    run = write_run(tmp_path / "tpe-run", synthetic_records(3))
    (run / OPTUNA_DB).write_bytes(b"")
    assert main(["dashboard", str(run), "--port", "70000"]) == 2
    assert "--port: must be 1-65535, got 70000" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("optuna_dashboard") is not None,
                    reason="optuna-dashboard is installed here")
def test_without_the_extra_it_says_how_to_install_it(tmp_path, capsys):
    run = write_run(tmp_path / "tpe-run", synthetic_records(3))
    (run / OPTUNA_DB).write_bytes(b"")
    assert main(["dashboard", str(run)]) == 2
    assert "optuna-dashboard is not installed: pip install 'dynas[dashboard]'" in capsys.readouterr().err

