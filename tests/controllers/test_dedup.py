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
