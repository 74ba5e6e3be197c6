"""The Policy contract, for every registered policy, on every kind of space.

Each test states one clause of ``controllers.policy``'s lifecycle docstring.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dynas.controllers.objectives import objective_values
from dynas.controllers.policies import make_policy
from dynas.controllers.policies.optuna_policies import OptunaPolicy, population_for, startup_trials_for
from dynas.controllers.policies.ppo import PPOPolicy
from dynas.controllers.policy import Outcome, Policy
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import load_experiment
from dynas.search_space.plain import parse_decision_space
from dynas.controllers.policies import PPOSettings
from dynas.search_space.settings import SearchSettings
from dynas.search_space.suggest import FixedSuggester

from tests.controllers.conftest import ONE_OBJECTIVE, TWO_OBJECTIVES, ToySpace, toy_metrics

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OBJECTIVES = {"one_objective": ONE_OBJECTIVE, "two_objectives": TWO_OBJECTIVES}


def hashed_metrics(arch) -> dict[str, float]:
    """Any candidate's deterministic pseudo-metrics, from its content hash."""
    h = int(arch.arch_id, 16)
    return {names.FINAL_AVG_ACCURACY: (h % 1000) / 1000, names.FLOPS: 1e6 * (1 + (h >> 10) % 97)}


def plain_space():
    return parse_decision_space({"decisions": {
        "optimizer": ["adam", "sgd", "adamw"], "width": {"low": 16, "high": 64, "step": 16},
        "depth": {"low": 1, "high": 3}, "dropout": [0.0, 0.1], "seed": 0}})


SPACES = {
    "toy": ToySpace,
    "plain": plain_space,
    "arch": lambda: load_experiment(EXAMPLES / "quickstart.yaml").space,
}


def build(name, space, objectives, seed=0, **ppo):
    settings = SearchSettings(trials=30, policy_settings={"ppo": PPOSettings(**ppo)}) if ppo else SearchSettings(trials=30)
    return make_policy(name, space, objectives, seed, settings)


def outcome_for(proposal, objectives, i: int, metrics=hashed_metrics) -> Outcome:
    """Mostly complete; every 5th failed, every 7th pruned (with values on odd ones)."""
    values = objective_values(metrics(proposal.arch), objectives)
    if i % 5 == 4:
        return Outcome("failed", reason="synthetic failure")
    if i % 7 == 6:
        return Outcome("pruned", values if i % 2 else None, reason="asha")
    return Outcome("complete", values)


def drive(policy, n: int, objectives, start: int = 0) -> list[dict]:
    """Ask and tell ``n`` times, sequentially; the params of every proposal."""
    out = []
    for i in range(start, start + n):
        p = policy.ask()
        out.append(p.params)
        policy.tell(p.id, outcome_for(p, objectives, i))
    return out


# The strategies this suite runs; tests/test_registries.py checks they are exactly the
# registered ones, so a strategy registered without joining the suite fails there.
STRATEGIES = ("random", "tpe", "nsga2", "ppo")


@pytest.fixture(params=STRATEGIES)
def policy_name(request):
    return request.param


@pytest.fixture(params=list(OBJECTIVES))
def objectives(request):
    return OBJECTIVES[request.param]


@pytest.fixture(params=list(SPACES))
def space(request):
    return SPACES[request.param]()


# --- registry ----------------------------------------------------------------------------
def test_unknown_strategy_is_a_config_error_listing_the_known_ones():
    with pytest.raises(ConfigError) as err:
        make_policy("grid", ToySpace(), TWO_OBJECTIVES, 0)
    assert err.value.key == "search.strategy"
    assert "unknown strategy 'grid'; known strategies: random, tpe, nsga2, ppo" in str(err.value)


def test_budget_sized_optuna_defaults():
    assert [startup_trials_for(t) for t in (12, 60, 300)] == [4, 10, 10]
    assert [population_for(t) for t in (12, 60, 300)] == [4, 12, 20]


# --- lifecycle ---------------------------------------------------------------------------
def test_policy_satisfies_the_protocol(policy_name, objectives, space):
    policy = build(policy_name, space, objectives)
    assert isinstance(policy, Policy)
    assert policy.name == policy_name


def test_concurrent_asks_get_unique_ids_and_out_of_order_tells(policy_name, objectives, space):
    policy = build(policy_name, space, objectives)
    proposals = [policy.ask() for _ in range(5)]
    assert len({p.id for p in proposals}) == 5
    for i, p in enumerate(reversed(proposals)):
        policy.tell(p.id, outcome_for(p, objectives, i))
    more = [policy.ask() for _ in range(3)]
    assert not {p.id for p in more} & {p.id for p in proposals}


