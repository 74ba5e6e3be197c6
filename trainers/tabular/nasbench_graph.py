"""NAS-Bench-Graph (Qin et al., NeurIPS 2022 Datasets and Benchmarks) as an evaluator.

26,206 distinct GNN architectures, each trained on nine graph datasets; the PyPI package
``nas-bench-graph`` (pinned: 1.4.0) ships their ``light/<dataset>.bench`` tables with
validation and test accuracy, inference latency (s) and parameters (millions).
``proteins`` (ogbn-proteins) holds 2,021 of the architectures; the others are told as
failed trials there, like the all-skip ones below.

An architecture is a DAG of four computing nodes: ``link`` says which earlier node each
one reads (one of the benchmark's nine canonical link patterns, written as digits:
``"0123"`` is a chain) and ``op1..op4`` the GNN layer each computes. As a plain space::

    space:
      decisions:
        link: ["0000", "0001", "0011", "0012", "0013", "0111", "0112", "0122", "0123"]
        op1: [gat, gcn, gin, cheb, sage, arma, graph, fc, skip]
        ...                                  # op2, op3, op4 the same

That is 9 * 9^4 = 59,049 assignments; the package's ``Arch.valid_hash`` maps isomorphic
ones to the same table entry (59,040 assignments reach the 26,206 entries; the nine with
only ``skip`` layers are not in the table and are told as failed trials).

Loading: the files are pickles; they are read with ``safe_pickle.load_plain`` (no code
runs) after their SHA-256 is checked against the digests recorded here for 1.4.0. The
package's own modules are imported only for ``Arch.valid_hash`` (the official
canonicalisation); its pickle reader is never called.

From the command line it is the evaluator ``nasbench_graph`` (option ``dataset``)::

    dynas search examples/nasbench_graph.yaml
"""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from dynas.search_space import names
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.evaluators import register_evaluator

from .safe_pickle import load_plain

PACKAGE = "nas_bench_graph"
VERSION = "1.4.0"
DATASETS = ("arxiv", "citeseer", "computers", "cora", "cs", "photo", "physics", "proteins", "pubmed")
LINKS = ("0000", "0001", "0011", "0012", "0013", "0111", "0112", "0122", "0123")
OPS = ("gat", "gcn", "gin", "cheb", "sage", "arma", "graph", "fc", "skip")
OP_DECISIONS = ("op1", "op2", "op3", "op4")

# Metric names this evaluator produces: unprefixed = validation, ``test.`` = test split
# (``search_space.names``: a test metric is never an objective).
VAL_ACCURACY = "accuracy"
TEST_ACCURACY = names.as_test(VAL_ACCURACY)
LATENCY = "latency_s"
PARAMS_M = "params_m"
METRICS = (VAL_ACCURACY, TEST_ACCURACY, LATENCY, PARAMS_M)

SHA256 = {   # light/<dataset>.bench of nas-bench-graph 1.4.0
    "arxiv": "7ee21a7653297a806c0ed1be3efe6ecc06acc84e48e942da0bfde0e5d287debe",
    "citeseer": "99c7f79b73372636305bf73fb32a58b63c57bd1871a152dd62ec72d984c8c50f",
    "computers": "fdb3dc0cf405d62322f0ab9614b2083c2a5e6576c2f43e4f2214be64bc62b1b3",
    "cora": "5e69b2f9bb08d8927d9ffd4921f8494a3cea349c9c3a461334cb9dc9e11701a8",
    "cs": "71ae8469930517160b024f52db6000a4897f1aff5d765beb27bb60952ed5bd31",
    "photo": "5511b4dc3f63fa988792177227db7901290fb9b27fc6c02e3036b29e134ed6df",
    "physics": "1e309bafee0b832c8b84fa3c039c36992bc0a910238b128f26b7e9190d7f2aea",
    "proteins": "b9e7fb0902bda44fec32c948e5fde822fb22d38d674c52e43ace5197378f2d21",   # 2,021 entries
    "pubmed": "10b4dcf6cfd3a24f6059f7d541a4a872960b4adac0b3dba26abed1bb9a3d904d",
}
_FIELDS = {"valid_perf": VAL_ACCURACY, "perf": TEST_ACCURACY, "latency": LATENCY, "para": PARAMS_M}


