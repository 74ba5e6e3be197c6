"""``import dynas``: the Python API, driven the way a notebook drives it.

A run started from Python resumes from the command line and the other way round; bad
input is one line of the project's error type; ``import dynas`` stays light. Picks and
records on synthetic runs: tests/analysis/test_api.py; settings by key path:
tests/search_space/test_overrides.py.

The tiny experiment (Split-Digits in 2 experiences of 5 classes, 4 tokens of 16
pixels, 10 steps per experience, one-layer models) trains a trial in about a second;
the Ray tests spend most of their time starting Ray.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import dynas
from dynas.analysis.cli import main
from dynas.search_space.errors import ConfigError, DynasError

TINY = {
    "space": {"layers": [1], "d_model": [16, 32], "layer": {
        "attention": [{"kind": "full", "heads": [2]},
                      {"kind": "sliding_window", "heads": [2, 4], "window": [2]}],
        "ffn": [{"kind": "dense", "expansion": [2]},
                {"kind": "moe", "experts": [2], "top_k": [1], "expansion": 2}]}},
    "task": {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}},
    "training": {"steps_per_experience": 10, "batch_size": 32},
    "search": {"strategy": "random", "trials": 3, "concurrent": 2, "max_failures": 0},
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


@pytest.fixture
def in_process():
    """The in-process runner (``runner="local"``) and resuming any run with any runner
    arrive with the run session (controllers' ``run_search(..., runner=)``)."""
    from dynas.controllers import run_search

    if "runner" not in inspect.signature(run_search).parameters:
        pytest.skip("needs controllers.run_search(experiment, ..., runner=) (the run session merge)")


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m dynas.analysis.cli ARGS`` in a fresh process, as a user types it."""
    return subprocess.run([sys.executable, "-m", "dynas.analysis.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)


def trained(run: dynas.Run) -> int:
    """Distinct architectures trained (no cached answers, no seed repeats)."""
    df = run.records
    return int((df["cached_from"].isna() & df["repeat_of"].isna()).sum())


def check_model_predicts_as_recorded(run: dynas.Run, which="knee") -> None:
    """The loaded model is the trial's own: on the last experience's raw test inputs it
    scores exactly the test accuracy the search recorded for it."""
    from dynas.search_space.settings import TaskSettings
    from dynas.trainers.tasks import build_task

    pick = run.pick(which)
    model = run.load_model(pick)
    record = run.records.set_index("proposal_id").loc[pick.trial]
    task = build_task(TaskSettings(**TINY["task"]), seed=0)
    exp = task.experiences[-1]
    correct = int((model.predict(exp.raw_test).classes == exp.test.tensors[1]).sum())
    assert correct / len(exp.raw_test) == pytest.approx(record["test_acc_matrix"][-1][-1], abs=1e-12)


# --- no training ---------------------------------------------------------------------------
def test_import_dynas_loads_neither_torch_nor_ray():
    code = ("import sys, dynas; heavy = ('torch', 'ray', 'optuna', 'pandas', 'lightning'); "
            "print(sorted(m for m in heavy if m in sys.modules)); "
            "dynas.load_run, dynas.Run, dynas.search; "
            "print(sorted(m for m in heavy if m in sys.modules)); print(dynas.__all__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "[]", "import dynas alone loads nothing heavy"
    assert lines[1] == "['pandas']", "reaching the API loads pandas (records), not torch nor Ray"
    assert lines[2] == str(["search", "load_run", "resume", "confirm", "load_model", "Run", "Pick"])


def one_line(err: pytest.ExceptionInfo, kind=DynasError) -> str:
    assert isinstance(err.value, kind) and "\n" not in str(err.value)
    return str(err.value)


def test_bad_input_is_one_line_before_anything_starts(tiny, tmp_path):
    storage = tmp_path / "runs"
    with pytest.raises(ConfigError) as err:
        dynas.search(tiny, settings={"training.steps_per_experienc": 5}, storage=storage)
    assert one_line(err, ConfigError).startswith(f"{tiny}: training.steps_per_experienc: unknown key")
    with pytest.raises(ConfigError) as err:
        dynas.search(dict(TINY, trainig={}), storage=storage)
    assert one_line(err, ConfigError).startswith("trainig: unknown key")
    with pytest.raises(ConfigError) as err:
        dynas.search(tiny, settings={"space.layer.ffn[7].experts": [2]}, storage=storage)
    assert one_line(err, ConfigError) == "settings: space.layer.ffn[7].experts: [7]: the list has 2 item(s)"
    with pytest.raises(ConfigError) as err:
        dynas.search(tiny, strategy="bogus", storage=storage)
    assert "--strategy: unknown strategy 'bogus'" in one_line(err, ConfigError)
    with pytest.raises(ConfigError) as err:
        dynas.search(tmp_path / "missing.yaml", storage=storage)
    assert one_line(err, ConfigError) == f"{tmp_path / 'missing.yaml'}: no such experiment file"
    with pytest.raises(DynasError) as err:
        dynas.search(42)
    assert one_line(err) == "experiment: expected a YAML file, a mapping or an Experiment, got int"
    assert not storage.exists(), "no run directory for a search that never started"
    for call in (lambda: dynas.load_run(tmp_path / "none"), lambda: dynas.resume(tmp_path / "none"),
                 lambda: dynas.confirm(tmp_path / "none", top=1, seeds=1)):
        with pytest.raises(DynasError) as err:
            call()
        assert one_line(err) == f"{tmp_path / 'none'}: no such run directory"


# --- Ray: works on today's controllers ----------------------------------------------------
@pytest.mark.slow
def test_notebook_search_in_python_then_resume_from_the_cli(tiny, tmp_path):
    run = dynas.search(tiny, trials=2, storage=tmp_path, name="nb", verbose=0)
    assert isinstance(run, dynas.Run) and run.dir == tmp_path / "nb" and trained(run) == 2
    assert "trials 2 of 2 (2 complete, 0 failed, 0 pruned)" in repr(run)
    assert (run.dir / "experiment.yaml").read_text() == tiny.read_text(), "the file as given"
    front = run.front()
    knee = run.pick("knee")
    assert knee.trial in front["proposal_id"].tolist() and knee.on_front and knee.weights.is_dir()
    assert set(knee.values) >= {"final_avg_accuracy", "flops"} and "final_avg_accuracy" in knee.test_values
    assert run.report() == run.dir / "report" / "report.md" and (run.dir / "report" / "trials.csv").is_file()
    check_model_predicts_as_recorded(run, "knee")

    done = cli("resume", str(run.dir), "--extra-trials", "1", "--no-report", "-q")
    assert done.returncode == 0, done.stderr
    assert trained(run) == 3, "records are read afresh"
    again = dynas.load_run(run.dir)
    assert trained(again) == 3 and again.meta["trials"] == 3


@pytest.mark.slow
def test_a_cli_run_loads_and_resumes_in_python(tiny, tmp_path):
    assert main(["search", str(tiny), "--trials", "2", "--storage", str(tmp_path), "--name", "cli",
                 "--no-report", "-q"]) == 0
    run = dynas.load_run(tmp_path / "cli")
    assert trained(run) == 2 and run.meta["runner"] == "ray"
    resumed = dynas.resume(run, extra_trials=1, verbose=0)
    assert resumed.dir == run.dir and trained(resumed) == 3
    best = resumed.pick("best-accuracy")
    assert best.values["final_avg_accuracy"] == run.records.query("state == 'complete'")["final_avg_accuracy"].max()


# --- in process: needs the run session (controllers' runner=) -------------------------------
@pytest.mark.slow
def test_notebook_flow_in_process_from_a_mapping(in_process, tmp_path):
    settings = {"training.steps_per_experience": 8, "search.keep_weights": "all"}
    run = dynas.search(TINY, settings=settings, trials=2, runner="local", storage=tmp_path,
                       name="local", verbose=0)
    assert run.meta["runner"] == "local" and trained(run) == 2
    kept = yaml.safe_load((run.dir / "experiment.yaml").read_text())
    assert kept["training"]["steps_per_experience"] == 8 and kept["search"]["keep_weights"] == "all", \
        "the run keeps the experiment it ran, settings included: a resume trains the same way"
    assert not run.front().empty and run.report().is_file()
    check_model_predicts_as_recorded(run, "best-accuracy")
    check_model_predicts_as_recorded(run, int(run.records["proposal_id"].iloc[0]))   # keep_weights: all

    done = cli("resume", str(run.dir), "--extra-trials", "1", "--no-report", "-q")
    assert done.returncode == 0, done.stderr
    again = dynas.load_run(run.dir)
    assert trained(again) == 3 and again.meta["runner"] == "local"

    confirmed = dynas.confirm(again, top=1, seeds=1, verbose=0)
    repeats = confirmed.records.dropna(subset=["repeat_of"])
    assert len(repeats) == 1 and int(repeats["repeat_of"].iloc[0]) in confirmed.front()["proposal_id"].tolist()


@pytest.mark.slow
def test_a_file_with_settings_runs_in_process_and_resumes_on_ray(in_process, tiny, tmp_path):
    run = dynas.search(tiny, settings={"search.trials": 2, "training.steps_per_experience": 6},
                       runner="local", storage=tmp_path, verbose=0)
    assert run.dir.name.startswith("tiny-random-") and run.meta["trials"] == 2 and trained(run) == 2
    assert yaml.safe_load((run.dir / "experiment.yaml").read_text())["training"]["steps_per_experience"] == 6
    resumed = dynas.resume(run.dir, extra_trials=1, runner="ray", verbose=0)
    assert trained(resumed) == 3
    assert json.loads((run.dir / "run.json").read_text())["trials"] == 3