def test_params_replay_to_the_same_candidate(policy_name, objectives, space):
    policy = build(policy_name, space, objectives)
    for i in range(8):
        p = policy.ask()
        assert space.sample(FixedSuggester(p.params)).arch_id == p.arch.arch_id
        policy.tell(p.id, outcome_for(p, objectives, i))


def test_telling_an_unknown_or_told_id_is_an_error(policy_name, objectives):
    policy = build(policy_name, ToySpace(), objectives)
    p = policy.ask()
    with pytest.raises(KeyError):
        policy.tell(p.id + 100, Outcome("failed"))
    policy.tell(p.id, Outcome("failed"))
    with pytest.raises(KeyError):
        policy.tell(p.id, Outcome("failed"))


def test_outcome_with_the_wrong_number_of_values_is_refused(policy_name, objectives):
    policy = build(policy_name, ToySpace(), objectives)
    p = policy.ask()
    with pytest.raises(ValueError):
        policy.tell(p.id, Outcome("complete", (0.5,) * (len(objectives) + 1)))


# --- determinism and state -----------------------------------------------------------------
def test_same_seed_same_proposals(policy_name, objectives, space):
    a, b = (build(policy_name, space, objectives, seed=3) for _ in range(2))
    assert drive(a, 16, objectives) == drive(b, 16, objectives)


def test_different_seeds_differ(policy_name, objectives):
    a, b = (build(policy_name, ToySpace(), objectives, seed=s) for s in (1, 2))
    assert drive(a, 10, objectives) != drive(b, 10, objectives)


def test_state_round_trip_continues_identically(policy_name, objectives, space):
    original = build(policy_name, space, objectives, seed=5)
    drive(original, 14, objectives)
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = build(policy_name, space, objectives, seed=5)
    restored.load_state_dict(state)
    assert drive(restored, 8, objectives, start=14) == drive(original, 8, objectives, start=14)


def test_restored_policy_forgets_outstanding_proposals(policy_name, objectives):
    policy = build(policy_name, ToySpace(), objectives)
    drive(policy, 3, objectives)
    pending = policy.ask()
    restored = build(policy_name, ToySpace(), objectives)
    restored.load_state_dict(policy.state_dict())
    with pytest.raises(KeyError):
        restored.tell(pending.id, Outcome("failed"))
    assert restored.ask().id == pending.id + 1


def test_a_state_saved_mid_flight_restores_to_itself(policy_name, objectives):
    """What a resumed search relies on after a crash: a state saved while a proposal
    was outstanding (a trial killed mid-flight) is exactly what the restored policy saves."""
    policy = build(policy_name, ToySpace(), objectives)
    drive(policy, 3, objectives)
    policy.ask()                                      # never told: the killed trial
    drive(policy, 2, objectives, start=4)
    state = json.loads(json.dumps(policy.state_dict(), allow_nan=False))
    restored = build(policy_name, ToySpace(), objectives)
    restored.load_state_dict(state)
    assert json.loads(json.dumps(restored.state_dict(), allow_nan=False)) == state


def test_state_of_another_policy_is_refused(policy_name):
    other = "random" if policy_name != "random" else "tpe"
    state = build(other, ToySpace(), TWO_OBJECTIVES).state_dict()
    with pytest.raises(ValueError, match="saved by policy"):
        build(policy_name, ToySpace(), TWO_OBJECTIVES).load_state_dict(state)


# --- failures ------------------------------------------------------------------------------
def test_survives_only_failures_and_prunes(policy_name, objectives, space):
    policy = build(policy_name, space, objectives)
    for i in range(12):
        p = policy.ask()
        values = objective_values(hashed_metrics(p.arch), objectives)
        policy.tell(p.id, Outcome("pruned", values, "asha") if i % 2 else Outcome("failed", reason="oom"))
    nan = policy.ask()
    policy.tell(nan.id, Outcome("complete", (math.nan,) * len(objectives)))
    assert policy.ask().id == nan.id + 1
    json.dumps(policy.state_dict(), allow_nan=False)


def test_optuna_policies_map_states_and_never_score_failures(objectives):
    for name in ("tpe", "nsga2"):
        policy = build(name, ToySpace(), objectives)
        assert isinstance(policy, OptunaPolicy)
        told = ["complete", "failed", "pruned", "complete"]
        for state in told:
            p = policy.ask()
            values = objective_values(toy_metrics(p.arch), objectives)
            policy.tell(p.id, Outcome(state, values if state != "failed" else None, "why"))
        bad = policy.ask()
        policy.tell(bad.id, Outcome("complete", (math.inf,) * len(objectives)))
        states = [t.state.name for t in policy.study.trials]
        assert states == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE", "FAIL"]
        assert policy.study.trials[1].user_attrs["reason"] == "why"
        assert all(t.state.name == "COMPLETE" for t in policy.study.best_trials)
        # Optuna keeps a pruned trial's value only for one objective.
        assert (policy.study.trials[2].values is not None) == (len(objectives) == 1)


