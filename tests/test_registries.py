"""Every registry (tasks, kinds, builders, metrics, evaluators, strategies) is one
``search_space.registry.Registry``, and each keeps two contracts.

1. A name fails the same way in every registry: an unknown one is one ``RegistryError``
   line (a ``ConfigError``: the CLI prints it and exits 2) under the registry's key,
   naming the registry and every known name; a taken one is refused in one line that
   says so; ``unregister`` removes; the error survives pickling (Ray workers).
2. Every registered name has a case in its registry's contract suite, so a task,
   kind, builder, metric, evaluator or strategy registered without one fails here
   (``CONTRACTS`` says where each registry's cases live).

The registries are found, not listed: every module of the four layers is imported and
every ``Registry`` it holds (as a global, or in a dict of them) is collected, so a new
registry without a row in ``CONTRACTS`` fails ``test_every_registry_has_a_contract``.
"""
from __future__ import annotations

import importlib
import math
import pickle
import pkgutil
from functools import cache

import pytest

from dynas.controllers.policies import POLICIES, register_policy
from dynas.search_space import names
from dynas.search_space.errors import ConfigError
from dynas.search_space.evaluators import EVALUATORS, check_options, evaluate, get_evaluator, register_evaluator
from dynas.search_space.kinds import REGISTRIES, expert_kinds, register_attention, register_model_kind
from dynas.search_space.registry import Registry, RegistryError
from dynas.trainers.metrics import METRICS, held_out_plugin_metrics, plugin_metrics, register_metric
from dynas.trainers.modules.registry import BUILDERS, builder
from dynas.trainers.tabular import nasbench_graph as nbg
from dynas.trainers.tasks import TASKS, register_task

from tests.controllers.test_policies import STRATEGIES
from tests.kind_cases import ATTENTION_CASES, FFN_CASES, MODEL_KIND_CASES, ROUTER_CASES
from tests.trainers.test_tasks import CASES as TASK_CASES

LAYERS = ("search_space", "trainers", "controllers", "analysis")


@cache
def every_registry() -> tuple[Registry, ...]:
    """Every ``Registry`` a module of the four layers holds, each once, in import order."""
    found: dict[int, Registry] = {}
    for layer in LAYERS:
        package = importlib.import_module(f"dynas.{layer}")
        modules = [package] + [importlib.import_module(info.name)
                               for info in pkgutil.walk_packages(package.__path__, f"dynas.{layer}.")
                               if not info.name.endswith("__main__")]
        for module in modules:
            for value in vars(module).values():
                for candidate in (value.values() if isinstance(value, dict) else (value,)):
                    if isinstance(candidate, Registry):
                        found.setdefault(id(candidate), candidate)
    return tuple(found.values())


# --- the cases of the suites that have no other home ------------------------------------
# Evaluators: (name, decisions, options); the suite runs each and checks what it returns.
EVALUATOR_CASES = [
    pytest.param("nasbench_graph", {"link": "0123", "op1": "gcn", "op2": "gat", "op3": "sage", "op4": "fc"},
                 {"dataset": "arxiv"},
                 marks=pytest.mark.skipif(not nbg.available(), reason="nas-bench-graph is not installed")),
]
# Metrics: (name, value on R_VAL, value on R_TEST). dynas registers none of its own (its
# built-ins are ``names.ALL_METRICS``, computed by fit); a metric registered in the
# package needs its case here.
METRIC_CASES: list = []
R_VAL = [[0.9, 0.1], [0.6, 0.8]]
R_TEST = [[0.7, 0.2], [0.5, 0.4]]
BUILT_IN = {names.FINAL_AVG_ACCURACY: 0.7, names.as_test(names.FINAL_AVG_ACCURACY): 0.45}


def _first(case) -> str:
    """The name in a case tuple or ``pytest.param``."""
    return case.values[0] if hasattr(case, "marks") else case[0]


KIND_CASES = {"attention": ATTENTION_CASES, "ffn": FFN_CASES, "router": ROUTER_CASES, **MODEL_KIND_CASES}
# registry -> (the names its contract suite has a case for, where those cases live)
CONTRACTS: list[tuple[Registry, set[str], str]] = [
    (TASKS, {_first(c) for c in TASK_CASES}, "tests/trainers/test_tasks.py CASES"),
    (POLICIES, set(STRATEGIES), "tests/controllers/test_policies.py STRATEGIES"),
    (EVALUATORS, {_first(c) for c in EVALUATOR_CASES}, "tests/test_registries.py EVALUATOR_CASES"),
    (METRICS, {_first(c) for c in METRIC_CASES}, "tests/test_registries.py METRIC_CASES"),
    *[(REGISTRIES[f], set(KIND_CASES[f]), "tests/kind_cases.py") for f in REGISTRIES],
    # a kind's builder is run by the torch suites on the kind's own cases
    *[(BUILDERS[f], set(KIND_CASES[f]), "tests/kind_cases.py") for f in REGISTRIES],
    (BUILDERS["expert"], {c.expert for c in FFN_CASES["moe"]}, "tests/kind_cases.py FFN_CASES['moe']"),
]


def test_every_registry_has_a_contract():
    listed = {id(registry) for registry, _, _ in CONTRACTS}
    assert len(listed) == len(CONTRACTS), "a registry is listed twice"
    missing = [registry.what for registry in every_registry() if id(registry) not in listed]
    assert not missing, f"registries without a row in CONTRACTS: {missing}"


