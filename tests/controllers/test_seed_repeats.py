"""Seed repeats: ``search.remeasure`` tells the policy a mean; ``search.confirm`` and
``dynas confirm`` re-train the best candidates, told to no one. (Through Ray:
``test_search_e2e``.)"""
from __future__ import annotations

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.run.confirm import best_candidates, confirmations
from dynas.controllers.run.in_process import run_local
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.records import TrialRecord, iter_records
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.suggest import RandomSuggester
from tests.controllers.conftest import ONE_OBJECTIVE, TWO_OBJECTIVES
from tests.controllers.test_dedup import TINY, A, B, ScriptedPolicy


def seeded(arch, seed=None):
    """Accuracy that moves with the training seed (None: the experiment's, 0)."""
    acc = 0.5 + 0.1 * (seed or 0) + 0.01 * arch.to_dict()["a"]
    return "complete", {names.FINAL_AVG_ACCURACY: acc}, {"experiences_done": 1}


@pytest.mark.parametrize("remeasure, told", [
    (0, [0.51, 0.51, 0.51, 0.52]),                     # today's cache: the first draw, frozen
    (2, [0.51, 0.56, 0.61, 0.61, 0.52]),               # seeds 0, 1, 2, then the mean is cached
])
def test_remeasure_tells_the_mean_of_fresh_seeds(tmp_path, remeasure, told):
    script = [A, A, A] + [A] * (remeasure > 0) + [B]
    policy = ScriptedPolicy(script)
    records = run_local(TINY, seeded, policy, ONE_OBJECTIVE, tmp_path, trials=2, remeasure=remeasure)
    assert [round(o.values[0], 6) for _, o in policy.told] == told
    repeats = [r for r in records if r.repeat_of is not None]
    assert [(r.repeat_of, r.train_seed) for r in repeats] == [(0, 1), (0, 2)][:remeasure]
    for r in repeats:   # the record keeps its own measurement and the mean it told
        assert r.metrics[names.FINAL_AVG_ACCURACY] == pytest.approx(0.51 + 0.1 * r.train_seed)
        assert not r.is_confirmation
    assert len({r.arch_id for r in records if r.repeat_of is None and r.cached_from is None}) == 2


def test_a_resumed_run_continues_the_remeasure_count(tmp_path):
    run_local(TINY, seeded, ScriptedPolicy([A, A, B]), ONE_OBJECTIVE, tmp_path, trials=2, remeasure=2)
    policy = ScriptedPolicy([A, A, {"a": 1, "b": "y"}])
    policy.next_id = 10
    run_local(TINY, seeded, policy, ONE_OBJECTIVE, tmp_path, trials=3, remeasure=2, resume=True)
    # A had seeds 0 and 1: one more remeasure (seed 2), then the mean of three is cached
    assert [round(o.values[0], 6) for _, o in policy.told][:2] == [0.61, 0.61]
    seeds = [r.train_seed for r in iter_records(tmp_path) if r.repeat_of == 0]
    assert seeds == [1, 2]


SPACE = {"layers": [1], "d_model": [16], "layer": {
    "attention": [{"kind": "full", "heads": [2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}}
ARCH = parse_experiment({"space": SPACE}).space.sample(RandomSuggester(0))


def record(pid, acc, flops, state="complete", **kw):
    return TrialRecord(pid, f"arch{pid}", ARCH.to_dict(), {}, state,
                       TrialMetrics(values={names.FINAL_AVG_ACCURACY: acc, names.FLOPS: flops}),
                       objectives=[acc, flops] if state == "complete" else None, **kw)


def test_best_candidates_are_front_first_and_repeats_are_topped_up():
    records = [record(0, 0.5, 1.0), record(1, 0.9, 3.0), record(2, 0.4, 2.0), record(3, 0.7, 2.0),
               record(4, 0.95, 9.0, state="failed")]
    best = best_candidates(records, TWO_OBJECTIVES, top=3)
    assert [r.proposal_id for r in best] == [1, 3, 0]      # front (by accuracy), then rank 1
    records.append(record(1, 0.88, 3.0, repeat_of=1, train_seed=1))   # one repeat done already
    todo = confirmations(records, best[:1], 3, 0)
    assert [(p.id, p.repeat_of, p.seed) for p in todo] == [(1, 1, 2), (1, 1, 3)]
    assert best_candidates(records, TWO_OBJECTIVES, top=9)[0].proposal_id == 1, "repeats rank nothing"


def test_confirm_settings_are_checked():
    base = {"space": SPACE}
    with pytest.raises(ConfigError, match=r"search\.confirm: give both top and seeds"):
        parse_experiment({**base, "search": {"confirm": {"top": 3}}})
    with pytest.raises(ConfigError, match=r"search\.remeasure: must be >= 0"):
        parse_experiment({**base, "search": {"remeasure": -1}})


@pytest.mark.slow
def test_search_confirm_at_the_end_of_a_local_search(tmp_path):
    experiment = parse_experiment({
        "space": SPACE,
        "task": {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}},
        "training": {"steps_per_experience": 5, "batch_size": 16, "device": "cpu", "seed": 3},
        "search": {"strategy": "random", "trials": 2, "seed": 0, "confirm": {"top": 1, "seeds": 2}},
    })
    records = run_local_experiment(experiment, tmp_path)
    repeats = [r for r in records if r.repeat_of is not None]
    firsts = [r for r in records if r.repeat_of is None and r.cached_from is None]
    best = max(firsts, key=lambda r: (r.objectives[0], -r.objectives[1]))
    assert [(r.repeat_of, r.train_seed) for r in repeats] == [(best.proposal_id, 4), (best.proposal_id, 5)]
    assert all(r.is_confirmation and r.state == "complete" for r in repeats)
    assert len({tuple(map(tuple, r.acc_matrix)) for r in repeats + [best]}) == 3
