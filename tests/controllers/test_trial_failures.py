"""A candidate that crashes, runs out of memory or diverges is a failed trial, not a
failed search: it is recorded with its reason, the policy is told, the search goes
on, and the report lists it. Runs the real ``trainers.fit`` through the local runner;
each attention kind is made to fail a different way by patching its ``forward``.
"""
from __future__ import annotations

import json

import pytest
import torch

from dynas.controllers.run.in_process import fit_evaluator, run_in_process, run_local
from dynas.controllers.policies import make_policy
from dynas.controllers.records import iter_records
from dynas.search_space.experiment import parse_experiment
from dynas.trainers.modules.attention import FullAttention, SlidingWindowAttention
from dynas.trainers.modules.linear_attention import LinearAttention

EXPERIMENT = {
    "space": {"layers": [1], "d_model": [16], "layer": {
        "attention": [{"kind": "full", "heads": 2}, {"kind": "sliding_window", "heads": 2, "window": [2]},
                      {"kind": "linear", "heads": 2}, {"kind": "dynamic_span", "heads": 2, "max_span": [4]}],
        "ffn": [{"kind": "dense", "expansion": [2]}]}},
    "task": {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}},
    "training": {"steps_per_experience": 5, "batch_size": 32, "eval_batch_size": 512, "device": "cpu"},
    "search": {"strategy": "random", "trials": 4, "concurrent": 1},
}
# attention kind -> what its forward does, and what the record's reason must say
FAILURES = {
    "full": (RuntimeError("boom: a bug in this candidate"), "RuntimeError: boom"),
    "sliding_window": (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                       "out of memory"),
    "linear": ("nan", "non-finite loss"),
}


def break_forward(monkeypatch, cls, how):
    original = cls.forward

    def forward(self, x):
        if how == "nan":                                   # diverges: NaN activations
            y, aux = original(self, x)
            return y * float("nan"), aux
        raise how
    monkeypatch.setattr(cls, "forward", forward)


class TellLog:
    """The real policy, with a log of what it was told."""

    def __init__(self, policy):
        self._policy, self.told = policy, []

    def __getattr__(self, name):
        return getattr(self._policy, name)

    def tell(self, proposal_id, outcome):
        self.told.append((proposal_id, outcome))
        self._policy.tell(proposal_id, outcome)


@pytest.fixture
def broken(monkeypatch):
    for cls, kind in ((FullAttention, "full"), (SlidingWindowAttention, "sliding_window"),
                      (LinearAttention, "linear")):
        break_forward(monkeypatch, cls, FAILURES[kind][0])


@pytest.mark.parametrize("strategy", ["random", "ppo"])
def test_failures_are_recorded_told_and_reported(broken, tmp_path, strategy):
    exp = parse_experiment(EXPERIMENT)
    policy = TellLog(make_policy(strategy, exp.space, exp.search.objectives, 0, exp.search))
    run_dir = tmp_path / "run"
    run_local(exp.space, fit_evaluator(exp), policy, exp.search.objectives, run_dir, trials=4)

    records = list(iter_records(run_dir))
    trained = {r.arch["layers"][0]["attention"]["kind"]: r for r in records if r.cached_from is None}
    assert set(trained) == {"full", "sliding_window", "linear", "dynamic_span"}   # the search went on
    for kind, (_, reason) in FAILURES.items():
        r = trained[kind]
        assert r.state == "failed" and reason in r.reason and r.objectives is None, (kind, r.reason)
        assert r.metrics == {}
    ok = trained["dynamic_span"]
    assert ok.state == "complete" and len(ok.acc_matrix) == 2 and 0 <= ok.metrics["final_avg_accuracy"] <= 1
    # the policy heard every outcome, once, failures as failed with the reason
    told = dict(policy.told)
    assert len(told) == len(policy.told) == len(records)
    for r in records:
        assert told[r.proposal_id].state == r.state and told[r.proposal_id].reason == r.reason
    # and its saved state is the one after the last tell
    assert json.loads((run_dir / "policy_state.json").read_text()) == json.loads(
        json.dumps(policy.state_dict()))

    from dynas.analysis.report import write_report

    text = write_report([run_dir]).read_text()
    section = text.split("## Failed and pruned trials", 1)[1].split("## ", 1)[0]
    for _, reason in FAILURES.values():
        assert reason in section
    assert section.count("| failed |") == 3


def test_a_cpu_allocator_failure_counts_as_out_of_memory(monkeypatch, tmp_path):
    err = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: "
                       "can't allocate memory: you tried to allocate 1099511627776 bytes.")
    break_forward(monkeypatch, FullAttention, err)
    exp = parse_experiment({**EXPERIMENT, "space": {**EXPERIMENT["space"], "layer": {
        "attention": [{"kind": "full", "heads": 2}], "ffn": [{"kind": "dense", "expansion": [2]}]}}})
    result = run_in_process(fit_evaluator(exp), exp.space.sample(None))
    assert result.state == "failed" and result.reason.startswith("out of memory: ") and result.metrics == {}


# --- the same on Ray Tune: failures cross the process boundary as exceptions -------------------
RAY_REASONS = {kind: reason for kind, (_, reason) in FAILURES.items()}   # one wording everywhere


def faulty_trial(config, spec):
    """``run_trial`` in a Tune worker whose attention classes are broken as above (the
    patch lives in the worker process, which this test's private Ray owns)."""
    from dynas.controllers.tune.trainable import run_trial

    for cls, kind in ((FullAttention, "full"), (SlidingWindowAttention, "sliding_window"),
                      (LinearAttention, "linear")):
        if not getattr(cls.forward, "_broken", False):
            break_forward(_Setattr(), cls, FAILURES[kind][0])
            cls.forward._broken = True
    return run_trial(config, spec)


class _Setattr:
    """``monkeypatch.setattr`` for a worker process that is thrown away afterwards."""

    @staticmethod
    def setattr(target, name, value):
        setattr(target, name, value)


@pytest.fixture
def private_ray():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    import sys

    from ray import cloudpickle

    # this module is not importable by name in the workers: ship its functions by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.mark.slow
def test_failures_on_ray_are_recorded_told_and_the_search_goes_on(private_ray, tmp_path):
    from dynas.controllers.tune.executor import tune_search
    from dynas.controllers.tune.trainable import TrialSpec
    from dynas.controllers.driver import SearchDriver
    from dynas.controllers.tune.searcher import PolicySearcher

    exp = parse_experiment(EXPERIMENT)
    policy = TellLog(make_policy("random", exp.space, exp.search.objectives, 0, exp.search))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    searcher = PolicySearcher(SearchDriver(policy, run_dir, budget=4))
    tune_search(searcher, faulty_trial, run_dir=run_dir, name="search", concurrent=2,
                resources={"cpu": 1}, max_failures=0, verbose=0, spec=TrialSpec(exp.task, exp.training))

    records = list(iter_records(run_dir))
    trained = {r.arch["layers"][0]["attention"]["kind"]: r for r in records if r.cached_from is None}
    assert set(trained) == {"full", "sliding_window", "linear", "dynamic_span"}
    for kind, reason in RAY_REASONS.items():
        r = trained[kind]
        assert r.state == "failed" and r.reason.startswith(reason) and r.objectives is None, (kind, r.reason)
    ok = trained["dynamic_span"]
    assert ok.state == "complete" and ok.experiences_done == 2 and ok.trial_id
    told = dict(policy.told)
    assert len(told) == len(records)
    assert all(told[r.proposal_id].state == r.state and told[r.proposal_id].reason == r.reason for r in records)
