"""A tiny plain space with conditional decisions, and a cheap synthetic objective.

``ToySpace`` implements the ``Space`` protocol by hand (no search_space.space needed),
so the policy contract suite depends only on the protocol.
"""
from __future__ import annotations

import math

import pytest

from dynas.search_space import names
from dynas.search_space.base import Assignment
from dynas.search_space.settings import Objective
from dynas.search_space.suggest import Decision, Suggester

TWO_OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"), Objective(names.FLOPS, "min"))
ONE_OBJECTIVE = (Objective(names.FINAL_AVG_ACCURACY, "max"),)


class ToySpace:
    """kind -> (kernel | width), depth -> skip, act: 110 distinct candidates."""

    def decisions(self) -> list[Decision]:
        return [
            Decision("kind", ("conv", "mlp", "attn")),
            Decision("kernel", (3, 5, 7), "kind == conv"),
            Decision("width", (1, 2, 3, 4), "kind != conv", kind="int"),
            Decision("depth", (1, 2, 3), kind="int"),
            Decision("skip", (True, False), "depth > 1"),
            Decision("act", ("relu", "gelu")),
        ]

    def sample(self, suggester: Suggester) -> Assignment:
        values = {"kind": suggester.suggest_categorical("kind", ["conv", "mlp", "attn"])}
        if values["kind"] == "conv":
            values["kernel"] = suggester.suggest_categorical("kernel", [3, 5, 7])
        else:
            values["width"] = suggester.suggest_int("width", 1, 4)
        values["depth"] = suggester.suggest_int("depth", 1, 3)
        if values["depth"] > 1:
            values["skip"] = suggester.suggest_categorical("skip", [True, False])
        values["act"] = suggester.suggest_categorical("act", ["relu", "gelu"])
        return Assignment(tuple(values.items()))

    def size(self) -> int:
        return (3 + 4 + 4) * (1 + 2 + 2) * 2


def toy_metrics(arch: Assignment) -> dict[str, float]:
    """Deterministic accuracy/FLOPs trade-off: attn and depth help but cost FLOPs."""
    p = arch.to_dict()
    size = p.get("kernel", 0) / 2 + p.get("width", 0)
    acc = 0.5 + 0.15 * (p["kind"] == "attn") + 0.05 * p["depth"] + 0.02 * size
    acc += 0.05 * bool(p.get("skip")) + 0.03 * (p["act"] == "gelu")
    flops = 1e6 * (1 + size) * p["depth"] * (2.0 if p["kind"] == "attn" else 1.0)
    return {
        names.FINAL_AVG_ACCURACY: min(acc, 1.0),
        names.FLOPS: flops,
        names.PARAMS: flops / 10,
        "log_flops": math.log2(flops),
    }


@pytest.fixture
def toy_space() -> ToySpace:
    return ToySpace()


# A private Ray instance per test module (never a cluster found on the machine).
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level="WARNING")
    yield ray
    if started:
        ray.shutdown()
