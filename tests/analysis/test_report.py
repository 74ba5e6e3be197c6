"""The report: complete for a real-looking search, and still a report (never a crash)
for one trial, all trials failed, plain decision spaces and several runs."""
import re

import pandas as pd
import pytest

from dynas.trainers.results import TrialMetrics
from dynas.analysis.report import write_report
from dynas.controllers.records import TrialRecord
from dynas.search_space import names
from dynas.search_space.errors import DynasError


def linked_files(report_text: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", report_text)


def test_report_of_a_search(runs):
    run = runs.make("search", runs.synthetic(30, seed=3))
    path = write_report(run)
    assert path == run / "report" / "report.md"  # default out dir
    text = path.read_text()
    for section in ("## Summary", "## Pareto front", "### Picks", "## Best per objective",
                    "## Hypervolume", "Reference point:", "## Failed and pruned trials"):
        assert section in text
    assert "d_model=" in text and "[0]" in text  # ArchConfig.describe() of front members
    links = linked_files(text)
    for name in ("pareto.png", "progress.png", "choices.png", "expert_load.png",
                 "accuracy_matrix.png", "trials.csv"):
        assert name in links and (path.parent / name).is_file()
    csv = pd.read_csv(path.parent / "trials.csv")
    assert len(csv) == 30 and (csv["front_rank"] == 0).any()
    assert set(csv.loc[csv["state"] != "complete", "front_rank"]) == {-1}
    assert "NonFiniteLoss" in text and "pruned by ASHA" in text


def test_report_when_every_trial_failed(runs, tmp_path):
    records = [runs.record(i, runs.tiny_arch(), None, None, state="failed", reason="CUDA out of memory")
               for i in range(3)]
    path = write_report(runs.make("failed", records), tmp_path / "out")
    text = path.read_text()
    assert "No Pareto front: no trial completed." in text
    assert "| failed | CUDA out of memory | 3 | 0, 1, 2 |" in text
    assert not (tmp_path / "out" / "pareto.png").exists()
    assert (tmp_path / "out" / "trials.csv").is_file()


def test_report_of_an_empty_run(runs):
    text = write_report(runs.make("empty", [])).read_text()
    assert "No trial records yet" in text and "No Pareto front" in text


def test_report_of_a_single_trial(runs):
    rec = runs.record(0, runs.tiny_arch(), 0.5, 1e5)
    path = write_report(runs.make("one", [rec]))
    text = path.read_text()
    assert "1 of 1 complete trials are non-dominated" in text
    assert "(knee, best-accuracy)" in text
    assert (path.parent / "pareto.png").is_file() and (path.parent / "progress.png").is_file()


def test_report_of_a_plain_decision_space(runs):
    records = [TrialRecord(i, f"id{i}", {"opt": o, "lr": lr}, {"opt": o, "lr": lr}, "complete",
                           measured=TrialMetrics(values={"loss": loss, names.PARAMS: p}))
               for i, (o, lr, loss, p) in enumerate([("adam", 0.1, 0.3, 100.0), ("sgd", 0.1, 0.2, 300.0),
                                                     ("sgd", 0.01, 0.5, 50.0)])]
    objectives = [{"metric": "loss", "direction": "min"}, {"metric": names.PARAMS, "direction": "min"}]
    path = write_report(runs.make("plain", records, objectives=objectives))
    text = path.read_text()
    assert "3 of 3 complete trials are non-dominated in loss (min), params (min)" in text
    assert "lr = 0.1\nopt = adam" in text  # assignments described by their values
    assert "(knee)" in text  # best-accuracy has no accuracy to use: left out, not a crash
    assert (path.parent / "pareto.png").is_file() and (path.parent / "choices.png").is_file()


def test_report_of_several_runs(runs, tmp_path):
    a = runs.make("a", runs.synthetic(12, seed=1), strategy="random")
    b = runs.make("b", runs.synthetic(12, seed=2), strategy="nsga2")
    text = write_report([a, b], tmp_path / "both").read_text()
    assert "# dynas report: a, b" in text
    assert "| a | random | 12 |" in text and "| b | nsga2 | 12 |" in text
    assert "| **all** | random, nsga2 | 24 |" in text
    assert "share of combined" in text


def test_report_of_a_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(DynasError, match="no such run directory"):
        write_report(tmp_path / "missing")


def test_report_names_an_objective_no_trial_reports(runs):
    objectives = [{"metric": "val_loss", "direction": "min"}, {"metric": names.FLOPS, "direction": "min"}]
    run = runs.make("typo", [runs.record(0, runs.tiny_arch(), 0.5, 1e5)], objectives=objectives)
    text = write_report(run).read_text()
    assert "No Pareto front: no complete trial reports val_loss." in text


def test_report_counts_cached_repeats_apart_from_trained_trials(runs):
    first = runs.record(0, runs.tiny_arch(), 0.5, 1e5)
    repeat = runs.record(1, runs.tiny_arch(), 0.5, 1e5)
    repeat.cached_from = 0
    text = write_report(runs.make("repeats", [first, repeat])).read_text()
    header = ("| run | strategy | trained | complete | failed | pruned | cached repeats | seed repeats "
              "| trial time (sum) |")
    assert header in text
    assert "| repeats | random | 1 | 1 | 0 | 0 | 1 | 0 | 1.5 s |" in text


def test_a_cached_repeat_is_not_a_second_point_on_the_front(runs):
    first = runs.record(0, runs.tiny_arch(), 0.5, 1e5)
    repeat = runs.record(1, runs.tiny_arch(), 0.5, 1e5)
    repeat.cached_from = 0
    text = write_report(runs.make("repeats-front", [first, repeat])).read_text()
    assert "1 of 1 complete trials are non-dominated" in text


def test_report_draws_the_front_on_static_or_effective_flops(runs, tmp_path):
    """A trial whose learned spans made it cheap is on the effective front only."""
    arch = runs.tiny_arch()
    records = [runs.record(0, arch, 0.6, 1e6, **{names.FLOPS_EFFECTIVE: 1e6}),
               runs.record(1, runs.tiny_arch(64), 0.5, 2e6, **{names.FLOPS_EFFECTIVE: 4e5})]
    run = runs.make("spans", records)
    static = write_report(run, tmp_path / "static", cost="flops")
    effective = write_report(run, tmp_path / "effective", cost="flops_effective")
    front = lambda path: pd.read_csv(path.parent / "trials.csv").set_index("proposal_id")["front_rank"]  # noqa: E731
    assert front(static).to_dict() == {0: 0, 1: 1}
    assert front(effective).to_dict() == {0: 0, 1: 0}
    assert "flops_effective" in effective.read_text()
    with pytest.raises(DynasError, match="--cost"):
        write_report(run, tmp_path / "bad", cost="params")
