"""PolicySearcher: the Tune Searcher around any Policy.

The first tests drive the searcher by hand, as Tune would (no Ray process needed):
state mapping, records, duplicates, infeasible candidates, save/restore. The last
ones run it under Ray Tune with Ray's ConcurrencyLimiter and a cheap function
trainable over a plain decision space (no torch training).
"""
from __future__ import annotations

import json
import time

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.driver import SearchDriver
from dynas.controllers.policies import make_policy
from dynas.controllers.records import POLICY_STATE_FILE, RECORDS_FILE, iter_records
from dynas.controllers.tracking import trial_name
from dynas.controllers.tune.searcher import PolicySearcher, parse_result, tune_result
from dynas.search_space import names
from dynas.search_space.plain import parse_decision_space
from dynas.search_space.settings import Objective

OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))


def small_space(b_high: int = 5):
    """4 x (b_high + 1) assignments of two decisions."""
    return parse_decision_space({"decisions": {"a": [1, 2, 3, 4], "b": {"low": 0, "high": b_high}}})


def score(arch: dict, experience: int = 1) -> dict[str, float]:
    """A cheap stand-in for training: accuracy grows with a*b and with experiences."""
    acc = min(1.0, 0.1 * arch["a"] + 0.02 * arch["b"] + 0.05 * experience)
    return {names.FINAL_AVG_ACCURACY: acc, names.FLOPS: 1e3 * arch["a"] * (1 + arch["b"])}


def make_searcher(tmp_path, budget=4, strategy="random", space=None, metric=None, mode=None,
                  **kwargs) -> PolicySearcher:
    space = space or small_space()
    policy = make_policy(strategy, space, OBJECTIVES, seed=0)
    driver = SearchDriver(policy, tmp_path, budget=budget, seed=0, **kwargs)
    return PolicySearcher(driver, metric=metric, mode=mode)


def finish(searcher, trial_id, config, done=2, total=2):
    result = tune_result(TrialMetrics(values=score(config["arch"], done), acc_matrix=[[0.5]] * done), done, total)
    searcher.on_trial_complete(trial_id, result=result)


# --- by hand ------------------------------------------------------------------------
def test_suggest_returns_a_config_and_finished_after_budget(tmp_path):
    s = make_searcher(tmp_path, budget=2)
    configs = [s.suggest(f"t{i}") for i in range(2)]
    assert all(set(c) == {"proposal_id", "arch", "params", "arch_id", "train_seed", "promoted"} for c in configs)
    assert all(c["train_seed"] is None for c in configs), "a first measurement: the experiment's seed"
    assert configs[0]["arch_id"] != configs[1]["arch_id"]
    assert s.suggest("t2") == "FINISHED"


def test_a_trial_removed_before_it_ran_is_not_recorded_and_is_asked_again(tmp_path):
    """No result at all is no verdict on the architecture (Tune removed the trial, e.g.
    when a search is interrupted): nothing is recorded and the budget is given back."""
    s = make_searcher(tmp_path, budget=1)
    s.suggest("t0")
    s.on_trial_complete("t0", result=None)
    assert not (tmp_path / RECORDS_FILE).exists() and s.driver.started == 0
    assert isinstance(s.suggest("t1"), dict)


def test_complete_pruned_and_failed_are_recorded_once_each(tmp_path):
    s = make_searcher(tmp_path, budget=3)
    c = [s.suggest(f"t{i}") for i in range(3)]
    finish(s, "t0", c[0])                                   # every experience: complete
    finish(s, "t1", c[1], done=1, total=2)                  # stopped early: pruned
    s.on_trial_result("t2", tune_result(TrialMetrics(values=score(c[2]["arch"])), 1, 2))
    s.on_trial_complete("t2", error=True)                   # Tune gives no message ...
    assert "t2" not in {r.trial_id for r in iter_records(tmp_path)}   # ... so it waits for one
    s.record_error("t2", "non-finite loss: loss is nan")
    records = {r.trial_id: r for r in iter_records(tmp_path)}
    assert [records[t].state for t in ("t0", "t1", "t2")] == ["complete", "pruned", "failed"]
    assert records["t0"].objectives == list(score(c[0]["arch"], 2).values())
    assert records["t0"].acc_matrix == [[0.5], [0.5]] and records["t0"].experiences_done == 2
    assert records["t1"].reason == "stopped by the scheduler after 1 of 2 experiences"
    assert records["t1"].objectives is not None             # pruned keeps its last values
    assert records["t2"].reason == "non-finite loss: loss is nan" and records["t2"].objectives is None
    assert records["t2"].experiences_done == 1              # from the last reported result
    state = json.loads((tmp_path / POLICY_STATE_FILE).read_text())
    assert state == s.driver.policy.state_dict()


