"""The local runner: ask -> evaluate -> tell, records and state on disk, resume."""
from __future__ import annotations

import json
import logging
import math
import shutil

import pytest

from dynas.controllers.run.in_process import run_local
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.policies import make_policy
from dynas.controllers.records import POLICY_STATE_FILE, RUN_FILE, iter_records
from dynas.search_space import names
from dynas.search_space.errors import ConfigError, DynasError, InfeasibleError
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.settings import SearchSettings
from tests.controllers.conftest import TWO_OBJECTIVES, ToySpace, toy_metrics
from tests.controllers.test_dedup import TINY


class Evaluator:
    """Synthetic training: toy metrics, with scripted failures; counts its calls."""

    def __init__(self, fail=lambda arch: None):
        self.calls, self.fail = [], fail

    def __call__(self, arch):
        self.calls.append(arch.arch_id)
        problem = self.fail(arch)
        if problem:
            raise problem
        metrics = toy_metrics(arch) if arch.to_dict().get("kind") else {
            names.FINAL_AVG_ACCURACY: 0.5 + 0.1 * arch.to_dict()["a"], names.FLOPS: 1e6}
        return "complete", metrics, {"acc_matrix": [[metrics[names.FINAL_AVG_ACCURACY]]], "experiences_done": 1}


def policy_for(name="random", space=None, seed=0):
    return make_policy(name, space or ToySpace(), TWO_OBJECTIVES, seed, SearchSettings(trials=10))


def run(tmp_path, trials=6, name="random", evaluate=None, space=None, **kw):
    space = space or ToySpace()
    evaluate = evaluate or Evaluator()
    records = run_local(space, evaluate, policy_for(name, space), TWO_OBJECTIVES, tmp_path, trials, **kw)
    return records, evaluate


def test_writes_a_record_per_trial_and_the_policy_state(tmp_path):
    records, evaluate = run(tmp_path, trials=6, seed=4)
    on_disk = list(iter_records(tmp_path))
    assert [r.to_dict() for r in on_disk] == [r.to_dict() for r in records]
    assert len(records) == 6 == len(set(evaluate.calls))
    first = records[0]
    assert first.state == "complete" and first.policy == "random" and first.seed == 4
    assert first.objectives == [first.metrics[names.FINAL_AVG_ACCURACY], first.metrics[names.FLOPS]]
    assert first.acc_matrix and first.experiences_done == 1 and first.wall_time_s >= 0
    state = json.loads((tmp_path / POLICY_STATE_FILE).read_text())
    assert state["next_id"] == 6 and len(state["told"]) == 6
    run_info = json.loads((tmp_path / RUN_FILE).read_text())
    assert run_info["strategy"] == "random" and run_info["trials"] == 6 and run_info["space_size"] == 110


def test_failures_are_recorded_and_the_search_goes_on(tmp_path):
    def fail(arch):
        kind = arch.to_dict()["kind"]
        return RuntimeError("boom") if kind == "conv" else InfeasibleError("too big") if kind == "mlp" else None

    records, _ = run(tmp_path, trials=12, evaluate=Evaluator(fail))
    by_kind = {r.arch["kind"]: r for r in records}
    assert by_kind["conv"].state == "failed" and by_kind["conv"].reason == "RuntimeError: boom"
    assert by_kind["mlp"].reason == "infeasible: too big" and by_kind["mlp"].objectives is None
    assert by_kind["attn"].state == "complete"
    assert len(records) == 12


def test_non_finite_and_pruned_results(tmp_path):
    def evaluate(arch):
        m = toy_metrics(arch)
        if arch.to_dict()["kind"] == "conv":
            return "complete", {**m, names.FLOPS: math.nan}, {}
        return ("pruned", m, {"reason": "asha"}) if arch.to_dict()["kind"] == "mlp" else ("complete", m, {})

    records, _ = run(tmp_path, trials=12, evaluate=evaluate)
    states = {r.arch["kind"]: (r.state, r.reason, r.objectives is None) for r in records}
    assert states["conv"][0] == "failed" and "non-finite" in states["conv"][1]
    assert states["mlp"] == ("pruned", "asha", False)


