"""``--set`` on search, resume, confirm and train; ``confirm --trials`` / ``--order knee``
and its progress lines; ``export --pick trial=N | arch_id=HEX | knee-means``, saying
which pick the default used. One real local search end to end (``slow``); the rest
on records."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from dynas.analysis.cli import main
from dynas.controllers.records import RUN_FILE, TrialRecord, iter_records
from dynas.controllers.run.amend import AMENDABLE, check_amendable
from dynas.controllers.run.confirm import RepeatProgress, best_candidates, named_candidates
from dynas.controllers.tracking import curve_name
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.trainers.results import TrialMetrics
from tests.controllers.conftest import TWO_OBJECTIVES
from tests.controllers.test_seed_repeats import ARCH, SPACE

ACC = names.FINAL_AVG_ACCURACY
EXPERIMENT = {
    "space": SPACE,
    "task": {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}},
    "training": {"steps_per_experience": 50, "batch_size": 16, "device": "cpu", "seed": 3},
    "search": {"strategy": "random", "trials": 9, "seed": 0, "concurrent": 1},
}


def record(pid, acc, flops, state="complete", **kw):
    return TrialRecord(pid, f"arch{pid}", ARCH.to_dict(), {}, state,
                       TrialMetrics(values={ACC: acc, names.FLOPS: flops}),
                       objectives=[acc, flops] if state == "complete" else None, **kw)


# front: (0.5, 1) (0.7, 2) (0.8, 3) (0.9, 7); the knee is trial 3 (0.8 at 3 FLOPs); in
# normalised objectives trial 1 is nearest to it, then 4, then 0; trial 2 is dominated
RECORDS = [record(0, 0.5, 1.0), record(1, 0.7, 2.0), record(2, 0.6, 5.0), record(3, 0.8, 3.0),
           record(4, 0.9, 7.0), record(5, 0.95, 9.0, state="failed", reason="NonFiniteLoss")]


def test_top_by_knee_confirms_the_knee_and_its_neighbours_first():
    by_objective = best_candidates(RECORDS, TWO_OBJECTIVES, top=2)
    assert [r.proposal_id for r in by_objective] == [4, 3]
    by_knee = best_candidates(RECORDS, TWO_OBJECTIVES, top=9, order="knee")
    assert [r.proposal_id for r in by_knee] == [3, 1, 4, 0, 2]


def test_named_trials_are_confirmed_in_the_order_given():
    assert [r.proposal_id for r in named_candidates(RECORDS, TWO_OBJECTIVES, [3, 1, 3])] == [3, 1]
    with pytest.raises(ConfigError, match=r"--trials: trial 5 is failed \(NonFiniteLoss\); only complete"):
        named_candidates(RECORDS, TWO_OBJECTIVES, [3, 5])
    with pytest.raises(ConfigError, match=r"trial 42 is not in this run; .*complete: 0, 1, 2, 3, 4\)"):
        named_candidates(RECORDS, TWO_OBJECTIVES, [42])


def test_repeat_progress_counts_and_gives_an_eta():
    out, now = io.StringIO(), iter([0.0, 10.0, 30.0])
    progress = RepeatProgress(TWO_OBJECTIVES, 2, out=out, clock=lambda: next(now))
    for seed in (4, 5):
        progress(record(3, 0.8, 3.0, repeat_of=3, train_seed=seed, ))
    progress(record(6, 0.1, 1.0))                        # a search trial: not a repeat
    assert out.getvalue().splitlines() == [
        f"[1/2] seed repeat of p0003 (seed 4) complete  {ACC} 0.8  flops 3 | ETA 10s",
        f"[2/2] seed repeat of p0003 (seed 5) complete  {ACC} 0.8  flops 3 | last one"]


@pytest.mark.parametrize("key", ["training.steps_per_experience", "task.options.patch", "space.layers",
                                 "search.objectives", "search.strategy", "training.seed"])
def test_a_resume_refuses_settings_that_change_what_trials_measure(key):
    with pytest.raises(ConfigError, match=rf"--set {key}: cannot change on `dynas resume`: .* start a new "
                                          r"search with --set instead \(changeable here: search\.concurrent"):
        check_amendable({key: 1}, "resume")
    for ok in AMENDABLE + ("search.confirm.top",):
        check_amendable({ok: 1}, "confirm")


def test_a_bad_set_is_one_line_and_exit_2(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    for assignment, fragment in [("training.stepz=3", "training.stepz"), ("training.lr=fast", "training.lr"),
                                 ("no-equals-sign", "expected key.path=value")]:
        assert main(["search", str(config), "--runner", "local", "--set", assignment,
                     "--storage", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err and "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.is_dir()], "nothing was started"


def test_train_takes_set_like_the_file(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    arch = tmp_path / "arch.json"
    ARCH.save(arch)
    assert main(["train", "--arch", str(arch), "--config", str(config), "--set", "training.batch_size=0",
                 "--out", str(tmp_path / "o")]) == 2
    assert "training.batch_size" in capsys.readouterr().err


@pytest.mark.slow
def test_set_resume_confirm_and_export_picks_end_to_end(tmp_path, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump(EXPERIMENT))
    storage = tmp_path / "runs"
    argv = ["search", str(config), "--runner", "local", "--storage", str(storage), "--name", "r", "-q",
            "--no-report", "--set", "search.trials=3", "--set", "training.steps_per_experience=4"]
    assert main(argv) == 0
    run = storage / "r"
    copy = yaml.safe_load((run / "experiment.yaml").read_text())
    assert copy["training"]["steps_per_experience"] == 4 and json.loads((run / RUN_FILE).read_text())["trials"] == 3

    # a budget change on resume is refused; a concurrency change is applied and recorded
    assert main(["resume", str(run), "--no-report", "--set", "training.steps_per_experience=8"]) == 2
    assert "cannot change on `dynas resume`" in capsys.readouterr().err
    assert main(["resume", str(run), "--no-report", "-q", "--set", "search.concurrent=2"]) == 0
    info = json.loads((run / RUN_FILE).read_text())
    assert info["concurrent"] == 2 and info["amendments"][0]["set"] == {"search.concurrent": 2}
    assert yaml.safe_load((run / "experiment.yaml").read_text())["search"]["concurrent"] == 2

    firsts = [r for r in iter_records(run) if r.state == "complete" and r.repeat_of is None
              and r.cached_from is None]
    named = firsts[-1].proposal_id
    capsys.readouterr()
    assert main(["confirm", str(run), "--trials", str(named), "--seeds", "2", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert f"confirming 1 candidate (p{named:04d}) with 2 seeds each: 2 trainings to run" in out
    assert f"[1/2] seed repeat of p{named:04d}" in out and "[2/2]" in out and "| last one" in out

    for pick, rule in [(None, "knee-means"), (f"trial={named}", f"trial={named}"),
                       (f"arch_id={firsts[0].arch_id}", f"arch_id={firsts[0].arch_id}")]:
        out_file = tmp_path / f"{rule.replace('=', '_')}" / "arch.json"
        assert main(["export", str(run), "--out", str(out_file)] + (["--pick", pick] if pick else [])) == 0
        said = capsys.readouterr().out
        assert f"by {rule}" in said and ("(the default: no --pick given)" in said) == (pick is None)
        assert f"wrote {out_file.resolve()} (architecture)" in said
        assert f"wrote {out_file.with_name('pareto.json').resolve()} (Pareto front and the pick)" in said
        picked = json.loads(out_file.with_name("pareto.json").read_text())["picked"]
        assert picked["rule"] == rule
    assert json.loads((tmp_path / "knee-means" / "pareto.json").read_text())["picked"]["proposal_id"] == named
    # TensorBoard: one run per trained trial, named by trial and architecture (seed repeats by seed)
    runs = {p.name for p in (run / "curves").iterdir()}
    assert {curve_name(r.proposal_id, r.arch_id) for r in firsts} <= runs
    assert {curve_name(named, firsts[-1].arch_id, r.train_seed) for r in iter_records(run)
            if r.repeat_of == named} <= runs
