"""``dynas report`` warns before its numbers are read (``analysis.cautions``): runs that
differ in task, budget or space (and no hypervolume comparison across budgets unless
``--mixed-budgets``), a front near chance, one-seed fronts, inherited scores; the front
table has latency and memory; ``choices.png`` names what it leaves out; no empty or
ungrammatical lines with one seed."""
from __future__ import annotations

import dataclasses

import pytest
import yaml

from dynas.analysis.cli import main
from dynas.analysis.report import write_report
from dynas.controllers.records import TrialRecord
from dynas.search_space import names
from dynas.search_space.errors import DynasError
from dynas.trainers.results import TrialMetrics

ACC = names.FINAL_AVG_ACCURACY


def experiment(steps=60, task="split_digits"):
    return {"space": {"layers": [1, 2], "d_model": [16]}, "task": {"name": task},
            "training": {"steps_per_experience": steps, "batch_size": 16, "seed": 0}}


def make(runs, folder, records, exp=None, **kw):
    run = runs.make(folder, records, **kw)
    (run / "experiment.yaml").write_text(yaml.safe_dump(exp or experiment()))
    return run


def with_values(records, **changes):
    """The records with ``measured`` fields replaced (``chance_accuracy``...) or values added."""
    out = []
    for r in records:
        values = {**r.measured.values, **{k: v for k, v in changes.items() if k in names.ALL_METRICS}}
        measured = dataclasses.replace(r.measured, values=values,
                                       **{k: v for k, v in changes.items() if k not in names.ALL_METRICS})
        out.append(dataclasses.replace(r, measured=measured))
    return out


def report_text(path):
    return path.read_text()


def test_runs_at_different_budgets_are_named_and_not_compared(runs, capsys):
    a = make(runs, "run-a", runs.synthetic(12, seed=1), name="run-a")
    b = make(runs, "run-b", runs.synthetic(12, seed=2), exp=experiment(steps=15), name="run-b", strategy="tpe")
    text = report_text(write_report([a, b], runs.tmp / "out"))
    assert ("- **The runs differ in training budget** (run-a: {batch_size: 16, steps_per_experience: 60}; "
            "run-b: {batch_size: 16, steps_per_experience: 15})") in text
    assert "differ in task" not in text and "differ in space" not in text
    assert "Not compared: the runs were trained at different budgets (run-a: steps_per_experience 60" in text
    assert "share of combined" not in text
    mixed = report_text(write_report([a, b], runs.tmp / "mixed", mixed_budgets=True))
    assert "share of combined" in mixed and "Not compared" not in mixed
    assert main(["report", str(a), str(b), "--out", str(runs.tmp / "cli"), "--mixed-budgets"]) == 0
    assert "share of combined" in report_text(runs.tmp / "cli" / "report.md")


def test_runs_on_other_tasks_are_named(runs):
    a = make(runs, "a", runs.synthetic(8, seed=1))
    b = make(runs, "b", runs.synthetic(8, seed=2), exp=experiment(task="split_cifar"))
    text = report_text(write_report([a, b], runs.tmp / "out"))
    assert "- **The runs differ in task** (a: {name: split_digits}; b: {name: split_cifar})" in text
    assert "Not compared" not in text       # the same budget: hypervolumes are compared


def test_a_front_near_chance_is_flagged(runs):
    records = [runs.record(i, {"x": i}, acc, 1e6 * (i + 1)) for i, acc in enumerate([0.11, 0.15, 0.21])]
    run = make(runs, "r", with_values(records, chance_accuracy=0.1))
    text = report_text(write_report([run]))
    assert f"- **Near chance level.** The best {ACC} on the front is 0.21 against a chance level of 0.1" in text
    fine = make(runs, "fine", with_values([runs.record(0, {"x": 0}, 0.8, 1e6)], chance_accuracy=0.1))
    assert "Near chance" not in report_text(write_report([fine]))


def test_a_one_seed_front_suggests_confirm_and_a_confirmed_one_does_not(runs):
    records = runs.synthetic(10, seed=3)
    run = make(runs, "r", records)
    assert f"`dynas confirm {run} --top 5 --order knee --seeds 3`" in report_text(write_report([run]))
    first = next(r for r in records if r.state == "complete")
    repeat = dataclasses.replace(first, repeat_of=first.proposal_id, train_seed=7)
    confirmed = make(runs, "c", records + [repeat])
    assert "One training seed per candidate" not in report_text(write_report([confirmed]))


def test_one_seed_repeats_print_no_empty_or_plural_lines(runs):
    """A supernet run confirmed with one stand-alone seed: one seed, no spread yet."""
    records = [dataclasses.replace(r, evaluation="inherited") for r in runs.synthetic(10, seed=5)]
    first = next(r for r in records if r.state == "complete")
    repeat = dataclasses.replace(first, repeat_of=first.proposal_id, train_seed=7, evaluation="standalone")
    text = report_text(write_report([make(runs, "s", records + [repeat])]))
    assert "1 training seeds" not in text and "(mean over candidates): ." not in text
    assert "1 candidate measured with 1 training seed each" in text
    assert "--pick knee-means --out arch.json` (the default)" in text
    assert "No seed-to-seed spread yet" in text


def test_inherited_scores_are_labelled(runs):
    records = [dataclasses.replace(r, evaluation="inherited") for r in runs.synthetic(10, seed=5)]
    text = report_text(write_report([make(runs, "s", records)]))
    assert "- **Inherited scores.**" in text and "(knee, *inherited*)" in text


def test_front_table_has_latency_and_memory_and_cost_latency_draws_on_it(runs):
    records = [with_values([r], latency_ms=1.5 + r.proposal_id, kv_bytes=1024.0 * (r.proposal_id + 1),
                           activation_bytes=2048.0)[0] if r.state == "complete" else r
               for r in runs.synthetic(10, seed=6)]
    records = [dataclasses.replace(r, objectives=[r.measured.values[ACC], r.measured.values[names.FLOPS]])
               if r.state == "complete" else r for r in records]
    run = make(runs, "r", records)
    text = report_text(write_report([run]))
    header = next(line for line in text.splitlines() if line.startswith("| run | trial id | arch_id"))
    assert "| latency_ms |" in header and "| kv_bytes |" in header and "| activation_bytes |" in header
    by_latency = report_text(write_report([run], runs.tmp / "lat", cost="latency_ms"))
    assert "final_avg_accuracy (max), latency_ms (min)" in by_latency
    bare = make(runs, "bare", runs.synthetic(5, seed=1))
    with pytest.raises(DynasError, match="--cost latency_ms: no trial of these runs recorded latency_ms"):
        write_report([bare], cost="latency_ms")


def test_choices_figure_names_what_it_leaves_out(runs):
    records = []
    for pid in range(12):
        r = runs.record(pid, {"x": pid}, 0.5 + 0.03 * pid, 1e6 * (12 - pid) ** 2)
        records.append(dataclasses.replace(r, params={"lr": [0.1, 0.01][pid % 2], "fixed": 1, "width": pid}))
    text = report_text(write_report([make(runs, "r", records)]))
    assert "Not drawn: fixed (one option seen), width (12 options, too many for bars)" in text
