"""``dynas calibrate``: architectures drawn from a space, trained at every (budget,
seed), recorded with both; the noise ceiling, the transfer between budgets and the
recommendation computed from validation values only; bad plans refused before any work;
the supernet benchmark reads its ground truth from a calibration run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import supernet_ranking as sr
from dynas.analysis.calibration import (calibration_section, kendall_tau, load_calibration,
                                        write_calibration_report)
from dynas.analysis.cli import main
from dynas.controllers.records import RUN_FILE, TrialRecord, append_record, iter_records, write_json_atomic
from dynas.controllers.run.calibrate import CALIBRATION_FILE, run_calibration
from dynas.search_space import names
from dynas.search_space.experiment import load_experiment, parse_experiment
from dynas.search_space.suggest import RandomSuggester
from dynas.trainers.results import TrialMetrics
from dynas.trainers.tasks import build_task

TINY = """\
space:
  layers: [1]
  d_model: [16]
  layer:
    attention:
      - {kind: full, heads: [2, 4]}
      - {kind: sliding_window, heads: [2], window: [2]}
    ffn:
      - {kind: dense, expansion: [2, 4]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 2}
task: {name: split_digits, options: {classes_per_experience: 5, patch: 4}}
training: {steps_per_experience: 3, batch_size: 16, device: cpu}
search: {seed: 3}
"""


@pytest.mark.parametrize("argv, fragment", [
    (["--budgets", "4", "1"], "--budgets: must be strictly increasing, got 4 1"),
    (["--budgets", "1", "1"], "--budgets: must be strictly increasing"),
    (["--budgets", "0", "4"], "--budgets: each budget is a multiple of steps_per_experience in 1..256, got 0"),
    (["--archs", "2"], "--archs: must be 3..1000"),
    (["--seeds", "0"], "--seeds: must be 1..20"),
    (["--archs", "1000", "--seeds", "20", "--budgets", "1", "2"], "trainings; at most 20000"),
    (["--set", "training.steps_per_experience=0"], "training.steps_per_experience"),
    (["--set", "training.no_such_key=1"], "no_such_key"),
])
def test_a_bad_plan_is_one_line_and_exit_2_before_any_work(tmp_path, capsys, argv, fragment):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    code = main(["calibrate", str(config), "--runner", "local", "--storage", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "runs").exists(), "a refused calibration writes nothing"


def test_a_tiny_calibration_trains_every_cell_once_and_a_rerun_trains_only_what_is_missing(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    run_dir = run_calibration(config, archs=3, seeds=2, budgets=[1, 2], runner="local", storage=tmp_path,
                              name="cal", verbose=0)
    records = list(iter_records(run_dir))
    cells = sorted((r.arch_id, r.budget, r.train_seed) for r in records)
    assert len(cells) == len(set(cells)) == 3 * 2 * 2
    assert {(b, s) for _, b, s in cells} == {(3, 0), (3, 1), (6, 0), (6, 1)}   # steps per experience, seeds
    assert all(r.state == "complete" and r.steps == r.experiences_done * r.budget for r in records)
    run = json.loads((run_dir / RUN_FILE).read_text())
    assert run["kind"] == "calibrate" and run["runner"] == "local"

    lines = (run_dir / "trials.jsonl").read_text().splitlines()     # a kill after five trainings
    (run_dir / "trials.jsonl").write_text("\n".join(lines[:5]) + "\n")
    run_calibration(run_dir, runner="local", verbose=0)
    again = sorted((r.arch_id, r.budget, r.train_seed) for r in iter_records(run_dir))
    assert again == cells
    assert "nothing to train" in _rerun_output(run_dir, capsys)

    other = run_calibration(config, archs=3, seeds=1, budgets=[1], runner="local", storage=tmp_path,
                            name="cal2", verbose=0)
    drawn = lambda d: [a["arch"] for a in json.loads((d / CALIBRATION_FILE).read_text())["archs"]]
    assert drawn(other) == drawn(run_dir), "the draw is seeded (search.seed)"
    report = write_calibration_report(run_dir, tmp_path / "report").read_text()
    assert "| x1 | 3 | 3 |" in report and "| x1 | x2 | 3 |" in report


def test_set_changes_what_a_new_calibration_trains(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY)
    code = main(["calibrate", str(config), "--runner", "local", "--storage", str(tmp_path), "--name", "cal",
                 "--archs", "3", "--seeds", "1", "--budgets", "1", "--set", "training.steps_per_experience=2",
                 "--no-report", "--quiet"])
    assert code == 0
    assert {r.budget for r in iter_records(tmp_path / "cal")} == {2}
    assert main(["calibrate", str(tmp_path / "cal"), "--runner", "local", "--set", "search.seed=1"]) == 2


def _rerun_output(run_dir: Path, capsys) -> str:
    capsys.readouterr()
    run_calibration(run_dir, runner="local", verbose=0)
    return capsys.readouterr().out


def test_resume_refuses_a_calibration(tmp_path, capsys):
    run_dir = fake_calibration(tmp_path, {1: [[0.1, 0.1]] * 3})
    assert main(["resume", str(run_dir), "--runner", "local"]) == 2
    assert "dynas calibrate" in capsys.readouterr().err


# --- the analysis, on run directories written in the records' own format ------------------
SPACE = {"layers": [1, 2], "d_model": [16, 32], "layer": {
    "attention": [{"kind": "full", "heads": [2, 4]}], "ffn": [{"kind": "dense", "expansion": [2, 4]}]}}


def fake_calibration(root: Path, values: dict[int, list[list[float]]], test_values=None, steps=10) -> Path:
    """A calibration run directory whose records hold ``values[budget][arch][seed]`` as
    validation accuracy (and ``test_values`` as test accuracy, when given)."""
    space = parse_experiment({"space": SPACE}).space
    n = len(next(iter(values.values())))
    archs, seen, k = [], set(), 0
    while len(archs) < n:
        arch = space.sample(RandomSuggester(k))
        k += 1
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            archs.append(arch)
    seeds = list(range(len(next(iter(values.values()))[0])))
    run_dir = root / "cal"
    run_dir.mkdir()
    write_json_atomic(run_dir / RUN_FILE, {"kind": "calibrate", "trials": n, "strategy": "random", "seed": 0})
    (run_dir / CALIBRATION_FILE).write_text(json.dumps({
        "budgets": sorted(values), "seeds": seeds, "steps_per_experience": steps, "metric": names.FINAL_AVG_ACCURACY,
        "archs": [{"arch": a.to_dict(), "params": {}} for a in archs]}))
    for budget, table in values.items():
        for i, row in enumerate(table):
            for seed, acc in zip(seeds, row):
                metrics = {names.FINAL_AVG_ACCURACY: acc}
                if test_values is not None:
                    metrics["test." + names.FINAL_AVG_ACCURACY] = test_values[budget][i][seed]
                append_record(run_dir, TrialRecord(i, archs[i].arch_id, archs[i].to_dict(), {}, "complete",
                                                   TrialMetrics(values=metrics), repeat_of=i, train_seed=seed,
                                                   budget=budget * steps))
    return run_dir


def test_kendall_tau_is_tau_b():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
    assert np.isnan(kendall_tau([1, 2], [1, 2])), "fewer than three points rank nothing"


def test_a_ranking_that_reverses_with_budget_is_not_recommended(tmp_path):
    low = [[0.1 * i, 0.1 * i + 0.01] for i in range(6)]          # seeds agree: ceiling 1
    high = [[0.9 - 0.1 * i, 0.9 - 0.1 * i] for i in range(6)]    # reversed at x4
    cal = load_calibration(fake_calibration(tmp_path, {1: low, 4: high}))
    assert cal.noise(1)["tau"] == pytest.approx(1.0)
    assert cal.noise(1)["seed_std"] == pytest.approx(np.sqrt(0.5 * 0.01 ** 2))
    assert cal.transfer(1, 4)["tau"] == pytest.approx(-1.0)
    assert cal.recommendation() is None
    text = "\n".join(calibration_section(cal.run_dir, tmp_path))
    assert "no budget below x4 transfers" in text and (tmp_path / "calibration.png").is_file()
    assert cal.transfer(1, 4)["corrected"] == pytest.approx(-1.0, abs=0.05)
    assert "the ranking itself changes with the budget" in text


def test_a_ranking_hidden_by_seed_noise_is_told_apart_from_one_that_changes(tmp_path):
    rng = np.random.default_rng(0)
    effects = np.linspace(0.6, 0.9, 12)                   # the same ranking at both budgets
    noisy = lambda: (effects[:, None] + rng.normal(0, 0.12, (12, 2))).tolist()
    cal = load_calibration(fake_calibration(tmp_path, {1: noisy(), 4: noisy()}))
    assert cal.recommendation() is None, "the noise hides the ranking from tau"
    assert cal.transfer(1, 4)["corrected"] > 0.5
    assert 1 < cal.noise(1)["seeds_needed"] < 100
    text = "\n".join(calibration_section(cal.run_dir, tmp_path))
    assert "the ranking holds but seed noise hides it" in text and "seeds for tau 0.7" in text


def test_the_smallest_budget_that_transfers_is_recommended(tmp_path):
    rank = [[0.1 * i, 0.1 * i] for i in range(5)]
    noisy = [[0.3, 0.3], [0.1, 0.1], [0.2, 0.2], [0.0, 0.0], [0.4, 0.4]]
    cal = load_calibration(fake_calibration(tmp_path, {1: noisy, 2: rank, 4: rank}))
    assert cal.recommendation() == 2
    t = cal.transfer(2, 4)
    assert t["tau"] == pytest.approx(1.0) and t["lo"] <= 1.0 <= t["hi"] + 1e-12


def test_no_test_split_value_reaches_the_ranking(tmp_path):
    val = {1: [[0.1 * i] * 2 for i in range(5)], 4: [[0.1 * i] * 2 for i in range(5)]}
    test = {1: [[0.1 * i] * 2 for i in range(5)], 4: [[0.5 - 0.1 * i] * 2 for i in range(5)]}
    cal = load_calibration(fake_calibration(tmp_path, val, test_values=test))
    assert cal.transfer(1, 4)["tau"] == pytest.approx(1.0), "the reversed test values were not used"
    assert cal.recommendation() == 1


def test_a_cut_short_calibration_reports_what_it_has(tmp_path):
    cal = load_calibration(fake_calibration(tmp_path, {1: [[0.1 * i, 0.1 * i] for i in range(4)]}))
    cal.budgets.append(4)
    cal.values[4] = np.full((4, 2), np.nan)
    cal.values[4][:3, 0] = [0.3, 0.2, 0.1]                       # one seed, three archs so far
    assert cal.transfer(1, 4) ["n"] == 3 and cal.transfer(1, 4)["tau"] == pytest.approx(-1.0)
    assert cal.noise(4)["n"] == 0 and np.isnan(cal.noise(4)["tau"])


@pytest.mark.parametrize("command", ["resume", "calibrate"])
def test_an_interrupted_run_names_the_command_that_continues_it(tmp_path, command):
    """A calibration is finished by ``dynas calibrate RUN_DIR``, not ``resume`` (which
    refuses it): the one line after a signal says which."""
    import signal

    from dynas.controllers.interrupt import Interrupted
    from dynas.controllers.run.session import _stopping

    with pytest.raises(Interrupted) as caught:
        with _stopping(tmp_path, command):
            raise Interrupted(signal.SIGTERM)
    assert caught.value.line().endswith(f"continue with: dynas {command} {tmp_path}")
    assert caught.value.exit_code == 143


# --- the supernet benchmark's ground truth is a calibration run ---------------------------
# ``benchmarks.supernet_ranking --truth RUN_DIR``: the same architectures (calibrate and the
# benchmark draw alike for one file and seed), the largest budget as the truth, validation
# values only.

@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    root = tmp_path_factory.mktemp("truth")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    return config, run_calibration(config, archs=3, seeds=2, budgets=[1, 2], runner="local", storage=root,
                                   name="cal", verbose=0)


def test_the_truth_is_the_calibrations_largest_budget_on_its_own_draw(calibration):
    config, run_dir = calibration
    truth = sr.read_truth([run_dir])
    cal = load_calibration(run_dir)
    assert (truth["budget"], truth["low"], truth["seeds"]) == (2, 1, [0, 1])
    assert [a["arch_id"] for a in truth["archs"]] == cal.arch_ids
    for i, entry in enumerate(truth["archs"]):
        for b in (1, 2):
            assert [entry[f"x{b}"][str(s)]["val"] for s in (0, 1)] == list(cal.values[b][i])
            assert all(set(cell) == {"val"} for cell in entry[f"x{b}"].values()), "validation values only"

    exp = load_experiment(config)
    shape = build_task(exp.task, seed=exp.training.seed).shape
    drawn = [a.arch_id for a in sr.draw(exp.space, shape, 3, exp.search.seed)]
    assert drawn == cal.arch_ids, "one draw for one file and seed: the benchmark's and calibrate's"
    assert [a.arch_id for a in sr.archs_from(truth, exp.space, shape, 2)] == cal.arch_ids[:2]


def test_the_table_ranks_inherited_scores_against_the_truth_and_the_goal(calibration):
    _, run_dir = calibration
    truth = sr.read_truth([run_dir])
    truth["archs"] = [dict(a, **{"x2": {"0": {"val": v0}, "1": {"val": v1}}})      # a known truth
                      for a, v0, v1 in zip(truth["archs"], (0.1, 0.2, 0.3), (0.1, 0.3, 0.2))]
    scores = {a["arch_id"]: {"val": v} for a, v in zip(truth["archs"], (0.5, 0.6, 0.7))}
    result = {"variant": "uniform/one", "factor": 2, "seed": 1, "parts": 1, "steps": 4, "paths": 4,
              "train_s": 1.0, "eval_s": 1.0, "scores": scores}
    lines = sr.table(truth, [result])
    ceiling = sr.kendall_tau([0.1, 0.2, 0.3], [0.1, 0.3, 0.2])
    assert f"tau {ceiling:.2f} [n < {sr.MIN_INTERVAL}]" in lines[0]
    row = lines[-1].split(" | ")
    assert row[1:3] == ["1", "1"] and row[6].startswith("1.00")             # supernet seed, parts; tau 1
    assert row[10].startswith(f"{1 - sr.GOAL * ceiling:.2f}")               # tau - 0.8 x ceiling


def test_a_directory_that_is_no_calibration_is_refused(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"kind": "search"}))
    with pytest.raises(SystemExit, match="not a calibration"):
        sr.read_truth([tmp_path])


def test_goal_gap_is_paired(calibration):
    a, b = list(np.linspace(0, 1, 10)), list(np.linspace(0, 1, 10))
    gap, lo, hi = sr.goal_gap(a, b, a)            # inherited = truth = seed 1: 1 - 0.8 x 1 on every resample
    assert gap == pytest.approx(0.2) and lo == pytest.approx(0.2) and hi == pytest.approx(0.2)


def test_a_results_file_that_saved_its_truth_reprints_the_table_without_the_run(calibration, tmp_path):
    _, run_dir = calibration
    truth = sr.read_truth([run_dir])
    saved = tmp_path / "ranking.json"
    saved.write_text(json.dumps({"truth": truth, "results": []}))
    assert sr.read_truth([saved]) == json.loads(json.dumps(truth))
    assert sr.table(sr.read_truth([saved]), []) == sr.table(truth, [])