@pytest.mark.parametrize("registry, cases, where", CONTRACTS, ids=[r.what for r, _, _ in CONTRACTS])
def test_every_registered_name_has_a_case(registry, cases, where):
    assert not set(registry) - cases, f"registered {registry.plural} without a case in {where}"
    assert not cases - set(registry), f"cases in {where} for {registry.plural} that are not registered"


def test_every_expert_kind_has_an_expert_builder():
    assert set(BUILDERS["expert"]) == set(expert_kinds())


# --- contract 1: names fail the same way everywhere ------------------------------------
@pytest.mark.parametrize("registry", every_registry(), ids=lambda r: r.what)
def test_an_unknown_name_is_one_line_naming_the_registry_and_the_known_names(registry):
    with pytest.raises(RegistryError) as err:
        registry.get("no_such_name")
    message = str(err.value)
    assert isinstance(err.value, ConfigError) and "\n" not in message
    assert err.value.key == registry.key
    assert message.startswith(f"{registry.key}: unknown {registry.what} 'no_such_name'; ")
    assert (f"known {registry.plural}: {', '.join(registry)}" if len(registry)
            else f"no {registry.plural} are registered") in message
    with pytest.raises(RegistryError, match=r"^config\.x: unknown "):
        registry.get(["not", "a", "name"], "config.x")          # any value a file may hold
    again = pickle.loads(pickle.dumps(err.value.with_source("exp.yaml")))
    assert type(again) is RegistryError and str(again) == f"exp.yaml: {message}"


@pytest.mark.parametrize("registry", every_registry(), ids=lambda r: r.what)
def test_a_taken_name_is_refused_in_one_line_and_unregister_removes(registry):
    before = registry.items()
    entry = object()
    with registry.kept():
        assert registry.register("contract_probe", entry) is entry
        assert registry.get("contract_probe") is entry and registry.names()[-1] == "contract_probe"
        with pytest.raises(RegistryError) as err:
            registry.register("contract_probe", object())
        assert str(err.value) == f"{registry.what} 'contract_probe' is already registered"
        assert registry.get("contract_probe") is entry                   # the first one stays
        for name in registry.names()[:1]:                                # a built-in, if any
            with pytest.raises(RegistryError, match=f"^{registry.what} '{name}' is already registered$"):
                registry.register(name, object())
        with pytest.raises(RegistryError, match=f"^{registry.what} name must be a non-empty string, got ''$"):
            registry.register("", object())
        assert registry.unregister("contract_probe") is entry
        assert "contract_probe" not in registry
        with pytest.raises(RegistryError, match=f"unknown {registry.what} 'contract_probe'"):
            registry.unregister("contract_probe")
        registry.register("left_behind", entry)
    assert registry.items() == before                                   # kept() puts it all back


def _nothing(*args, **kwargs):
    return None


# Each public registering function, given a name its registry already has.
TAKEN = {
    "register_task": lambda: register_task("split_digits", shape=_nothing)(_nothing),
    "register_policy": lambda: register_policy("tpe", _nothing),
    "register_metric": lambda: register_metric(names.FLOPS)(_nothing),
    "register_metric test.": lambda: register_metric(names.as_test("mine"))(_nothing),
    "register_evaluator": lambda: [register_evaluator("twice")(_nothing) for _ in range(2)],
    "register_attention": lambda: register_attention(REGISTRIES["attention"].get("full")),
    "register_model_kind": lambda: register_model_kind("head", REGISTRIES["head"].get("cls")),
    "builder": lambda: builder("ffn", "dense")(_nothing),
}


@pytest.mark.parametrize("register", TAKEN.values(), ids=TAKEN)
def test_every_registering_function_refuses_with_the_one_error(register):
    """``register_policy`` raised ValueError once; every function now raises the same."""
    with EVALUATORS.kept(), METRICS.kept(), TASKS.kept(), POLICIES.kept():
        with pytest.raises(RegistryError) as err:
            register()
    assert "\n" not in str(err.value) and ("is already registered" in str(err.value) or "reserved" in str(err.value))


# --- contract 2: the suites of evaluators and metrics -----------------------------------
@pytest.mark.parametrize("name, decisions, options", EVALUATOR_CASES)
def test_every_evaluator_returns_the_numbers_it_declares(name, decisions, options):
    check_options(name, options)
    metrics = evaluate(name, decisions, options)
    assert set(get_evaluator(name).metrics) <= set(metrics)
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert evaluate(name, decisions, options) == metrics          # no state that changes its answers


def check_metric(name: str, on_val: float, on_test: float) -> None:
    """What ``fit`` adds to a trial: the metric on R_val, and as ``test.<name>`` on R_test."""
    assert plugin_metrics(R_VAL, BUILT_IN)[name] == pytest.approx(on_val)
    assert held_out_plugin_metrics(R_TEST, BUILT_IN)[names.as_test(name)] == pytest.approx(on_test)


@pytest.mark.parametrize("name, on_val, on_test", METRIC_CASES)
def test_every_registered_metric_gives_its_value_on_val_and_test(name, on_val, on_test):
    check_metric(name, on_val, on_test)


def test_the_metric_check_on_the_documented_example():
    """``check_metric`` on ``trainers.metrics``' own example, registered for this test
    only; the held-out twin sees the built-ins' test values in place of theirs."""
    with METRICS.kept():
        register_metric("last_task_accuracy")(lambda acc, values: acc[-1][len(acc) - 1])
        register_metric("avg_seen")(lambda acc, values: values[names.FINAL_AVG_ACCURACY])
        check_metric("last_task_accuracy", 0.8, 0.4)
        check_metric("avg_seen", 0.7, 0.45)
