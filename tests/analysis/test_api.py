"""``dynas.load_run``: a run directory as a ``Run`` (records, front, picks, report) whose
picks are ``dynas export --pick``'s and see validation values only. Synthetic runs
(``runs`` fixture): a real search end to end is tests/test_api.py's."""
import dataclasses
import json

import pytest

import dynas
from dynas.trainers.results import TrialMetrics
from dynas.analysis.export import export_arch, pareto_path_for
from dynas.controllers.records import TrialRecord
from dynas.search_space import names
from dynas.search_space.errors import DynasError

ACC, FLOPS = names.FINAL_AVG_ACCURACY, names.FLOPS
TEST_ACC = names.as_test(ACC)


@pytest.fixture
def run(runs):
    return dynas.load_run(runs.make("search", runs.synthetic(25, seed=4)))


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, DynasError)
    return text


def test_records_front_and_repr(run):
    assert len(run.records) == 25 and run.records["proposal_id"].tolist() == list(range(25))
    front = run.front()
    assert not front.empty and front[ACC].is_monotonic_decreasing
    assert [(o.metric, o.direction) for o in run.objectives] == [(ACC, "max"), (FLOPS, "min")]
    text = repr(run)
    assert text.startswith(f"Run({str(run.dir)!r}, strategy='random', trials 25 of 25 (")
    assert f"front {len(front)}, objectives: {ACC} max, {FLOPS} min" in text


@pytest.mark.parametrize("rule", ["knee", "best-accuracy", "max-flops=5M"])
def test_a_rule_picks_what_dynas_export_writes(run, rule, tmp_path):
    picked = run.pick(rule)
    exported = json.loads(pareto_path_for(export_arch(run.dir, rule, tmp_path / "arch.json")).read_text())
    assert picked.trial == exported["picked"]["proposal_id"] and picked.arch_id == exported["picked"]["arch_id"]
    assert picked.arch == exported["picked"]["arch"] and picked.on_front == exported["picked"]["on_front"]
    assert picked.values[ACC] == exported["picked"]["metrics"][ACC] and picked.rule == rule
    assert picked.run_dir == run.dir and picked.weights is None
    assert repr(picked).startswith(f"Pick(trial {picked.trial} by {rule}, arch {picked.arch_id} [d")


def test_pick_by_trial_id_or_arch_id(run):
    knee = run.pick("knee")
    by_trial, by_arch = run.pick(knee.trial), run.pick(knee.arch_id)
    assert (by_trial.rule, by_arch.rule) == (f"trial={knee.trial}", f"arch_id={knee.arch_id}")
    assert dataclasses.replace(by_trial, rule="knee") == dataclasses.replace(by_arch, rule="knee") == knee
    assert run.pick(int(run.front()["proposal_id"].iloc[-1])).on_front
    off = run.records[run.records["state"] == "complete"]
    off = off[~off["proposal_id"].isin(run.front()["proposal_id"])]
    assert not run.pick(int(off["proposal_id"].iloc[0])).on_front


def with_test_values(runs, folder, rows):
    """Records whose validation values are ``(acc, flops)`` and test accuracy ``test_acc``."""
    records = []
    for pid, (acc, flops, test_acc) in enumerate(rows):
        arch = runs.tiny_arch(16 * (pid + 1))
        records.append(TrialRecord(pid, arch.arch_id, arch.to_dict(), {}, "complete",
                                   TrialMetrics(values={ACC: acc, FLOPS: flops, TEST_ACC: test_acc}),
                                   objectives=[acc, flops], policy="random", seed=pid))
    return dynas.load_run(runs.make(folder, records))


