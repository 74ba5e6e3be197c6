"""Properties of everything that reads user files: experiment YAML and arch JSON.

Whatever the bytes, a reader either returns a valid object or raises a ``DynasError``
(``ConfigError`` for contents) with a one-line message; it never crashes with another
exception, never executes anything, and what it returns survives a round trip.
The space section's own properties live in ``test_space_errors.py``.
"""
from __future__ import annotations

import copy
import functools
import json
import math

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dynas.search_space.arch import ArchConfig
from dynas.search_space.constraints import structural_problem
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.experiment import load_experiment, parse_experiment
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester

# every kind and option, small enough to sample fast
SMALL_SPACE = {
    "layers": [1, 2, 3], "d_model": [16, 32],
    "layer": {
        "attention": [{"kind": "full", "heads": [2, 4]},
                      {"kind": "sliding_window", "heads": [2], "window": [4, 8]},
                      {"kind": "dynamic_span", "heads": 4, "max_span": [8]},
                      {"kind": "linear", "heads": [2]}],
        "ffn": [{"kind": "dense", "expansion": [2, 4]},
                {"kind": "moe", "experts": [2, 4], "top_k": [1, 2], "router": ["topk", "dynamic"],
                 "top_p": [0.5, 0.9], "shared_experts": [0, 1], "capacity_factor": [0, 1.25],
                 "balance": ["aux_loss", "z_loss", "bias", "none"], "expansion": 2}],
    },
}

FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# --- strategies ------------------------------------------------------------------------
ARCH_KEYS = ["d_model", "layers", "schema_version", "attention", "ffn", "kind", "heads", "window",
             "max_span", "expansion", "experts", "router", "shared_experts", "capacity_factor",
             "balance", "top_k", "top_p", "full", "moe", "dense", "topk", "dynamic", "bias", "arch"]
SCALARS = (st.none() | st.booleans() | st.integers(-4, 70) | st.integers()
           | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(ARCH_KEYS)
           | st.text(max_size=6))
JSONISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(ARCH_KEYS) | st.text(max_size=4),
                                                               inner, max_size=6),
    max_leaves=30)
SETTINGS_KEYS = ["task", "training", "search", "name", "options", "steps_per_experience", "batch_size",
                 "lr", "device", "curriculum", "replay", "kind", "policy", "budget", "max_flops",
                 "strategy", "trials", "objectives", "metric", "direction", "ppo", "seed", "joint"]
