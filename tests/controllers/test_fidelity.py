"""Budget as a fidelity (``search.fidelity``, ``controllers.run.fidelity``).

The contract: every record carries the budget it trained at; rung k > 0 trains the
best of rung k-1 by validation values, told to no policy; fronts, picks and
confirmations use the top rung only; a run killed mid-rung resumes training exactly
what is missing; every policy drives rung 0, in-process and under Ray.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from dynas.analysis.load import at_top_rung, complete, load_runs
from dynas.analysis.pareto import pareto_front, pick
from dynas.analysis.report import write_report
from dynas.controllers.driver import SearchDriver
from dynas.controllers.policies import POLICIES
from dynas.controllers.policy import Outcome, Proposal
from dynas.controllers.records import TrialRecord, iter_records
from dynas.controllers.results import TrialResult
from dynas.controllers.run.fidelity import promotions
from dynas.controllers.run.in_process import InProcess, experiment_evaluator, run_in_process
from dynas.controllers.run.session import resume_search, start_search
from dynas.controllers.interrupt import InterruptedNow
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.settings import FidelitySettings, Objective
from dynas.trainers.results import TrialMetrics

STEPS = 2                    # training.steps_per_experience: rung r trains r * STEPS
OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))


def experiment(strategy: str = "random", trials: int = 4, rungs=(1, 2), keep: float = 0.5,
               task: str = "split_digits", **search):
    return parse_experiment({
        "space": {"layers": [1], "d_model": [16], "layer": {
            "attention": [{"kind": "full", "heads": [2, 4]}],
            "ffn": [{"kind": "dense", "expansion": [2, 4]}]}},
        "task": {"name": task},
        "training": {"steps_per_experience": STEPS, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": strategy, "trials": trials, "seed": 0, "concurrent": 1,
                   "fidelity": {"rungs": list(rungs), "keep": keep}, **search},
    })


def trained(records):
    """Records that trained something (no duplicates answered from the cache)."""
    return [r for r in records if r.cached_from is None and not r.baseline]


def assert_no_duplicate_trainings(records):
    keys = [(r.proposal_id, r.budget, r.repeat_of, r.train_seed) for r in trained(records)]
    assert len(keys) == len(set(keys)), keys


def assert_trained_at_their_budget(records):
    """What fit counted, not only what the driver stamped: steps = budget x experiences."""
    done = [r for r in trained(records) if r.state == "complete"]
    assert done and all(r.steps == r.budget * r.experiences_done for r in done)


# --- settings ---------------------------------------------------------------------------
@pytest.mark.parametrize("rungs, keep, trials, message", [
    ((1, 4, 2), 0.5, 8, "search.fidelity.rungs: budgets must increase"),
    ((0, 4), 0.5, 8, "search.fidelity.rungs[0]: must be >= 1"),
    ((1, 1), 0.5, 8, "search.fidelity.rungs: budgets must increase"),
    ((1,), 0.5, 8, "search.fidelity.rungs: one rung is no fidelity"),
    ((1, 4), 1.0, 8, "search.fidelity.keep: must be < 1"),
    ((1, 4, 16), 0.25, 15, "search.fidelity.rungs: 3 rungs keeping 0.25 each need at least 16 trials"),
])
def test_bad_fidelity_settings_name_the_key(rungs, keep, trials, message):
    with pytest.raises(ConfigError) as err:
        experiment(trials=trials, rungs=rungs, keep=keep)
    assert str(err.value).startswith(message), str(err.value)


def test_rung_sizes_floor_the_kept_fraction():
    assert FidelitySettings((1, 4, 16), 0.25).sizes(16) == [16, 4, 1]
    assert FidelitySettings((1, 3), 0.5).sizes(5) == [5, 2]
    assert not FidelitySettings().enabled


# --- rung decisions and the policy ------------------------------------------------------
def _record(pid: int, acc: float, test_acc: float, budget: int, flops: float = 100.0) -> TrialRecord:
    arch = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2 + pid)),))
    values = {names.FINAL_AVG_ACCURACY: acc, names.as_test(names.FINAL_AVG_ACCURACY): test_acc,
              names.FLOPS: flops}
    return TrialRecord(proposal_id=pid, arch_id=arch.arch_id, arch=arch.to_dict(), params={}, state="complete",
                       measured=TrialMetrics(values=values), objectives=[acc, flops], budget=budget)


def test_promotion_ranks_on_validation_never_on_test():
    """Test accuracy is one minus validation here: a rung that looked at it would promote
    the worst candidates instead of the best."""
    records = [_record(pid, acc, 1 - acc, budget=2) for pid, acc in enumerate([0.2, 0.9, 0.5, 0.7])]
    chosen = [p.id for p in promotions(records, OBJECTIVES, lower=2, upper=4, count=2)]
    assert chosen == [1, 3]
    # held at the upper rung already (complete or failed): not trained again
    records.append(_record(1, 0.95, 0.05, budget=4))
    assert [p.id for p in promotions(records, OBJECTIVES, lower=2, upper=4, count=2)] == [3]


def test_a_promotion_is_recorded_with_its_budget_and_told_to_no_policy(tmp_path, toy_space):
    told = []

    class Listening:
        name, space, objectives = "listening", toy_space, OBJECTIVES

        def ask(self):
            raise AssertionError("a rung above 0 asks no policy")

        def tell(self, proposal_id, outcome):
            told.append(proposal_id)

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    records = [_record(0, 0.5, 0.5, budget=2)]
    driver = SearchDriver(Listening(), tmp_path, budget=0, records=records, objectives=OBJECTIVES, trained_at=4)
    proposal = Proposal(0, ArchConfig.from_dict(records[0].arch), {})
    driver.queue_promotions([proposal])
    assert driver.ask() == proposal and driver.ask() is None
    driver.tell(proposal, TrialResult("complete", TrialMetrics(values={names.FINAL_AVG_ACCURACY: 0.8,
                                                                       names.FLOPS: 100.0})))
    assert told == []
    (record,) = list(iter_records(tmp_path))
    assert (record.proposal_id, record.budget, record.objectives) == (0, 4, [0.8, 100.0])
    assert driver.finished


def test_picks_come_from_the_top_rung_on_validation(tmp_path):
    """A lower rung's better number is not on the front (another budget), and within the
    top rung the pick follows validation, not the test split (reversed here)."""
    from dynas.controllers.records import RUN_FILE, append_record, write_json_atomic

    write_json_atomic(tmp_path / RUN_FILE, {"name": "run", "strategy": "random", "trials": 3,
                                            "objectives": [{"metric": o.metric, "direction": o.direction}
                                                           for o in OBJECTIVES]})
    for record in [_record(0, 0.99, 0.01, budget=2), _record(1, 0.6, 0.4, budget=2),
                   _record(2, 0.5, 0.5, budget=2), _record(1, 0.7, 0.3, budget=4),
                   _record(2, 0.65, 0.35, budget=4)]:
        append_record(tmp_path, record)
    df = load_runs(tmp_path)
    assert set(pareto_front(df, OBJECTIVES)["budget"]) == {4}
    best = pick(df, "best-accuracy", OBJECTIVES)
    assert (best["proposal_id"], best["budget"]) == (1, 4)


# --- the policy hears rung 0, on validation ----------------------------------------------------
class Recording:
    """A plugin's strategy: random, remembering every value it is told."""

    def __init__(self, inner, told):
        self.inner, self.told = inner, told

    def tell(self, proposal_id, outcome):
        self.told[proposal_id] = outcome.values
        self.inner.tell(proposal_id, outcome)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_no_test_value_reaches_the_policy_or_a_rung(tmp_path):
    """On a task whose test labels are swapped (test accuracy = 1 - validation: see
    test_honest_selection), a plugin policy hears rung 0's validation values, once per
    proposal, and nothing of the promotions; the promoted are the best by validation."""
    from dynas.controllers.policies import register_policy
    from dynas.search_space.settings import TaskSettings
    from dynas.trainers.tasks import TASKS, register_task, task_shape
    from tests.controllers.test_honest_selection import SHIFTED, shifted_digits

    told: dict = {}
    random = POLICIES.get("random").factory
    with POLICIES.kept(), TASKS.kept():
        register_task(SHIFTED, shape=lambda **o: task_shape(TaskSettings("split_digits", o)),
                      description="test labels swapped")(shifted_digits)
        register_policy("recording", lambda *args: Recording(random(*args), told))
        run = start_search(experiment("recording", trials=4, task=SHIFTED), tmp_path / "run", InProcess(),
                           verbose=0)
    records = list(iter_records(run))
    rung0 = [r for r in records if r.budget == STEPS]
    assert set(told) == {r.proposal_id for r in rung0}        # promotions are told to no one
    for record in trained(rung0):
        val = record.metrics[names.FINAL_AVG_ACCURACY]
        assert val != pytest.approx(record.metrics[names.as_test(names.FINAL_AVG_ACCURACY)])
        assert told[record.proposal_id] == (val, record.metrics[names.FLOPS]) == tuple(record.objectives)
    promoted = {r.proposal_id for r in trained(records) if r.budget == 2 * STEPS}
    assert promoted == {p.id for p in promotions(rung0, OBJECTIVES, STEPS, 0, 2)}


