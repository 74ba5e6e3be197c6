"""Plain decision spaces from the CLI: an evaluator (a function of the decisions that
returns metrics) behind the same SearchDriver. On Ray: ``dynas search`` and ``dynas
resume`` of ``examples/plugins/plain_search.yaml`` in ``test_cluster.py``."""
from __future__ import annotations

from pathlib import Path

import pytest

from dynas.controllers.runs import run_local_experiment
from dynas.controllers.run.prepare import prepare_search
from dynas.search_space.errors import ConfigError
from dynas.search_space.evaluators import EVALUATORS, evaluate, register_evaluator, unregister_evaluator
from dynas.search_space.experiment import parse_experiment

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "plugins" / "plain_search.yaml"
SPACE = {"decisions": {"a": [1, 2, 3], "b": {"low": 0, "high": 4}}}
OBJECTIVES = [{"metric": "loss", "direction": "min"}]


@pytest.fixture
def quadratic():
    @register_evaluator("quadratic", metrics=("loss", "size"), description="(a - 2)^2 + b")
    def quadratic(decisions, offset=0.0):
        return {"loss": (decisions["a"] - 2) ** 2 + decisions["b"] + offset, "size": decisions["a"]}

    yield "quadratic"
    unregister_evaluator("quadratic")


def experiment(evaluator="quadratic", **search):
    data = {"space": SPACE, "search": {"objectives": OBJECTIVES, "trials": 6, **search}}
    if evaluator is not None:
        data["evaluator"] = evaluator
    return parse_experiment(data)


def test_a_registered_name_is_refused_twice(quadratic):
    with pytest.raises(ConfigError, match="evaluator 'quadratic' is already registered"):
        register_evaluator("quadratic")(lambda decisions: {"loss": 0.0})
    assert EVALUATORS.get("quadratic").description == "(a - 2)^2 + b"


def test_evaluate_passes_options_and_checks_what_comes_back(quadratic):
    assert evaluate("quadratic", {"a": 3, "b": 1}, {"offset": 0.5}) == {"loss": 2.5, "size": 3.0}
    with pytest.raises(ConfigError, match="evaluator.options.scale: unknown option for evaluator 'quadratic'"):
        evaluate("quadratic", {"a": 3, "b": 1}, {"scale": 2})
    register_evaluator("bad_value")(lambda decisions: {"loss": "low"})
    register_evaluator("bad_type")(lambda decisions: [1.0])
    try:
        with pytest.raises(TypeError, match="returned loss='low'; expected a number"):
            evaluate("bad_value", {})
        with pytest.raises(TypeError, match="returned list; expected a non-empty mapping"):
            evaluate("bad_type", {})
    finally:
        unregister_evaluator("bad_value")
        unregister_evaluator("bad_type")


@pytest.mark.parametrize("evaluator, search, key, fragment", [
    (None, {}, "evaluator", "a plain decision space needs an evaluator"),
    ("nope", {}, "evaluator.name", "unknown evaluator 'nope'; known evaluators: "),
    ("quadratic", {"objectives": [{"metric": "accuracy", "direction": "max"}]},
     "search.objectives[0].metric", "evaluator 'quadratic' returns loss, size, not 'accuracy'"),
    ("quadratic", {"scheduler": "asha"}, "search.scheduler", "use fifo"),
    ({"name": "quadratic", "options": {"scale": 2}}, {}, "evaluator.options",
     "unexpected keyword argument 'scale' (evaluator 'quadratic')"),
])
def test_what_prepare_search_refuses_before_any_trial(quadratic, evaluator, search, key, fragment):
    with pytest.raises(ConfigError) as err:
        prepare_search(experiment(evaluator, **search))
    assert err.value.key == key and fragment in err.value.message


def test_an_evaluator_is_only_for_plain_spaces():
    with pytest.raises(ConfigError, match="evaluator: an evaluator scores a plain decision space"):
        parse_experiment({"space": {"layers": [1], "d_model": [8], "layer": {
            "attention": {"kind": "full", "heads": 2}, "ffn": {"kind": "dense", "expansion": 2}}},
            "evaluator": "quadratic"})


def test_the_local_runner_searches_a_plain_space_with_its_evaluator(quadratic, tmp_path):
    exp = parse_experiment({"space": SPACE, "evaluator": {"name": "quadratic", "options": {"offset": 1.0}},
                            "search": {"objectives": OBJECTIVES, "trials": 6, "strategy": "tpe"}})
    records = [r for r in run_local_experiment(exp, tmp_path) if r.cached_from is None]
    assert len(records) == len({r.arch_id for r in records}) == 6
    for r in records:
        assert r.state == "complete" and r.experiences_done == 1
        assert r.metrics["loss"] == (r.arch["a"] - 2) ** 2 + r.arch["b"] + 1.0 == r.objectives[0]
