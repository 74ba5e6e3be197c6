"""Tabular evaluators: NAS-Bench-Graph loaded without running code, looked up by the
benchmark's own isomorphism-aware hash, and searchable as a plain-space evaluator."""
from __future__ import annotations

import os
import pickle
import struct

import numpy as np
import pytest

from dynas.controllers.runs import run_local_experiment
from dynas.search_space.evaluators import evaluate, get_evaluator
from dynas.search_space.experiment import load_experiment
from dynas.trainers.tabular import nasbench_graph as nbg
from dynas.trainers.tabular.safe_pickle import UnsafePickleError, loads_plain

from tests.test_examples import EXAMPLES

needs_bench = pytest.mark.skipif(not nbg.available(), reason="nas-bench-graph is not installed")


class Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_plain_data_and_numpy_float_scalars_load():
    data = {0: {"valid_perf": 0.5, "para": np.float64(0.25), "n": np.int64(-3), "t": (1, [2.0, "x"])}}
    assert loads_plain(pickle.dumps(data, protocol=3)) == {0: {"valid_perf": 0.5, "para": 0.25, "n": -3,
                                                             "t": (1, [2.0, "x"])}}
    assert type(loads_plain(pickle.dumps(np.float64(0.25), protocol=3))) is float


@pytest.mark.parametrize("payload", [Boom(), np.zeros(3), {1, 2}.__class__, struct.Struct])
def test_any_other_global_is_refused_and_never_called(payload):
    with pytest.raises(UnsafePickleError, match="refusing to load global"):
        loads_plain(pickle.dumps(payload))


@needs_bench
def test_the_table_loads_with_its_checksum_and_matches_the_paper_size():
    table = nbg.load_table("arxiv")
    assert len(table) == 26206
    entry = table[nbg.canonical_hash("0123", ("gcn", "gat", "sage", "fc"))]
    assert set(entry) == set(nbg.METRICS) and 0.3 < entry[nbg.VAL_ACCURACY] < 0.8


@needs_bench
def test_isomorphic_assignments_share_an_entry_and_all_skip_fails():
    # a chain whose first node is a skip is the same network as the ops moved up one node
    assert nbg.canonical_hash("0000", ("gcn", "gat", "sage", "fc")) == nbg.canonical_hash(
        "0000", ("fc", "sage", "gat", "gcn"))
    assert get_evaluator("nasbench_graph").metrics == nbg.METRICS
    with pytest.raises(ValueError, match="only skip layers"):
        evaluate("nasbench_graph", {"link": "0123", **{op: "skip" for op in nbg.OP_DECISIONS}})


@needs_bench
def test_a_tampered_table_is_refused_by_its_checksum(tmp_path, monkeypatch):
    fake = tmp_path / "light" / "arxiv.bench"
    fake.parent.mkdir()
    fake.write_bytes(pickle.dumps({0: {"valid_perf": 1.0, "perf": 1.0, "latency": 0.0, "para": 0.0}}))
    monkeypatch.setattr(nbg, "bench_path", lambda dataset: fake)
    nbg.load_table.cache_clear()
    try:
        with pytest.raises(Exception, match="is not that of nas-bench-graph 1.4.0"):
            nbg.load_table("arxiv")
    finally:
        nbg.load_table.cache_clear()


@needs_bench
def test_the_example_searches_through_the_driver(tmp_path):
    experiment = load_experiment(next(p for p in EXAMPLES if p.stem == "nasbench_graph"))
    records = run_local_experiment(experiment, tmp_path / "run", strategy="ppo", trials=12)
    trained = [r for r in records if r.cached_from is None]
    assert len(trained) == 12 and all(set(nbg.METRICS) <= set(r.metrics) for r in trained if r.state == "complete")
    assert len({r.arch_id for r in trained}) == 12
