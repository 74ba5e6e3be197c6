"""Policies learn at any reward scale and spend their budget on new candidates (issue 15).

PPO: normalised advantages (fraction and percent give the same proposals), an entropy
bonus relative to the policy's own scale, novelty re-draws, a warm-up apart from
``random``'s, per-update logs. Optuna policies: a repeat is answered inside the policy
(TPE re-draws, NSGA-II mutates), TPE's constant liar is set, and a space that really
runs out is reported with its true count.
"""
from __future__ import annotations

import json
import logging

import optuna
import pytest

from dynas.controllers.driver import SearchDriver
from dynas.controllers.run.in_process import run_in_process
from dynas.controllers.objectives import objective_values
from dynas.controllers.policies import PPOSettings, make_policy
from dynas.controllers.policies.optuna_policies import REPEAT_ATTR
from dynas.controllers.policies.ppo import warmup_seed
from dynas.controllers.policy import Outcome
from dynas.controllers.records import OPTUNA_DB, iter_records
from dynas.search_space import names
from dynas.search_space.plain import parse_decision_space
from dynas.search_space.settings import SearchSettings

from tests.controllers.conftest import ONE_OBJECTIVE, TWO_OBJECTIVES, ToySpace, toy_metrics



def hashed_metrics(arch) -> dict[str, float]:
    h = int(arch.arch_id, 16)
    return {names.FINAL_AVG_ACCURACY: (h % 1000) / 1000, names.FLOPS: 1e6 * (1 + (h >> 10) % 97)}


def ppo(seed=0, objectives=ONE_OBJECTIVE, **settings):
    search = SearchSettings(trials=40, policy_settings={"ppo": PPOSettings(**settings)})
    return make_policy("ppo", ToySpace(), objectives, seed, search)


def run_policy(policy, n, scale=1.0, objectives=ONE_OBJECTIVE):
    """Ask and tell ``n`` times with toy accuracies times ``scale``; the proposals."""
    out = []
    for _ in range(n):
        p = policy.ask()
        values = tuple(v * scale if i == 0 else v
                       for i, v in enumerate(objective_values(toy_metrics(p.arch), objectives)))
        policy.tell(p.id, Outcome("complete", values))
        out.append(p.params)
    return out


@pytest.mark.parametrize("surrogate", [False, True])
def test_ppo_proposes_the_same_whether_accuracy_is_a_fraction_or_a_percentage(surrogate):
    fraction, percent = ppo(surrogate=surrogate), ppo(surrogate=surrogate)
    assert run_policy(fraction, 40) == run_policy(percent, 40, scale=100.0)
    assert fraction.updates == 10
    for name, probs in fraction.probabilities().items():
        assert probs == pytest.approx(percent.probabilities()[name], abs=1e-9)
    assert fraction.relative_entropy() < 0.97, "the policy moved away from uniform"


def test_ppo_advantages_have_unit_scale_whatever_the_rewards():
    policy = ppo()
    run_policy(policy, 3, scale=1e-4)
    advantages = [b["advantage"] for b in policy.state_dict()["buffer"]]
    assert advantages[0] == 0.0 and 0.1 < max(abs(a) for a in advantages) < 10


def test_ppo_logs_clip_fraction_and_entropy_per_update(caplog):
    policy = ppo()
    with caplog.at_level(logging.INFO, logger="dynas.controllers.policies.ppo"):
        run_policy(policy, 16)
    assert [u["update"] for u in policy.update_log] == [1, 2, 3, 4]
    for u in policy.update_log:
        assert 0.0 <= u["clip_fraction"] <= 1.0 and 0.0 < u["entropy"] <= 1.0
    assert policy.update_log[0]["entropy"] > policy.update_log[-1]["entropy"]
    assert caplog.text.count("clip fraction") == 4
    restored = ppo()
    restored.load_state_dict(json.loads(json.dumps(policy.state_dict())))
    assert restored.update_log == policy.update_log


def test_ppo_never_repeats_itself_while_new_candidates_are_left():
    """110 candidates; a policy that has converged (no entropy bonus, high lr) would
    repeat its favourite without the novelty re-draws."""
    policy = ppo(lr=0.5, entropy_bonus=0.0, warmup=2)
    proposals = run_policy(policy, 60)
    assert len({json.dumps(p, sort_keys=True) for p in proposals}) == 60