SETTINGSISH = st.recursive(
    SCALARS | st.sampled_from(["max", "min", "cpu", "auto", "ppo", "nsga2", "entropy", "reservoir"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(SETTINGS_KEYS), inner, max_size=5),
    max_leaves=25)


@functools.lru_cache(maxsize=1)
def small_space():
    return parse_space(copy.deepcopy(SMALL_SPACE))


def sampled_arch(seed: int) -> ArchConfig:
    return small_space().sample(RandomSuggester(seed))


def leaf_paths(data, prefix=()):
    """Every path into a JSON tree (the root excluded)."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        yield prefix + (k,)
        yield from leaf_paths(v, prefix + (k,))


def replaced(data, path, value):
    data = copy.deepcopy(data)
    node = data
    for step in path[:-1]:
        node = node[step]
    if value is None and isinstance(node, dict):
        node.pop(path[-1])
    else:
        node[path[-1]] = value
    return data


def one_line(err: Exception) -> None:
    text = str(err)
    assert text and "\n" not in text and len(text) < 400, text


# --- ArchConfig.from_dict ------------------------------------------------------------
def check_from_dict(data) -> None:
    try:
        arch = ArchConfig.from_dict(data, source="x.json")
    except ConfigError as err:
        one_line(err)
        assert str(err).startswith("x.json: ")
        return
    # whatever parses is buildable and round-trips
    assert structural_problem(arch) == ""
    assert ArchConfig.from_dict(json.loads(arch.to_json())) == arch


@FAST
@given(JSONISH)
def test_from_dict_on_any_json_tree_raises_only_config_errors(data):
    check_from_dict(data)


@FAST
@given(st.integers(0, 10_000), st.data())
@example(seed=0, data=None)
def test_from_dict_on_mutated_valid_archs_raises_only_config_errors(seed, data):
    tree = sampled_arch(seed).to_dict()
    if data is None:                     # the unmutated arch parses
        check_from_dict(tree)
        return
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(leaf_paths(tree))
        path = data.draw(st.sampled_from(paths))
        tree = replaced(tree, path, data.draw(SCALARS | JSONISH | st.integers(0, 9)))
    check_from_dict(tree)


# --- ArchConfig.load ------------------------------------------------------------------
def check_load(path) -> None:
    try:
        arch = ArchConfig.load(path)
    except DynasError as err:
        one_line(err)
        assert str(path) in str(err)
        return
    assert structural_problem(arch) == ""


@FAST
@given(st.binary(max_size=300))
def test_load_on_random_bytes_raises_only_dynas_errors(tmp_path, blob):
    path = tmp_path / "arch.json"
    path.write_bytes(blob)
    check_load(path)


@FAST
@given(st.integers(0, 10_000), st.data())
def test_load_on_truncated_or_spliced_files_raises_only_dynas_errors(tmp_path, seed, data):
    text = json.dumps(sampled_arch(seed).to_dict(), indent=data.draw(st.sampled_from([None, 2])))
    cut = data.draw(st.integers(0, len(text)))
    junk = data.draw(st.sampled_from(["", "}", "]", ",", "\x00", "\ufffd", "NaN", "1e999", "\n{}"]))
    path = tmp_path / "arch.json"
    path.write_text(text[:cut] + junk, encoding="utf-8")
    check_load(path)


@FAST
@given(JSONISH)
def test_load_on_any_json_document_raises_only_dynas_errors(tmp_path, data):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data, allow_nan=True))
    check_load(path)


# --- round trips of sampled architectures ----------------------------------------------
@FAST
@given(st.integers(0, 2**32 - 1), st.randoms(use_true_random=False))
def test_sampled_archs_round_trip_and_keep_their_id(tmp_path, seed, rnd):
    arch = sampled_arch(seed)
    assert structural_problem(arch) == ""
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    loaded = ArchConfig.load(arch.save(tmp_path / "a.json"))
    assert loaded == arch and loaded.arch_id == arch.arch_id
    # key order in the file is irrelevant to equality and to the id
    def shuffled(node):
        if isinstance(node, dict):
            items = list(node.items())
            rnd.shuffle(items)
            return {k: shuffled(v) for k, v in items}
        return [shuffled(v) for v in node] if isinstance(node, list) else node
    (tmp_path / "b.json").write_text(json.dumps(shuffled(arch.to_dict())))
    again = ArchConfig.load(tmp_path / "b.json")
    assert again == arch and again.arch_id == arch.arch_id
    # an export wrapping it ({"arch": ...}) loads the same
    (tmp_path / "c.json").write_text(json.dumps({"arch": arch.to_dict(), "metrics": {}}))
    assert ArchConfig.load(tmp_path / "c.json") == arch


# --- the experiment parser (settings sections) -------------------------------------------
VALID = {"space": SMALL_SPACE, "task": {"name": "split_digits"},
         "training": {"steps_per_experience": 5, "batch_size": 8},
         "search": {"strategy": "ppo", "trials": 3, "budget": {"max_flops": 1e6}}}


def check_experiment(data) -> None:
    try:
        exp = parse_experiment(data)
    except ConfigError as err:
        one_line(err)
        return
    assert exp.search.trials >= 1 and exp.training.lr > 0
    assert math.isfinite(exp.search.budget.max_flops)


@FAST
@given(SETTINGSISH)
def test_parse_experiment_on_any_mapping_raises_only_config_errors(data):
    check_experiment(data)
    if isinstance(data, dict):
        check_experiment({**data, "space": SMALL_SPACE})


@FAST
@given(st.data())
def test_parse_experiment_on_mutated_valid_files_raises_only_config_errors(data):
    tree = copy.deepcopy(VALID)
    tree = {k: v for k, v in tree.items() if k != "space"}
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(leaf_paths(tree))
        assume(paths)
        path = data.draw(st.sampled_from(paths))
        tree = replaced(tree, path, data.draw(SETTINGSISH))
    check_experiment({**tree, "space": SMALL_SPACE})


@FAST
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_load_experiment_on_random_bytes_raises_only_config_errors(tmp_path, blob):
    path = tmp_path / "exp.yaml"
    path.write_bytes(blob)
    try:
        load_experiment(path)
    except ConfigError as err:
        one_line(err)
        assert str(err).startswith(str(path))


@FAST
@given(st.sampled_from(["!!python/object/apply:os.system ['touch {m}']",
                        "!!python/object/new:os.system ['touch {m}']",
                        "!!python/name:os.system", "!!binary aGVsbG8=", "&a [*a]"]),
       st.sampled_from(["space", "task", "training.lr", "search.strategy"]))
def test_yaml_tags_are_never_constructed(tmp_path, tag, where):
    marker = tmp_path / "pwned"
    text = json.dumps(VALID)     # JSON is YAML; put the tag at one place
    section, *rest = where.split(".")
    value = tag.format(m=marker)
    doc = {**VALID}
    doc[section] = "__TAG__" if not rest else {**VALID[section], rest[0]: "__TAG__"}
    text = json.dumps(doc).replace('"__TAG__"', value)
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    try:
        load_experiment(path)
    except ConfigError as err:
        one_line(err)
    assert not marker.exists()
