"""Every malformed space fails at parse time with one line naming the key path."""
import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynas.search_space.constraints import structural_problem
from dynas.search_space.errors import ConfigError
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester

DELETE = object()
FFN1 = ("layer", "ffn", 1)
ATT = ("layer", "attention")

# (path into the small valid space of conftest, new value, exact message)
ARCH_CASES = [
    (("layers",), [], "space.layers: empty list; give at least one choice"),
    (("layers",), [0, 1], "space.layers[0]: must be >= 1, got 0"),
    (("layers",), [2, 10000], "space.layers[1]: must be <= 1024, got 10000"),
    (("d_model",), [16, 16], "space.d_model: duplicate choice 16"),
    (("d_model",), "big", "space.d_model: expected an integer, got 'big'"),
    (("d_model",), [16, True], "space.d_model[1]: expected an integer, got True"),
    (("d_model",), [16, 2.5], "space.d_model[1]: expected an integer, got 2.5"),
    (FFN1 + ("top_k",), [1, 3], "space.layer.ffn[1].top_k: 3 exceeds experts=2"),
    (ATT + (0, "heads"), [2, 3], "space.layer.attention[0].heads: 3 does not divide d_model=16"),
    (("d_model",), [16, 18], "space.layer.attention[0].heads: 4 does not divide d_model=18"),
    (ATT + (1, "window"), [0, 4], "space.layer.attention[1].window[0]: must be >= 1, got 0"),
    (ATT + (2, "max_span"), 0, "space.layer.attention[2].max_span: must be >= 1, got 0"),
    (ATT + (0, "heads"), [[2]], "space.layer.attention[0].heads[0]: expected an integer, got [2]"),
    (ATT + (0, "kind"), "flash",
     "space.layer.attention[0].kind: unknown attention kind 'flash'; known attention kinds: full, sliding_window, "
     "dynamic_span, linear, identity"),
    (ATT + (0, "kind"), ["full", "linear"],
     "space.layer.attention[0].kind: expected one kind name (list options separately), got "
     "['full', 'linear']"),
    (ATT + (0, "kind"), DELETE,
     "space.layer.attention[0].kind: missing required key; known kinds: full, sliding_window, "
     "dynamic_span, linear, identity"),
    (ATT + (0, "heads"), DELETE, "space.layer.attention[0].heads: missing required key for kind full"),
    (ATT + (1, "window"), DELETE,
     "space.layer.attention[1].window: missing required key for kind sliding_window"),
    (ATT + (0, "window"), [4],
     "space.layer.attention[0].window: unknown key for kind full; known keys: kind, heads"),
    (("layer", "ffn", 0, "experts"), 4,
     "space.layer.ffn[0].experts: unknown key for kind dense; known keys: kind, expansion"),
    (FFN1 + ("experts",), DELETE, "space.layer.ffn[1].experts: missing required key for kind moe"),
    (FFN1 + ("router",), ["topk", "softmax"],
     "space.layer.ffn[1].router[1]: 'softmax' is not one of topk, dynamic, relu"),
    (FFN1 + ("balance",), "l2",
     "space.layer.ffn[1].balance: 'l2' is not one of aux_loss, z_loss, bias, none"),
    (FFN1 + ("top_p",), [0.5, 1.5], "space.layer.ffn[1].top_p[1]: must be in (0, 1], got 1.5"),
    (FFN1 + ("router",), "topk",
     "space.layer.ffn[1].top_p: choices are only used by router dynamic, which this option never picks"),
    (FFN1 + ("capacity_factor",), [-1], "space.layer.ffn[1].capacity_factor[0]: must be >= 0, got -1.0"),
    (FFN1 + ("capacity_factor",), float("inf"),
     "space.layer.ffn[1].capacity_factor: expected a finite number, got inf"),
    (FFN1 + ("shared_experts",), [-1], "space.layer.ffn[1].shared_experts[0]: must be >= 0, got -1"),
    (("layer", "ffn", 0, "expansion"), [0], "space.layer.ffn[0].expansion[0]: must be >= 1, got 0"),
    (ATT, [], "space.layer.attention: empty list; give at least one option"),
    (ATT, ["full"],
     "space.layer.attention[0]: expected a mapping with a kind (full, sliding_window, dynamic_span, "
     "linear, identity), got 'full'"),
    (("layer",), [1], "space.layer: expected a mapping with attention and ffn, got [1]"),
    (("layer", "ffn"), DELETE, "space.layer.ffn: missing required key"),
    (("layer", "norm"), "pre", "space.layer.norm: unknown key; known keys: attention, ffn"),
    (("layer",), DELETE, "space.layer: missing required key"),
    (("width",), 3,
     "space.width: unknown key (a plain space has only 'decisions'); known keys: layers, d_model, layer, tokens, stem, norm, head, positions"),
    ((), [1, 2], "space: expected a mapping, got [1, 2]"),
    ((), {1: 2}, "space: keys must be strings, got 1"),
    ((), None, "space: expected a mapping, got None"),
]