# --- end to end, in-process ----------------------------------------------------------------
def test_records_carry_budgets_and_the_front_is_the_top_rungs(tmp_path):
    run = start_search(experiment(trials=4, rungs=(1, 2, 4), keep=0.5), tmp_path / "run", InProcess(), verbose=0)
    records = list(iter_records(run))
    assert {r.budget for r in records} == {2, 4, 8}
    by_budget = {b: [r for r in trained(records) if r.budget == b] for b in (2, 4, 8)}
    assert [len(by_budget[4]), len(by_budget[8])] == [2, 1]
    assert_trained_at_their_budget(records)
    # rung 1 holds rung 0's best two by validation (front rank, then accuracy), rung 2 rung 1's best
    best0 = promotions([r for r in records if r.budget == 2], OBJECTIVES, 2, 99, 2)
    assert {p.id for p in best0} == {r.proposal_id for r in by_budget[4]}
    assert_no_duplicate_trainings(records)
    # only the top rung's model is kept
    assert [r.budget for r in records if r.weights] == [8]

    df = load_runs(run)
    assert set(df["budget"]) == {2, 4, 8}
    assert set(complete(df)["budget"]) == {8}
    assert set(pareto_front(df, OBJECTIVES)["budget"]) == {8}
    assert pick(df, "knee", OBJECTIVES)["budget"] == 8
    text = write_report(run).read_text()
    assert "the top rung's only, 8 steps per experience" in text


