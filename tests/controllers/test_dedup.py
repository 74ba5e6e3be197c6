"""The duplicate cache: no architecture is trained twice, and policies still hear of it."""
from __future__ import annotations

import pytest

from dynas.controllers.dedup import DedupCache, next_new_proposal
from dynas.controllers.policies.random import RandomPolicy
from dynas.controllers.policy import Outcome, Proposal
from dynas.controllers.records import TrialRecord
from dynas.search_space.errors import InfeasibleError
from dynas.search_space.plain import parse_decision_space
from dynas.search_space.suggest import FixedSuggester
from tests.controllers.conftest import ONE_OBJECTIVE

TINY = parse_decision_space({"decisions": {"a": [1, 2], "b": ["x", "y"]}})   # 4 candidates


class ScriptedPolicy:
    """Proposes a fixed sequence of assignments and keeps what it is told."""

    name = "scripted"

    def __init__(self, script):
        self.space, self.objectives = TINY, ONE_OBJECTIVE
        self.script, self.told, self.next_id = list(script), [], 0

    def ask(self) -> Proposal:
        params = self.script.pop(0)
        self.next_id += 1
        return Proposal(self.next_id - 1, TINY.sample(FixedSuggester(params)), params)

    def tell(self, proposal_id, outcome):
        self.told.append((proposal_id, outcome))

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


A, B = {"a": 1, "b": "x"}, {"a": 2, "b": "y"}


def test_duplicates_of_finished_trials_are_told_the_cached_outcome():
    policy, cache = ScriptedPolicy([A, A, A, B]), DedupCache()
    first, cached, asks = next_new_proposal(policy, cache)
    assert first.id == 0 and cached == [] and asks == 1
    outcome = Outcome("complete", (0.7,))
    assert cache.finish(policy, first, outcome) == []
    seen = []
    second, cached, asks = next_new_proposal(policy, cache, on_cached=seen.append)
    assert second.params == B and second.id == 3 and asks == 3
    assert [(c.proposal.id, c.cached_from, c.outcome) for c in cached] == [(1, 0, outcome), (2, 0, outcome)]
    assert seen == cached
    assert policy.told == [(1, outcome), (2, outcome)]


def test_duplicates_of_running_trials_wait_for_the_original():
    policy, cache = ScriptedPolicy([A, A, B]), DedupCache()
    first, _, _ = next_new_proposal(policy, cache)
    second, cached, asks = next_new_proposal(policy, cache)        # A is still training
    assert second.params == B and cached == [] and asks == 2 and policy.told == []
    failed = Outcome("failed", reason="oom")
    waiting = cache.finish(policy, first, failed)
    assert [(w.proposal.id, w.cached_from, w.outcome) for w in waiting] == [(1, 0, failed)]
    assert policy.told == [(1, failed)]


def test_an_exhausted_space_is_infeasible_after_max_tries():
    policy, cache = RandomPolicy(TINY, ONE_OBJECTIVE, seed=0), DedupCache()
    while len(cache) < 4:
        proposal, _, _ = next_new_proposal(policy, cache)
        cache.finish(policy, proposal, Outcome("complete", (0.5,)))
        policy.tell(proposal.id, Outcome("complete", (0.5,)))
    with pytest.raises(InfeasibleError, match="the space is exhausted: all 4 distinct candidates were explored"):
        next_new_proposal(policy, cache, max_tries=7)
    assert len(policy.told) == policy.state_dict()["next_id"]   # every duplicate was told


def test_cache_from_records_keeps_trained_results_only():
    def record(pid, arch_id, state, objectives, cached_from=None):
        return TrialRecord(pid, arch_id, {}, {}, state, objectives=objectives, cached_from=cached_from,
                           reason="r" if state != "complete" else None)

    cache = DedupCache.from_records([
        record(0, "aa", "complete", [0.9]),
        record(1, "bb", "failed", None),
        record(2, "aa", "complete", [0.9], cached_from=0),
        record(3, "cc", "complete", None),                    # malformed: nothing to reuse
    ])
    assert cache.lookup("aa") == (0, Outcome("complete", (0.9,)))
    assert cache.lookup("bb") == (1, Outcome("failed", None, "r"))
    assert "cc" not in cache and len(cache) == 2