PLAIN_CASES = [
    ({}, "space.decisions: no decisions; give at least one"),
    ([1], "space.decisions: expected a mapping of decision names to choices, got [1]"),
    ({"a": []}, "space.decisions.a: empty list; give at least one choice"),
    ({"a": ["x", "x"]}, "space.decisions.a: duplicate choice 'x'"),
    ({"a": [1, 1.0]}, "space.decisions.a: duplicate choice 1.0"),
    ({"a": [[1]]}, "space.decisions.a[0]: expected a number, string, boolean or null, got [1]"),
    ({"a": {"low": 5, "high": 1}}, "space.decisions.a.high: 1 is below low=5"),
    ({"a": {"low": 1, "high": 10, "step": 4}},
     "space.decisions.a.high: 10 is not low + a multiple of step=4"),
    ({"a": {"low": 1}}, "space.decisions.a.high: missing required key"),
    ({"a": {"low": 1, "high": 2, "by": 1}}, "space.decisions.a.by: unknown key; known keys: low, high, step"),
    ({"a": {"low": 1, "high": 2, "step": 0}}, "space.decisions.a.step: must be >= 1, got 0"),
    ({"a": {"low": "1", "high": 2}}, "space.decisions.a.low: expected an integer, got '1'"),
    ({"": [1, 2]}, "space.decisions: decision names must not be empty"),
]


def _edit(data, path, value):
    if not path:
        return value
    node = data
    for step in path[:-1]:
        node = node[step]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize("path, value, message", ARCH_CASES, ids=[c[2].split(":")[0] + "|" + c[2][-24:] for c in ARCH_CASES])
def test_malformed_arch_space_names_the_key(space_dict, path, value, message):
    with pytest.raises(ConfigError) as info:
        parse_space(_edit(space_dict, path, value))
    assert str(info.value) == message
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("decisions, message", PLAIN_CASES, ids=[c[1] for c in PLAIN_CASES])
def test_malformed_plain_space_names_the_key(decisions, message):
    with pytest.raises(ConfigError) as info:
        parse_space({"decisions": decisions})
    assert str(info.value) == message


def test_plain_space_rejects_arch_keys():
    with pytest.raises(ConfigError, match=r"^space\.layers: unknown key; known keys: decisions$"):
        parse_space({"decisions": {"a": [1, 2]}, "layers": [1]})


def test_messages_stay_short_for_huge_values(space_dict):
    big = [[list(range(1000))] * 1000]
    with pytest.raises(ConfigError) as info:
        parse_space(_edit(space_dict, ("d_model",), big))
    assert len(str(info.value)) < 120


# --- property: the parser never fails with anything but ConfigError ------------------
KEYS = ["layers", "d_model", "layer", "attention", "ffn", "kind", "heads", "window", "max_span",
        "experts", "top_k", "router", "top_p", "shared_experts", "capacity_factor", "balance",
        "expansion", "decisions", "low", "high", "step", "full", "moe", "dense", "dynamic"]
SCALARS = (st.none() | st.booleans() | st.integers(-3, 70) | st.floats(allow_nan=True)
           | st.sampled_from(KEYS) | st.text(max_size=5))
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=3) | st.integers(), inner, max_size=5),
    max_leaves=25,
)
# values that often keep a space valid, so the "parses => buildable" branch runs too
PLAUSIBLE = (st.integers(1, 8) | st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True)
             | st.sampled_from(["topk", "dynamic", "full", "linear", "moe", "dense", "bias"]))


def _paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _paths(v, prefix + (i,))


def _check_parse(data):
    try:
        space = parse_space(data)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    # whatever parses is fully buildable
    assert space.size() >= 1
    rng = RandomSuggester(0)
    for _ in range(3):
        cand = space.sample(rng)
        if hasattr(cand, "layers"):
            assert structural_problem(cand) == ""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_random_mappings_only_raise_config_errors(data):
    _check_parse(data)
    _check_parse({"decisions": data})


@settings(max_examples=300, deadline=None,  # the fixture is deep-copied per example
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.data())
def test_mutated_valid_spaces_only_raise_config_errors(space_dict, data):
    spec = copy.deepcopy(space_dict)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(list(_paths(spec))[1:]))
        value = data.draw(PLAUSIBLE | YAMLISH | st.just(DELETE))
        if value is DELETE and isinstance(path[-1], int):
            value = None
        spec = _edit(spec, path, value)
    _check_parse(spec)