def test_missing_objective_metric_fails_the_trial_not_the_search(tmp_path):
    s = make_searcher(tmp_path, budget=1)
    s.suggest("t0")
    s.on_trial_complete("t0", result=tune_result(TrialMetrics(values={names.FLOPS: 1.0}), 2, 2))
    (record,) = iter_records(tmp_path)
    assert record.state == "failed" and names.FINAL_AVG_ACCURACY in record.reason


def test_duplicates_are_told_from_cache_and_never_trained(tmp_path):
    space = small_space(b_high=0)                           # only 4 distinct candidates
    s = make_searcher(tmp_path, budget=4, space=space)
    for i in range(4):
        config = s.suggest(f"t{i}")
        finish(s, f"t{i}", config)
    records = list(iter_records(tmp_path))
    trained = [r for r in records if r.cached_from is None]
    assert len({r.arch_id for r in trained}) == len(trained) == 4
    cached = [r for r in records if r.cached_from is not None]
    originals = {r.proposal_id: r for r in trained}
    for r in cached:
        assert r.arch_id == originals[r.cached_from].arch_id and r.trial_id == ""
        assert r.objectives == originals[r.cached_from].objectives
    assert s.suggest("t4") == "FINISHED"


def test_exhausted_space_finishes_early(tmp_path):
    space = small_space(b_high=0)
    s = make_searcher(tmp_path, budget=10, space=space)
    for i in range(4):
        finish(s, f"t{i}", s.suggest(f"t{i}"))
    assert s.suggest("t4") == "FINISHED" and "exhausted" in s.driver.exhausted


def test_duplicate_of_a_running_trial_waits_for_it(tmp_path):
    space = small_space(b_high=0)
    s = make_searcher(tmp_path, budget=5, space=space)
    configs = [s.suggest(f"t{i}") for i in range(4)]         # all four running
    assert s.suggest("t4") is None                          # only duplicates left: wait
    for i, config in enumerate(configs):
        finish(s, f"t{i}", config)
    waiting = [r for r in iter_records(tmp_path) if r.cached_from is not None]
    assert waiting, "the duplicates asked while all four ran are recorded once they finish"
    assert s.suggest("t5") == "FINISHED" and "exhausted" in s.driver.exhausted


def test_infeasible_candidates_fail_at_once_and_count(tmp_path):
    s = make_searcher(tmp_path, budget=3, feasible=lambda arch: (arch.to_dict()["a"] != 4, "a is 4"))
    started = [s.suggest(f"t{i}") for i in range(3)]
    failed = [r for r in iter_records(tmp_path) if r.state == "failed"]
    assert failed and all(r.reason == "infeasible: a is 4" and r.trial_id == "" for r in failed)
    infeasible = [r for r in failed if r.cached_from is None]   # duplicates are not new
    assert len([c for c in started if isinstance(c, dict)]) + len(infeasible) == 3


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_save_restore_round_trip(tmp_path, strategy):
    s = make_searcher(tmp_path / "a", budget=6, strategy=strategy)
    (tmp_path / "a").mkdir()
    for i in range(3):
        finish(s, f"t{i}", s.suggest(f"t{i}"))
    s.save(str(tmp_path / "searcher.json"))
    json.loads((tmp_path / "searcher.json").read_text())    # JSON, not a pickle
    (tmp_path / "b").mkdir()
    restored = make_searcher(tmp_path / "b", budget=1, strategy=strategy)
    restored.restore(str(tmp_path / "searcher.json"))
    assert (restored.driver.started, restored.driver.budget) == (3, 6)
    assert restored.suggest("x")["arch"] == s.suggest("y")["arch"]


