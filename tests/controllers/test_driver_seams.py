"""The driver's seams: the policy registry, strategy settings, errors across pickling,
the ``asks`` count, the search commands' exit code."""
from __future__ import annotations

import pickle

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.commands import EXIT_NOTHING_COMPLETED, _finished
from dynas.controllers.run.in_process import run_local
from dynas.controllers.policies import POLICIES, check_search, make_policy, register_policy
from dynas.controllers.policies.random import RandomPolicy
from dynas.controllers.records import TrialRecord, append_record, iter_records, write_json_atomic
from dynas.search_space.errors import ConfigError, DynasError, InfeasibleError
from dynas.search_space.experiment import parse_experiment
from tests.controllers.conftest import TWO_OBJECTIVES, ToySpace, toy_metrics
from tests.controllers.test_dedup import TINY

SPACE = {"decisions": {"a": [1, 2]}}


def search_of(section: dict):
    return parse_experiment({"space": SPACE, "search": section}).search


@pytest.fixture
def plugin():
    """A strategy registered from outside, as a plugin would (removed afterwards)."""
    register_policy("plugin_random", lambda space, objectives, seed, search, settings:
                    RandomPolicy(space, objectives, seed=seed))
    yield "plugin_random"
    POLICIES.unregister("plugin_random")


def test_a_registered_strategy_is_accepted_without_touching_search_space(plugin):
    search = search_of({"strategy": plugin})
    check_search(search)
    policy = make_policy(plugin, parse_experiment({"space": SPACE}).space, TWO_OBJECTIVES, 0, search)
    assert policy.ask().arch.to_dict()["a"] in (1, 2)


@pytest.mark.parametrize("section, message", [
    ({"strategy": "grid"}, "search.strategy: unknown strategy 'grid'; known strategies: random, tpe, nsga2, ppo"),
    ({"strategy": "ppo", "ppo": {"lrr": 1}}, "search.ppo.lrr: unknown key"),
    ({"strategy": "ppo", "ppo": {"lr": -1.0}}, "search.ppo.lr: must be > 0, got -1.0"),
    ({"strategy": "random", "ppo": {"clip": 0.0}}, "search.ppo.clip: must be > 0, got 0.0"),
    ({"ppoo": {"lr": 1.0}}, "search.ppoo: unknown key; strategy settings sections: ppo"),
    ({"strategy": "random", "random": {"x": 1}}, "search.random: unknown key"),
])
def test_strategy_and_its_settings_are_checked_with_their_keys(section, message):
    with pytest.raises(ConfigError) as err:
        check_search(search_of(section))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_scalar_typos_in_search_are_still_rejected_when_parsed():
    with pytest.raises(ConfigError, match="search.trails: unknown key"):
        search_of({"trails": 3})


def test_ppo_section_reaches_the_policy_and_round_trips():
    from dynas.search_space.settings import settings_dict

    search = search_of({"strategy": "ppo", "ppo": {"lr": 0.1, "warmup": 2}})
    policy = make_policy("ppo", parse_experiment({"space": SPACE}).space, TWO_OBJECTIVES, 0, search)
    assert (policy.settings.lr, policy.settings.warmup) == (0.1, 2)
    assert settings_dict(search)["ppo"] == {"lr": 0.1, "warmup": 2}


@pytest.mark.parametrize("err", [DynasError("a run dir is broken"),
                                 ConfigError("task.name", "unknown task 'x'"),
                                 ConfigError("task.name", "unknown task 'x'", "exp.yaml"),
                                 InfeasibleError("flops 3e6 > budget 1e6")])
def test_every_dynas_error_survives_pickling(err):
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and str(again) == str(err)
    assert getattr(again, "key", None) == getattr(err, "key", None)


def test_asks_counts_the_policy_asks_behind_each_distinct_architecture(tmp_path):
    policy = make_policy("random", TINY, TWO_OBJECTIVES, 0)
    records = run_local(TINY, lambda arch: ("complete", {"final_avg_accuracy": 0.5, "flops": 1.0}, {}),
                        policy, TWO_OBJECTIVES, tmp_path, trials=4)
    trained = [r for r in records if r.cached_from is None]
    assert all(r.asks >= 1 for r in trained) and all(r.asks == 1 for r in records if r.cached_from is not None)
    # every ask is behind exactly one record: the new one, or a duplicate told from the cache
    assert sum(r.asks for r in trained) == policy.state_dict()["next_id"]
    old = TrialRecord.from_dict({k: v for k, v in records[0].to_dict().items() if k != "asks"})
    assert old.asks == 0                     # records written before the field stay readable


def test_search_commands_exit_1_when_no_trial_completed(tmp_path, capsys):
    write_json_atomic(tmp_path / "run.json", {"runner": "ray"})
    policy = make_policy("random", ToySpace(), TWO_OBJECTIVES, 0)
    arch = policy.ask().arch
    failed = TrialRecord(0, arch.arch_id, arch.to_dict(), {}, "failed", reason="RuntimeError: boom")
    append_record(tmp_path, failed)
    assert _finished(tmp_path).exit_code == EXIT_NOTHING_COMPLETED
    assert capsys.readouterr().err.startswith("dynas: no trial completed")
    append_record(tmp_path, TrialRecord(1, "x", arch.to_dict(), {}, "complete",
                                        measured=TrialMetrics(values=toy_metrics(arch))))
    assert _finished(tmp_path).exit_code == 0 and len(list(iter_records(tmp_path))) == 2


ARCH_EXPERIMENT = {
    "space": {"layers": [1], "d_model": [16], "layer": {
        "attention": [{"kind": "full", "heads": [2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}},
    "task": {"name": "split_digits"},
    "training": {"steps_per_experience": 2, "batch_size": 16, "device": "cpu"},
}


@pytest.mark.parametrize("search, message", [
    ({"trials": 2, "budget": {"max_flops": 1}}, "search.budget.max_flops"),
    ({"strategy": "ppo", "ppo": {"batch": 0}}, "search.ppo.batch: must be >= 1, got 0"),
    ({"strategy": "grid"}, "search.strategy: unknown strategy 'grid'"),
])
def test_the_local_runner_checks_the_file_as_dynas_search_does(tmp_path, search, message):
    from dynas.controllers.runs import run_local_experiment

    with pytest.raises(DynasError, match=message):     # ConfigError or InfeasibleError
        run_local_experiment(parse_experiment({**ARCH_EXPERIMENT, "search": search}), tmp_path / "run")
    assert not (tmp_path / "run").exists()          # refused before anything was written