def available() -> bool:
    """The package is installed (its data ships inside it)."""
    return importlib.util.find_spec(PACKAGE) is not None


def bench_path(dataset: str) -> Path:
    """``light/<dataset>.bench`` inside the installed package (found without importing it)."""
    if dataset not in DATASETS:
        raise ConfigError("evaluator.dataset", f"unknown NAS-Bench-Graph dataset {dataset!r}; "
                                               f"known: {', '.join(DATASETS)}")
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DynasError(f"NAS-Bench-Graph needs the package: pip install nas-bench-graph=={VERSION}")
    return Path(list(spec.submodule_search_locations)[0]) / "light" / f"{dataset}.bench"


@lru_cache(maxsize=None)
def load_table(dataset: str) -> dict[int, dict[str, float]]:
    """The dataset's table, hash -> {metric: value}, checked and loaded without code."""
    path = bench_path(dataset)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[dataset]:
        raise DynasError(f"{path}: SHA-256 {digest[:16]}... is not that of nas-bench-graph "
                         f"{VERSION}'s {dataset} table; reinstall nas-bench-graph=={VERSION}")
    raw = load_plain(path)
    if not isinstance(raw, dict):
        raise DynasError(f"{path}: expected a mapping of architecture hashes, got {type(raw).__name__}")
    return {int(k): {_FIELDS[f]: float(v[f]) for f in _FIELDS} for k, v in raw.items()}


@lru_cache(maxsize=None)
def canonical_hash(link: str, ops: tuple[str, ...]) -> int:
    """The benchmark's key of an architecture (its official isomorphism-aware hash)."""
    from nas_bench_graph.architecture import Arch

    return Arch([int(c) for c in link], list(ops)).valid_hash()


def decision_space_spec() -> dict[str, Any]:
    """The ``space.decisions`` mapping of the whole benchmark space."""
    return {"link": list(LINKS), **{name: list(OPS) for name in OP_DECISIONS}}


class NasBenchGraph:
    """``evaluate(candidate) -> (state, metrics, extra)`` by table look-up (``controllers.run.in_process``)."""

    def __init__(self, dataset: str = "arxiv"):
        self.dataset = dataset
        self.table = load_table(dataset)

    def key(self, params: Mapping[str, Any]) -> int:
        missing = [n for n in ("link",) + OP_DECISIONS if n not in params]
        if missing:
            raise ConfigError("space.decisions", f"NAS-Bench-Graph needs decisions {', '.join(missing)}")
        link, ops = str(params["link"]), tuple(str(params[n]) for n in OP_DECISIONS)
        if link not in LINKS or any(op not in OPS for op in ops):
            raise ConfigError("space.decisions", f"link {link!r} / ops {ops} are outside NAS-Bench-Graph's "
                                                 f"links {LINKS} and ops {OPS}")
        return canonical_hash(link, ops)

    def lookup(self, params: Mapping[str, Any]) -> dict[str, float] | None:
        """The table's metrics for an assignment, None when the table has no entry."""
        entry = self.table.get(self.key(params))
        return None if entry is None else dict(entry)

    def __call__(self, candidate: Any) -> tuple[str, dict[str, float], dict[str, Any]]:
        params = candidate.to_dict()
        metrics = self.lookup(params)
        if metrics is None:
            return "failed", {}, {"reason": "not in NAS-Bench-Graph (an architecture of only skip layers)"}
        return "complete", metrics, {}


@register_evaluator("nasbench_graph", metrics=METRICS,
                    description="NAS-Bench-Graph look-up: val/test accuracy, latency, params of a GNN")
def nasbench_graph(decisions: Mapping[str, Any], dataset: str = "arxiv") -> dict[str, float]:
    """The table's metrics of ``decisions`` (link, op1..op4) on ``dataset``."""
    metrics = NasBenchGraph(dataset).lookup(decisions)
    if metrics is None:
        raise ValueError("not in NAS-Bench-Graph (an architecture of only skip layers)")
    return metrics