def test_picks_and_front_see_validation_values_only(runs):
    """Two runs with the same validation values and opposite test values: every pick
    and the front are the same, and each is what the validation values alone give
    (on the skewed run's test values trial 0 would dominate every other trial)."""
    validation = [(0.50, 1e6), (0.70, 2e6), (0.90, 4e6), (0.91, 9e6)]
    honest = with_test_values(runs, "honest", [(a, f, a) for a, f in validation])
    skewed = with_test_values(runs, "skewed", [(a, f, t) for (a, f), t in zip(validation, (0.99, 0.1, 0.1, 0.2))])
    for rule in ("knee", "best-accuracy", "max-flops=3e6"):
        assert skewed.pick(rule).trial == honest.pick(rule).trial, rule
    assert honest.pick("best-accuracy").trial == 3 and honest.pick("max-flops=3e6").trial == 1
    assert honest.pick("knee").trial == 2                # the bulge of the validation front
    assert skewed.front()["proposal_id"].tolist() == honest.front()["proposal_id"].tolist() == [3, 2, 1, 0]
    pick = skewed.pick("best-accuracy")
    assert pick.values[ACC] == 0.91 and pick.test_values[ACC] == 0.2   # shown, not used
    assert TEST_ACC not in pick.values and all(not k.startswith("test.") for k in pick.test_values)
    assert "test final_avg_accuracy=0.2 (shown, never used to pick)" in repr(pick)


def test_bad_picks_are_one_line_naming_the_run(run):
    for which in ("kneee", "best_accuracy", "3", 3.0, True, None):
        with pytest.raises(DynasError) as err:
            run.pick(which)
        assert one_line(err).startswith(f"{run.dir}: unknown pick ")
    with pytest.raises(DynasError) as err:
        run.pick(999)
    assert one_line(err).startswith(f"{run.dir}: no trial 999 in this run (")
    with pytest.raises(DynasError) as err:
        run.pick(6)                                          # synthetic: every 7th trial fails
    assert one_line(err).startswith(f"{run.dir}: trial 6 failed: ")
    with pytest.raises(DynasError) as err:
        run.pick(5)                                          # and trial 5 was pruned
    assert one_line(err).startswith(f"{run.dir}: trial 5 was pruned: pruned by ASHA")


def test_a_model_that_was_not_kept_is_one_line_naming_the_run_and_trial(run):
    knee = run.pick("knee")
    with pytest.raises(DynasError) as err:
        run.load_model("knee")
    assert one_line(err).startswith(f"{run.dir}: trial {knee.trial} ({knee.arch_id}) has no kept weights")


def test_missing_or_foreign_directories(tmp_path, run):
    with pytest.raises(DynasError) as err:
        dynas.load_run(tmp_path / "nope")
    assert one_line(err) == f"{tmp_path / 'nope'}: no such run directory"
    with pytest.raises(DynasError) as err:
        dynas.load_run(tmp_path)
    assert one_line(err) == f"{tmp_path}: not a dynas run directory (no run.json)"
    with pytest.raises(DynasError) as err:
        dynas.load_model(run.dir)                            # a run is not a model folder
    assert one_line(err).startswith(f"{run.dir}: a run directory, not a model folder; use dynas.load_run(")
    with pytest.raises(DynasError) as err:
        dynas.load_model(tmp_path)
    assert one_line(err).startswith(f"{tmp_path / 'arch.json'}: missing")


def test_report_is_dynas_reports(run, tmp_path):
    path = run.report(tmp_path / "out")
    assert path == tmp_path / "out" / "report.md" and path.read_text().startswith("# dynas report: search")
    assert run.report() == run.dir / "report" / "report.md"
    assert dynas.load_run(run).dir == run.dir                # a Run is accepted wherever a dir is


def test_report_compares_runs_and_refuses_mixed_budgets_unless_asked(run, runs, tmp_path):
    (run.dir / "experiment.yaml").write_text("training: {steps_per_experience: 60}\n")
    other = runs.make("other", runs.synthetic(10, seed=9))
    (other / "experiment.yaml").write_text("training: {steps_per_experience: 15}\n")
    assert "Not compared: the runs were trained at different budgets" in \
        run.report(tmp_path / "a", compare=[other]).read_text()
    assert "share of combined" in run.report(tmp_path / "b", compare=[dynas.load_run(other)],
                                             mixed_budgets=True).read_text()