def test_ppo_gives_failures_the_lowest_reward_seen():
    policy = build("ppo", ToySpace(), TWO_OBJECTIVES)
    rewards = []
    for state in ("complete", "complete", "failed", "pruned"):
        p = policy.ask()
        values = objective_values(toy_metrics(p.arch), TWO_OBJECTIVES)
        policy.tell(p.id, Outcome(state, values if state != "failed" else None))
        rewards.append(policy.state_dict()["history"][-1]["reward"])
    assert rewards[2] == rewards[3] == min(rewards[:2])


# --- PPO specifics -------------------------------------------------------------------------
def mlp_wins(arch) -> dict[str, float]:
    """toy_metrics, plus 0.3 accuracy for kind=mlp at no cost: it dominates the others."""
    metrics = toy_metrics(arch)
    metrics[names.FINAL_AVG_ACCURACY] += 0.3 * (arch.to_dict()["kind"] == "mlp")
    return metrics


@pytest.mark.parametrize("reward", ["scalar", "hypervolume", "rank", "chebyshev"])
def test_ppo_learns_the_clearly_best_option(reward):
    """(Measured over seeds 0-9: P(mlp) after 60 tells is 0.88-0.96 scalar, 0.83-0.93 hv,
    0.90-0.97 rank, 0.77-0.95 chebyshev.)"""
    policy = build("ppo", ToySpace(), TWO_OBJECTIVES, seed=0, reward=reward)
    assert isinstance(policy, PPOPolicy)
    assert policy.probabilities()["kind"] == pytest.approx([1 / 3] * 3)
    for _ in range(60):
        p = policy.ask()
        policy.tell(p.id, Outcome("complete", objective_values(mlp_wins(p.arch), TWO_OBJECTIVES)))
    assert policy.updates == 15
    assert policy.probabilities()["kind"][1] > 0.75, policy.probabilities()


def test_ppo_scalar_reward_trades_accuracy_for_flops():
    """attn: +0.15 accuracy at 2x FLOPs. Worth it at penalty 0.01/doubling, not at 0.5."""
    chosen = {}
    for penalty in (0.01, 0.5):
        policy = build("ppo", ToySpace(), TWO_OBJECTIVES, seed=0, reward="scalar", flops_penalty=penalty)
        for _ in range(60):
            p = policy.ask()
            policy.tell(p.id, Outcome("complete", objective_values(toy_metrics(p.arch), TWO_OBJECTIVES)))
        chosen[penalty] = policy.probabilities()["kind"][2]
    assert chosen[0.01] > 0.6 > 0.2 > chosen[0.5], chosen


def test_ppo_masks_decisions_it_never_asked():
    """Only asked decisions train: kernel is asked only for conv, which PPO abandons."""
    policy = build("ppo", ToySpace(), ONE_OBJECTIVE, seed=0, entropy_bonus=0.0)
    for _ in range(40):
        p = policy.ask()
        policy.tell(p.id, Outcome("complete", objective_values(toy_metrics(p.arch), ONE_OBJECTIVE)))
    steps = [s for b in policy.state_dict()["buffer"] for s in b["steps"]]
    assert all(len(allowed) == len(ToySpace().decisions()[i].options) for i, _, allowed in steps)
    assert max(policy.probabilities()["kind"]) > 0.5


def test_ppo_surrogate_screens_candidates_deterministically():
    def run():
        policy = build("ppo", ToySpace(), TWO_OBJECTIVES, seed=1, surrogate=True, surrogate_screen=6)
        return drive(policy, 24, TWO_OBJECTIVES), policy

    (first, policy), (second, _) = run(), run()
    assert first == second
    assert policy._surrogate_ready()


def test_ppo_refuses_a_space_without_decisions():
    class Empty(ToySpace):
        def decisions(self):
            return []

    with pytest.raises(ValueError, match="declares its decisions"):
        build("ppo", Empty(), TWO_OBJECTIVES)


@pytest.mark.parametrize("key, value", [("lr", 0.0), ("batch", 0), ("baseline_decay", 1.0), ("warmup", -1)])
def test_ppo_rejects_bad_settings_with_their_key(key, value):
    with pytest.raises(ConfigError, match=f"search.ppo.{key}"):
        build("ppo", ToySpace(), TWO_OBJECTIVES, **{key: value})


def test_optuna_policy_fails_the_trial_when_sampling_raises():
    class Broken(ToySpace):
        def sample(self, suggester):
            suggester.suggest_categorical("kind", ["conv", "mlp", "attn"])
            raise RuntimeError("space bug")

    policy = build("tpe", Broken(), TWO_OBJECTIVES)
    with pytest.raises(RuntimeError, match="space bug"):
        policy.ask()
    assert [t.state.name for t in policy.study.trials] == ["FAIL"]