def test_ppo_warmup_is_not_random_search_with_the_same_seed():
    policy = make_policy("random", ToySpace(), ONE_OBJECTIVE, 0, SearchSettings())
    first_random = [policy.ask().params for _ in range(4)]
    first_ppo = [ppo(seed=0).ask().params] + [p for p in run_policy(ppo(seed=0), 4)[1:]]
    assert first_ppo != first_random
    assert warmup_seed(0) != 0 and warmup_seed(0) != warmup_seed(1)


def test_ppo_hypervolume_reward_is_the_normalised_gain_of_the_front():
    policy = ppo(objectives=TWO_OBJECTIVES, reward="hypervolume")
    told = [(0.5, 4e6), (0.7, 8e6)]
    for acc, flops in told:
        policy._history.append({"params": {}, "state": "complete", "values": [acc, flops], "reward": 0.0})
    extends = policy._hypervolume_reward([0.9, 8e6])       # dominates (0.7, 8e6): grows the front
    dominated = policy._hypervolume_reward([0.4, 8e6])
    assert 0 < extends <= 1 and dominated < 0


@pytest.mark.parametrize("strategy", ["tpe", "nsga2"])
def test_optuna_policies_answer_repeats_themselves(strategy):
    """On a 110-candidate space 70 asks are 70 distinct candidates; the repeats the
    sampler drew are failed, marked trials, never told twice as complete."""
    space = ToySpace()
    policy = make_policy(strategy, space, TWO_OBJECTIVES, 0, SearchSettings(trials=70))
    seen = set()
    for _ in range(70):
        p = policy.ask()
        assert p.arch.arch_id not in seen
        seen.add(p.arch.arch_id)
        policy.tell(p.id, Outcome("complete", objective_values(toy_metrics(p.arch), TWO_OBJECTIVES)))
    trials = policy.study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 70
    assert all(t.user_attrs.get(REPEAT_ATTR) for t in trials if t.state == optuna.trial.TrialState.FAIL)


def test_tpe_sets_its_constant_liar():
    policy = make_policy("tpe", ToySpace(), ONE_OBJECTIVE, 0, SearchSettings())
    policy.ask()
    assert policy.study.sampler._constant_liar is True


@pytest.mark.parametrize("strategy", ["random", "tpe", "nsga2", "ppo"])
def test_a_space_that_runs_out_is_reported_with_its_true_count(strategy, tmp_path, caplog):
    """Every one of the 24 candidates is trained before the driver says the space is
    exhausted, and it says so with the true count; asks per candidate are recorded."""
    space = parse_decision_space({"decisions": {"a": [1, 2, 3], "b": ["w", "x", "y", "z"], "c": [True, False]}})
    policy = make_policy(strategy, space, TWO_OBJECTIVES, 0, SearchSettings(trials=40))
    driver = SearchDriver(policy, tmp_path, budget=40, max_duplicates=200)
    evaluate = lambda a: ("complete", hashed_metrics(a), {})   # noqa: E731
    while (proposal := driver.ask()) is not None:
        driver.tell(proposal, run_in_process(evaluate, proposal.arch))
    assert driver.exhausted == "the space is exhausted: all 24 distinct candidates were explored"
    trained = [r for r in iter_records(tmp_path) if r.cached_from is None]
    assert len({r.arch_id for r in trained}) == len(trained) == 24
    assert all(r.asks >= 1 for r in trained)


def test_optuna_study_is_mirrored_to_sqlite_and_rebuilt_on_restore(tmp_path):
    db = tmp_path / OPTUNA_DB
    policy = make_policy("tpe", ToySpace(), TWO_OBJECTIVES, 0, SearchSettings(trials=20))
    policy.mirror_to(db)
    run_policy(policy, 12, objectives=TWO_OBJECTIVES)
    mirrored = optuna.load_study(study_name="dynas", storage=f"sqlite:///{db}")
    assert len(mirrored.trials) == 12 and mirrored.directions == policy.study.directions
    assert [t.params for t in mirrored.trials] == [t.params for t in policy.study.trials
                                                    if not t.user_attrs.get(REPEAT_ATTR)]
    state = policy.state_dict()
    run_policy(policy, 3, objectives=TWO_OBJECTIVES)           # 15 in the mirror, 12 in the state
    restored = make_policy("tpe", ToySpace(), TWO_OBJECTIVES, 0, SearchSettings(trials=20))
    restored.mirror_to(db)
    restored.load_state_dict(state)
    assert len(optuna.load_study(study_name="dynas", storage=f"sqlite:///{db}").trials) == 12
