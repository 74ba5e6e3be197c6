"""Feasibility: structure (heads, top_k) and budgets, and rejection sampling."""
import re

import pytest

from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                               replace_layer)
from dynas.search_space.base import Assignment
from dynas.search_space.constraints import fmt, is_feasible, sample_feasible, structural_problem
from dynas.search_space.cost import estimate_cost
from dynas.search_space.errors import InfeasibleError
from dynas.search_space.settings import Budget
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester, RecordingSuggester

ARCH = ArchConfig(32, (LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2)),))


def test_a_valid_arch_is_feasible_without_a_budget(shape):
    assert is_feasible(ARCH, shape, Budget()) == (True, "")
    assert is_feasible(ARCH, None, None) == (True, "")


@pytest.mark.parametrize("arch, reason", [
    (ArchConfig(30, ARCH.layers), "layers[0].attention.heads: 4 does not divide d_model=30"),
    (replace_layer(ARCH, 0, ffn=FFNConfig("moe", experts=2, router=RouterConfig("topk", 3))),
     "layers[0].ffn.top_k: 3 exceeds experts=2"),
    (replace_layer(ARCH, 0, ffn=FFNConfig("moe", experts=2, router=None)), "layers[0].ffn.router: moe needs a router"),
    (replace_layer(ARCH, 0, attention=AttentionConfig("sliding_window", 4, window=0)),
     "layers[0].attention.window: sliding_window needs window >= 1"),
    (replace_layer(ARCH, 0, ffn=FFNConfig("moe", experts=2, router=RouterConfig("dynamic", 1, 0.0))),
     "layers[0].ffn.router.top_p: must be in (0, 1], got 0.0"),
    (ArchConfig(32, ()), "layers: an architecture needs at least one layer"),
])
def test_structural_problems_are_named(shape, arch, reason):
    assert structural_problem(arch) == reason
    assert is_feasible(arch, shape, Budget(max_flops=1e30)) == (False, reason)


def test_flops_budget_names_the_limit(shape):
    flops = estimate_cost(ARCH, shape).flops
    assert is_feasible(ARCH, shape, Budget(max_flops=flops)) == (True, "")
    ok, reason = is_feasible(ARCH, shape, Budget(max_flops=1e3))
    assert not ok and reason == f"flops {fmt(flops)} > max_flops 1e3"


def test_params_budget_names_the_limit(shape):
    params = estimate_cost(ARCH, shape).params
    assert is_feasible(ARCH, shape, Budget(max_params=params)) == (True, "")
    assert is_feasible(ARCH, shape, Budget(max_params=params - 1)) == (
        False, f"params {fmt(params)} > max_params {fmt(params - 1)}")


def test_budget_needs_a_shape():
    with pytest.raises(ValueError, match="task shape"):
        is_feasible(ARCH, None, Budget(max_flops=1.0))


def test_plain_candidates_are_always_feasible(shape):
    assert is_feasible(Assignment((("a", 1),)), shape, Budget(max_flops=1.0)) == (True, "")


@pytest.mark.parametrize("x, text", [(1.2e6, "1.2e6"), (1e5, "1e5"), (640, "640"), (0.5, "0.5"),
                                     (123456789, "1.23e8"), (2.5e-7, "2.5e-7")])
def test_fmt(x, text):
    assert fmt(x) == text


def test_sample_feasible_returns_the_first_candidate_within_budget(space_dict, shape):
    space = parse_space(space_dict)
    costs = sorted(estimate_cost(space.sample(RandomSuggester(s)), shape).flops for s in range(50))
    budget = Budget(max_flops=costs[len(costs) // 4])  # roughly a quarter of samples fit
    recorders = []

    def make(attempt):
        recorders.append(RecordingSuggester(RandomSuggester(attempt)))
        return recorders[-1]

    arch = sample_feasible(space, make, shape, budget)
    assert estimate_cost(arch, shape).flops <= budget.max_flops
    # the accepted arch is the first that fits, and its recorder holds its decisions
    for attempt, rec in enumerate(recorders[:-1]):
        assert not is_feasible(space.sample(RandomSuggester(attempt)), shape, budget)[0]
    assert space.sample(RandomSuggester(len(recorders) - 1)) == arch
    assert recorders[-1].params["layers"] == arch.num_layers


def test_sample_feasible_explains_an_impossible_budget(space_dict, shape):
    space = parse_space(space_dict)
    with pytest.raises(InfeasibleError) as info:
        sample_feasible(space, RandomSuggester, shape, Budget(max_flops=1e3), tries=5)
    assert re.fullmatch(r"nothing feasible in 5 samples: e\.g\. flops [0-9.e]+ > max_flops 1e3",
                        str(info.value))


def test_sample_feasible_needs_a_try(space_dict, shape):
    with pytest.raises(ValueError):
        sample_feasible(parse_space(space_dict), RandomSuggester, shape, None, tries=0)
