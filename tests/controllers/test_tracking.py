"""What a search prints and leaves to watch: progress lines (k of N, best so far, ETA),
--quiet / --verbose, the search's objectives as TensorBoard curves, tracebacks kept in
files, and the search.loggers check."""
from __future__ import annotations

import io
import sys

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.records import TrialRecord
from dynas.controllers.tracking import (NORMAL, QUIET, VERBOSE, ObjectiveCurves, Progress, check_loggers,
                                  trial_name, tune_verbosity, write_traceback)
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import Objective

OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))


def record(pid, state="complete", acc=None, flops=None, cached_from=None, reason=None):
    metrics = {} if acc is None else {names.FINAL_AVG_ACCURACY: acc, names.FLOPS: flops}
    return TrialRecord(proposal_id=pid, arch_id=f"a{pid if cached_from is None else cached_from}", arch={},
                       params={}, state=state, measured=TrialMetrics(values=metrics), reason=reason,
                       cached_from=cached_from)


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_one_line_per_finished_trial_with_best_so_far_and_eta(tmp_path):
    out, clock = io.StringIO(), Clock()
    progress = Progress(OBJECTIVES, 4, tmp_path, out=out, clock=clock)
    clock.now += 30
    progress(record(0, acc=0.5, flops=2e6))
    clock.now += 30
    progress(record(1, acc=0.7, flops=3e6))
    progress(record(2, cached_from=1, acc=0.7, flops=3e6))      # a reused duplicate: no line
    write_traceback(tmp_path, 3, "Traceback (most recent call last):\nRuntimeError: boom")
    clock.now += 30
    progress(record(3, state="failed", reason="RuntimeError: boom"))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0] == ("[1/4] p0000 complete  final_avg_accuracy 0.5  flops 2e+06 | best: "
                        "final_avg_accuracy 0.5 (p0000), flops 2e+06 (p0000) | ETA 1m30s")
    assert lines[1].endswith("best: final_avg_accuracy 0.7 (p0001), flops 2e+06 (p0000) | ETA 1m00s")
    assert lines[2].startswith("[3/4] p0003 failed: RuntimeError: boom (traceback: errors/p0003.txt)")
    assert lines[2].endswith("| ETA 30s")
    assert (tmp_path / "errors" / "p0003.txt").read_text().startswith("Traceback")


def test_a_resumed_search_counts_on_from_its_records(tmp_path):
    out = io.StringIO()
    old = [record(0, acc=0.9, flops=1e6), record(1, state="failed", reason="x")]
    progress = Progress(OBJECTIVES, 3, tmp_path, records=old, out=out)
    progress(record(2, acc=0.4, flops=5e5))
    assert out.getvalue().startswith("[3/3] p0002 complete")
    assert "final_avg_accuracy 0.9 (p0000), flops 5e+05 (p0002) | last trial" in out.getvalue()


def test_quiet_prints_nothing_and_verbose_also_tells_the_duplicates(tmp_path):
    quiet, loud = io.StringIO(), io.StringIO()
    for out, level in ((quiet, QUIET), (loud, VERBOSE)):
        progress = Progress(OBJECTIVES, 2, tmp_path, out=out, level=level)
        progress(record(0, acc=0.5, flops=1.0))
        progress(record(1, cached_from=0, acc=0.5, flops=1.0))
    assert quiet.getvalue() == ""
    assert loud.getvalue().splitlines()[1] == "p0001 repeats p0000: outcome reused, not trained"


def test_the_search_objectives_are_tensorboard_curves_per_trial(tmp_path):
    from dynas.trainers.curves import read_scalars

    curves = ObjectiveCurves(OBJECTIVES, tmp_path)
    curves(record(0, acc=0.5, flops=2e6))
    curves(record(1, state="failed", reason="x"))
    curves(record(2, cached_from=0, acc=0.5, flops=2e6))
    curves(record(3, acc=0.7, flops=3e6))
    curves.close()
    scalars = read_scalars(tmp_path / "curves" / "search")
    assert scalars[f"objective/{names.FINAL_AVG_ACCURACY}"] == [(1, 0.5), (3, pytest.approx(0.7))]
    assert scalars[f"best/{names.FINAL_AVG_ACCURACY}"] == [(1, 0.5), (2, 0.5), (3, pytest.approx(0.7))]
    assert scalars[f"best/{names.FLOPS}"] == [(1, 2e6), (2, 2e6), (3, 2e6)]


@pytest.mark.parametrize("argv, level", [([], NORMAL), (["--quiet"], QUIET), (["-q"], QUIET),
                                         (["--verbose"], VERBOSE), (["--verbose", "3"], 3),
                                         (["--verbose", "0"], QUIET)])
def test_quiet_and_verbose_flags(argv, level, tmp_path):
    from dynas.analysis.cli import build_parser

    for command in (["search", str(tmp_path / "x.yaml")], ["resume", str(tmp_path)]):
        assert build_parser().parse_args(command + argv).verbose == level
    assert tune_verbosity(NORMAL) == 0 and tune_verbosity(VERBOSE) == 1


def test_quiet_and_verbose_together_is_a_usage_error(tmp_path, capsys):
    from dynas.analysis.cli import main

    with pytest.raises(SystemExit) as info:
        main(["search", str(tmp_path / "x.yaml"), "--quiet", "--verbose"])
    assert info.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_mlflow_logger_without_mlflow_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)          # import mlflow -> ImportError
    with pytest.raises(ConfigError, match=r"search.loggers: mlflow is not installed; `pip install mlflow`"):
        check_loggers(("mlflow",))
    check_loggers(())


def test_trial_names_sort_in_ask_order():
    assert [trial_name(i) for i in (0, 7, 12)] == ["p0000", "p0007", "p0012"]


def test_curve_runs_are_named_by_trial_and_architecture():
    from dynas.controllers.tracking import curve_name

    assert curve_name(3, "2c27ff096894") == "p0003-2c27ff096894"
    assert curve_name(3, "2c27ff096894", 5) == "p0003-2c27ff096894-seed5"
    assert sorted([curve_name(10, "aa"), curve_name(9, "zz")]) == ["p0009-zz", "p0010-aa"]


def test_each_trained_trial_gets_an_hparams_summary_in_its_own_run(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dynas.controllers.tracking import TrialHParams, curve_name
    from dynas.trainers.curves import read_scalars

    listener = TrialHParams(tmp_path)
    done = record(3, acc=0.75, flops=2e6)
    done.params.update({"layers": 2, "attention.0": "full", "widths": [1, 2]})
    listener(done)
    listener(record(4, cached_from=3, acc=0.75, flops=2e6))        # a reused outcome trained nothing
    listener(record(5, state="failed", reason="NonFiniteLoss"))
    runs = sorted(p.name for p in (tmp_path / "curves").iterdir())
    assert runs == [curve_name(3, "a3")]
    run = tmp_path / "curves" / runs[0]
    assert read_scalars(run)[f"hparams/{names.FINAL_AVG_ACCURACY}"][0][1] == pytest.approx(0.75)
    events = EventAccumulator(str(next(run.glob("events.out.tfevents.*"))))
    events.Reload()
    assert "_hparams_/experiment" in events.PluginTagToContent("hparams")