def test_a_run_without_rungs_records_its_one_budget(tmp_path):
    exp = parse_experiment({**experiment().raw, "search": {"strategy": "random", "trials": 2, "concurrent": 1}})
    run = start_search(exp, tmp_path / "run", InProcess(), verbose=0)
    assert {r.budget for r in iter_records(run)} == {STEPS}
    df = load_runs(run)
    assert at_top_rung(df).all()
    # older records (no budget) are the run's one budget, on the front with the rest
    old = pd.DataFrame({"run": ["a", "a"], "budget": [None, 5]})
    assert at_top_rung(old).all()


class KilledMidRung(InProcess):
    """Trains one promotion of rung 1, then is killed (a SIGINT, as a user's Ctrl-C)."""

    def drive(self, driver, experiment, search, run_dir, phase, *, verbose, stop=None):
        if phase != "rung1":
            return super().drive(driver, experiment, search, run_dir, phase, verbose=verbose, stop=stop)
        proposal = driver.ask()
        driver.tell(proposal, run_in_process(experiment_evaluator(experiment, search, run_dir), proposal.arch))
        raise KeyboardInterrupt


def test_kill_mid_rung_then_resume_trains_only_what_is_missing(tmp_path):
    exp = experiment(trials=4, rungs=(1, 2, 4), keep=0.5)
    with pytest.raises(InterruptedNow):
        start_search(exp, tmp_path / "run", KilledMidRung(), verbose=0)
    before = list(iter_records(tmp_path / "run"))
    assert [r.budget for r in trained(before)].count(4) == 1 and 8 not in {r.budget for r in before}

    resume_search(tmp_path / "run", InProcess(), verbose=0)
    after = list(iter_records(tmp_path / "run"))
    new = trained(after[len(before):])
    assert sorted(r.budget for r in new) == [4, 8]          # the one missing at rung 1, then rung 2
    assert_no_duplicate_trainings(after)
    assert [r.to_dict() for r in after[:len(before)]] == [r.to_dict() for r in before]
    # a second resume has nothing to train
    resume_search(tmp_path / "run", InProcess(), verbose=0)
    assert len(list(iter_records(tmp_path / "run"))) == len(after)


@pytest.mark.parametrize("strategy", POLICIES.names())
def test_every_policy_searches_rung_zero(tmp_path, strategy):
    run = start_search(experiment(strategy, trials=4, rungs=(1, 2), keep=0.5), tmp_path / strategy, InProcess(),
                       verbose=0)
    records = list(iter_records(run))
    assert {r.budget for r in records} == {2, 4}
    assert len([r for r in trained(records) if r.budget == 4]) == 2
    assert all(r.policy == strategy for r in records)
    assert_no_duplicate_trainings(records)


def test_confirm_repeats_the_top_rung_at_its_budget(tmp_path):
    exp = experiment(trials=2, rungs=(1, 2), keep=0.5, confirm={"top": 1, "seeds": 1})
    run = start_search(exp, tmp_path / "run", InProcess(), verbose=0)
    records = list(iter_records(run))
    (top,) = [r for r in trained(records) if r.budget == 4 and r.repeat_of is None]
    (repeat,) = [r for r in records if r.repeat_of is not None]
    assert (repeat.repeat_of, repeat.budget, repeat.steps) == (top.proposal_id, 4, top.steps)


# --- under Ray ------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("strategy", POLICIES.names())
def test_fidelity_search_under_ray(tmp_path, ray_local, strategy):
    from dynas.controllers.tune.executor import RayTune

    run = start_search(experiment(strategy, trials=2, rungs=(1, 2), keep=0.5), tmp_path / "run", RayTune(),
                       verbose=0)
    records = list(iter_records(run))
    assert {r.budget for r in records} == {2, 4}
    assert len([r for r in trained(records) if r.budget == 4]) == 1
    assert_no_duplicate_trainings(records)
    assert_trained_at_their_budget(records)
    assert set(complete(load_runs(run))["budget"]) == {4}
    (promoted,) = [r for r in trained(records) if r.budget == 4]
    assert list((run / "curves").glob(f"p{promoted.proposal_id:04d}-*-steps4"))   # beside rung 0's curves