# --- identity: two architectures that train to the same model are one entry -------------
def _one_token(head: str):
    from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig

    return ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),),
                      tokens="whole", head=head)


class ArchScript(ScriptedPolicy):
    def ask(self) -> Proposal:
        self.next_id += 1
        return Proposal(self.next_id - 1, self.script.pop(0))


def test_with_a_function_identity_the_same_model_is_trained_once():
    """A flatten head over one token is the mean head (tests/trainers/test_canonical.py):
    under ``function_id`` the second is a cached duplicate; by arch_id it would train."""
    from dynas.search_space.canonical import function_id

    flatten, mean = _one_token("flatten"), _one_token("mean")
    assert flatten.arch_id != mean.arch_id
    policy, cache = ArchScript([flatten, mean, mean]), DedupCache(identity=function_id)
    first, _, _ = next_new_proposal(policy, cache)
    outcome = Outcome("complete", (0.5,))
    cache.finish(policy, first, outcome)
    with pytest.raises(InfeasibleError):
        next_new_proposal(policy, cache, max_tries=2)
    assert policy.told == [(1, outcome), (2, outcome)]
    assert cache.measured(mean.arch_id) is cache.measured(flatten.arch_id)
    by_arch_id = DedupCache()
    next_new_proposal(ArchScript([flatten]), by_arch_id)
    assert mean.arch_id not in by_arch_id                                 # the default is unchanged


def test_records_on_resume_are_keyed_by_the_identity_too():
    from dynas.search_space.canonical import function_id

    flatten, mean = _one_token("flatten"), _one_token("mean")
    trained = TrialRecord(0, flatten.arch_id, flatten.to_dict(), {}, "complete", objectives=[0.5])
    plain = TrialRecord(1, "dd", {"a": 1, "b": "x"}, {}, "complete", objectives=[0.1])
    cache = DedupCache.from_records([trained, plain], identity=function_id)
    assert cache.lookup(cache.key(mean)) == (0, Outcome("complete", (0.5,)))
    assert cache.lookup("dd") == (1, Outcome("complete", (0.1,)))        # a plain candidate: its arch_id


@pytest.mark.slow
def test_a_search_trains_one_of_two_architectures_that_are_one_model(tmp_path):
    """``head: [mean, flatten]`` over one token: two arch_ids, one model. The search
    (through ``prepare.build_driver``) trains one and answers the other from the cache."""
    import json

    from dynas.controllers.records import iter_records, trained_count
    from dynas.controllers.runs import run_local_experiment
    from dynas.search_space.experiment import load_experiment

    (tmp_path / "exp.yaml").write_text(json.dumps({
        "space": {"layers": 1, "d_model": 16, "tokens": "whole", "head": ["mean", "flatten"],
                  "layer": {"attention": {"kind": "full", "heads": 2}, "ffn": {"kind": "dense", "expansion": 1}}},
        "task": {"name": "split_digits"},
        "training": {"steps_per_experience": 2, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": "random", "trials": 2}}))
    run_local_experiment(load_experiment(tmp_path / "exp.yaml"), tmp_path / "run", trials=2)
    records = list(iter_records(tmp_path / "run"))
    assert trained_count(records) == 1
    (trained,) = [r for r in records if r.cached_from is None]
    others = {r.arch_id for r in records if r.cached_from == trained.proposal_id} - {trained.arch_id}
    assert len(others) == 1                                   # the other head, answered from the cache
    assert {r.arch.get("head", "mean") for r in records} == {"mean", "flatten"}