def test_user_errors_stop_the_run(tmp_path):
    with pytest.raises(ConfigError):
        run(tmp_path / "a", evaluate=Evaluator(lambda arch: ConfigError("task.x", "bad")))
    # a trial that does not report an objective's metric fails (as under Ray), naming it
    records, _ = run(tmp_path / "b", trials=2, evaluate=lambda arch: ("complete", {names.FLOPS: 1.0}, {}))
    assert all(r.state == "failed" and "search.objectives[0].metric" in r.reason for r in records)
    with pytest.raises(ValueError, match="unknown extra fields"):
        run(tmp_path / "c", evaluate=lambda arch: ("complete", toy_metrics(arch), {"loss": 1}))


def test_never_trains_an_architecture_twice(tmp_path):
    records, evaluate = run(tmp_path, trials=4, space=TINY)
    trained = [r for r in records if r.cached_from is None]
    cached = [r for r in records if r.cached_from is not None]
    assert len(trained) == 4 == len(set(evaluate.calls)) == len(evaluate.calls)
    assert cached, "random search on 4 candidates proposes duplicates"
    by_id = {r.proposal_id: r for r in trained}
    for r in cached:
        assert r.arch_id == by_id[r.cached_from].arch_id
        assert r.objectives == by_id[r.cached_from].objectives and r.metrics == by_id[r.cached_from].metrics


def test_an_exhausted_space_ends_the_run_early(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="dynas.controllers.run.in_process"):
        records, evaluate = run(tmp_path, trials=6, space=TINY, max_duplicates=10)
    assert len(evaluate.calls) == 4
    assert "the space is exhausted: all 4 distinct candidates were explored" in caplog.text


def test_refuses_to_overwrite_a_run(tmp_path):
    run(tmp_path, trials=2)
    with pytest.raises(DynasError, match="already holds trials"):
        run(tmp_path, trials=2)


def _summary(run_dir):
    return [(r.proposal_id, r.arch_id, r.state, r.cached_from) for r in iter_records(run_dir)]


@pytest.mark.parametrize("name", ["random", "tpe", "nsga2", "ppo"])
def test_resume_equals_an_uninterrupted_run(tmp_path, name):
    run(tmp_path / "whole", trials=9, name=name)
    run(tmp_path / "split", trials=5, name=name)
    records, evaluate = run(tmp_path / "split", trials=9, name=name, resume=True)
    assert len(evaluate.calls) == 4
    assert _summary(tmp_path / "split") == _summary(tmp_path / "whole")


@pytest.mark.parametrize("name", ["random", "tpe", "nsga2", "ppo"])
def test_resume_after_a_crash_between_record_and_state(tmp_path, name):
    """The record of trial 5 was written, the state after it was not: on resume the
    policy proposes trial 5 again, hears the recorded outcome, and nothing is retrained."""
    run(tmp_path / "whole", trials=8, name=name)
    run(tmp_path / "split", trials=5, name=name)
    stale = (tmp_path / "split" / POLICY_STATE_FILE).read_text()
    run(tmp_path / "split", trials=6, name=name, resume=True)
    (tmp_path / "split" / POLICY_STATE_FILE).write_text(stale)
    _, evaluate = run(tmp_path / "split", trials=8, name=name, resume=True)
    assert len(evaluate.calls) == 2
    assert _summary(tmp_path / "split") == _summary(tmp_path / "whole")


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(DynasError, match="not a dynas run directory"):
        run(tmp_path, trials=2, resume=True)


@pytest.mark.slow
def test_run_local_experiment_trains_real_candidates(tmp_path):
    """Two tiny candidates through trainers.fit on Split-Digits, end to end."""
    shutil.rmtree(tmp_path, ignore_errors=True)
    experiment = parse_experiment({
        "space": {"layers": [1], "d_model": [16], "layer": {
            "attention": [{"kind": "full", "heads": [2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}},
        "task": {"name": "split_digits"},
        "training": {"steps_per_experience": 2, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": "random", "trials": 2, "seed": 0},
    })
    records = run_local_experiment(experiment, tmp_path)
    assert len([r for r in records if r.cached_from is None]) == 2
    assert all(r.state == "complete" for r in records)
    assert {names.FINAL_AVG_ACCURACY, names.FLOPS} <= set(records[0].metrics)
    assert len(records[0].acc_matrix) == records[0].experiences_done == 5
    assert (tmp_path / "experiment.yaml").is_file()
    with pytest.raises(ConfigError, match="plain decision space"):
        run_local_experiment(parse_experiment({"space": {"decisions": {"a": [1, 2]}},
                                               "search": {"objectives": [
                                                   {"metric": "final_avg_accuracy", "direction": "max"}]}}),
                             tmp_path / "plain")