def test_resume_bookkeeping_skips_records_already_written(tmp_path):
    """A record whose tell never reached policy_state.json (crash in between) is told
    again from the cache on resume, but not written twice."""
    s = make_searcher(tmp_path, budget=2)
    finish(s, "t0", s.suggest("t0"))
    state_after_first = s.driver.policy.state_dict()
    finish(s, "t1", s.suggest("t1"))
    records = list(iter_records(tmp_path))
    policy = make_policy("random", small_space(), OBJECTIVES, seed=0)
    policy.load_state_dict(state_after_first)               # the crash lost the 2nd tell
    again = PolicySearcher(SearchDriver(policy, tmp_path, budget=1, records=records))
    config = again.suggest("t2")
    assert config["arch_id"] not in {r.arch_id for r in records}
    ids = [r.proposal_id for r in iter_records(tmp_path)]
    assert len(ids) == len(set(ids)), "proposal 1 was told again but not recorded again"


# --- under Ray Tune -----------------------------------------------------------------
def cheap_trainable(config, fail_odd=False, experiences=2):
    """'Experiences' of a closed-form score; odd a + b raises like a diverged model."""
    from ray import tune

    from dynas.trainers.results import NonFiniteLoss

    arch = config["arch"]
    if fail_odd and (arch["a"] + arch["b"]) % 2:
        raise NonFiniteLoss("loss is nan at step 3")
    for e in range(1, experiences + 1):
        time.sleep(0.05)
        tune.report(tune_result(TrialMetrics(values=score(arch, e), acc_matrix=[[0.5] * e] * e), e, experiences))


def run_under_tune(tmp_path, trials, concurrent=2, scheduler="fifo", max_t=0, **params):
    from dynas.controllers.tune.executor import tune_search

    metric = (names.FINAL_AVG_ACCURACY, "max") if scheduler == "asha" else (None, None)
    searcher = make_searcher(tmp_path, budget=trials, metric=metric[0], mode=metric[1])
    tune_search(searcher, cheap_trainable, run_dir=tmp_path, name="t", concurrent=concurrent,
                resources={"cpu": 1}, scheduler=scheduler, max_t=max_t, verbose=0, **params)
    return searcher, list(iter_records(tmp_path))


def test_concurrency_limited_search_writes_one_record_per_trial(tmp_path, ray_local):
    searcher, records = run_under_tune(tmp_path, trials=6)
    trained = [r for r in records if r.cached_from is None]
    assert len(trained) == len({r.arch_id for r in trained}) == 6
    assert all(r.state == "complete" and r.experiences_done == 2 and r.trial_id for r in trained)
    assert all(r.acc_matrix == [[0.5, 0.5], [0.5, 0.5]] for r in trained)
    assert (tmp_path / "ray" / "t").is_dir()                # Tune's storage inside the run dir


def test_errors_become_failed_records_with_the_reason_and_the_search_goes_on(tmp_path, ray_local):
    searcher, records = run_under_tune(tmp_path, trials=4, fail_odd=True)
    failed = [r for r in records if r.state == "failed"]
    assert failed and all((r.arch["a"] + r.arch["b"]) % 2 for r in failed)
    assert all(r.reason.startswith("non-finite loss: loss is nan") for r in failed), [r.reason for r in failed]
    for r in (r for r in failed if r.cached_from is None):    # its traceback, in the run dir
        text = (tmp_path / "errors" / f"{trial_name(r.proposal_id)}.txt").read_text()
        assert "in cheap_trainable" in text and "NonFiniteLoss: loss is nan at step 3" in text
        assert "\x1b[" not in text
    assert len([r for r in records if r.cached_from is None]) == 4
    assert any(r.state == "complete" for r in records)


def test_asha_prunes_only_after_two_experiences(tmp_path, ray_local):
    _, records = run_under_tune(tmp_path, trials=8, concurrent=1, scheduler="asha", max_t=4,
                                experiences=4)
    trained = [r for r in records if r.cached_from is None]
    pruned = [r for r in trained if r.state == "pruned"]
    assert len(trained) == 8 and pruned, "worse candidates are cut at the first rung"
    assert all(r.experiences_done == 2 and "after 2 of 4" in r.reason for r in pruned)
    assert all(r.objectives is not None for r in pruned)    # told their last values
    complete = [r for r in trained if r.state == "complete"]
    assert complete and all(r.experiences_done == 4 for r in complete)


def test_parse_result_round_trip():
    result = tune_result(TrialMetrics(values={names.FLOPS: 3}, expert_load={"l0": [0.5, 0.5]}), 1, 4)
    blob = parse_result(result)
    assert blob["measured"]["values"] == {names.FLOPS: 3.0} and blob["experiences_done"] == 1
    assert blob["num_experiences"] == 4 and blob["measured"]["expert_load"] == {"l0": [0.5, 0.5]}
    assert parse_result(None) == {}


def test_a_trials_dynamics_reach_its_record():
    """Learned spans, realised k and the bits matrix travel from the worker's blob to
    the ``TrialResult`` the driver records."""
    from dynas.controllers.results import trial_result

    dynamics = [{"experience": 0, "spans": {"layers.0.attn": {"heads": [3.0], "crop": 8}},
                 "k": {"layers.0.ffn": {"mean": 1.5, "hist": [0, 1, 1]}}}]
    measured = TrialMetrics(values={names.FLOPS_EFFECTIVE: 2.0}, dynamics=dynamics, bits_matrix=[[3.5]])
    blob = parse_result(tune_result(measured, 1, 1))
    result = trial_result(blob, "complete")
    assert result.measured.dynamics == dynamics and result.measured.bits_matrix == [[3.5]]
    assert result.metrics == {names.FLOPS_EFFECTIVE: 2.0}


# --- dynas errors raised inside a Ray worker keep their message -------------------------
def dynas_errors():
    from dynas.search_space.errors import ConfigError, DynasError, InfeasibleError

    return {1: (ConfigError("task.name", "unknown task 'x'"), "ConfigError: task.name: unknown task 'x'"),
            2: (ConfigError("task.name", "unknown task 'y'", "exp.yaml"),
                "ConfigError: exp.yaml: task.name: unknown task 'y'"),
            3: (DynasError("broken run directory"), "DynasError: broken run directory"),
            4: (InfeasibleError("flops 3e6 > budget 1e6"), "infeasible: flops 3e6 > budget 1e6")}


def raising_trainable(config):
    raise dynas_errors()[config["arch"]["a"]][0]


def test_dynas_errors_raised_in_a_worker_are_recorded_with_their_message(tmp_path, ray_local):
    from dynas.controllers.tune.executor import tune_search

    searcher = make_searcher(tmp_path, budget=4, space=small_space(b_high=0))
    tune_search(searcher, raising_trainable, run_dir=tmp_path, name="t", concurrent=2,
                resources={"cpu": 1}, verbose=0)
    trained = {r.arch["a"]: r for r in iter_records(tmp_path) if r.cached_from is None}
    assert sorted(trained) == [1, 2, 3, 4]
    for a, (_, reason) in dynas_errors().items():
        assert trained[a].state == "failed" and trained[a].reason == reason, trained[a].reason


def test_search_loggers_mlflow_records_one_mlflow_run_per_trial(tmp_path, ray_local):
    """Ray's MLflow callback, as ``search.loggers: [mlflow]`` sets it up (RUN_DIR/mlflow.db)."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow is optional (pip install dynas[mlflow])")
    from dynas.controllers.tune.executor import tune_search
    from dynas.controllers.tracking import mlflow_uri, tune_callbacks

    searcher = make_searcher(tmp_path, budget=3)
    tune_search(searcher, cheap_trainable, run_dir=tmp_path, name="t", concurrent=2,
                resources={"cpu": 1}, verbose=0, callbacks=tune_callbacks(("mlflow",), tmp_path, "demo"))
    client = mlflow.tracking.MlflowClient(tracking_uri=mlflow_uri(tmp_path))
    experiment = client.get_experiment_by_name("demo")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3
    assert all(names.FINAL_AVG_ACCURACY in run.data.metrics for run in runs)
    assert (tmp_path / "ray" / "t").is_dir() and list((tmp_path / "ray" / "t").rglob("result.json"))
