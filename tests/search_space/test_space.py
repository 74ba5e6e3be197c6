"""ArchSpace and DecisionSpace: parsing, define-by-run sampling, decisions, exact size."""
import json
import logging
import warnings
from pathlib import Path

import optuna
import pytest
import yaml

from dynas.search_space.arch import ArchConfig
from dynas.search_space.kinds import ATTENTION, FFN
from dynas.search_space.base import Assignment, Space
from dynas.search_space.constraints import structural_problem
from dynas.search_space.cost import estimate_cost
from dynas.search_space.plain import DecisionSpace
from dynas.search_space.space import ArchSpace, condition_holds, parse_space
from dynas.search_space.suggest import FixedSuggester, RandomSuggester, RecordingSuggester

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class _Forbidden:
    """A suggester that must never be asked: fixed values are not decisions."""

    def suggest_categorical(self, name, choices):
        raise AssertionError(f"asked {name}")

    def suggest_int(self, name, low, high, step=1):
        raise AssertionError(f"asked {name}")


class _Path:
    """Replays a prefix of choice indices, then takes the first choice; records widths."""

    def __init__(self, prefix):
        self.prefix, self.widths = prefix, []

    def _index(self, width):
        pos = len(self.widths)
        self.widths.append(width)
        return self.prefix[pos] if pos < len(self.prefix) else 0

    def suggest_categorical(self, name, choices):
        return choices[self._index(len(choices))]

    def suggest_int(self, name, low, high, step=1):
        return low + step * self._index((high - low) // step + 1)


def enumerate_all(space):
    """Every define-by-run path of ``space`` exactly once (depth-first)."""
    stack = [[]]
    while stack:
        prefix = stack.pop()
        path = _Path(prefix)
        yield space.sample(path)
        full = prefix + [0] * (len(path.widths) - len(prefix))
        for pos in range(len(prefix), len(path.widths)):
            stack.extend(full[:pos] + [j] for j in range(1, path.widths[pos]))


def assert_asked_in_order(space, params):
    """Asked decisions follow decisions() order, obey conditions, and none is skipped."""
    names = [d.name for d in space.decisions()]
    asked = list(params)
    assert asked == [n for n in names if n in params]
    for d in space.decisions():
        if d.name in params:
            assert params[d.name] in d.options
        assert (d.name in params) == condition_holds(d.condition, params), d.name


# --- parsing ------------------------------------------------------------------------
def test_design_example_parses_into_an_arch_space(space_dict):
    space = parse_space(space_dict)
    assert isinstance(space, ArchSpace) and isinstance(space, Space)
    assert space.layers == (1, 2, 3) and space.d_model == (16, 32)
    assert [o.label for o in space.attention] == ["full", "sliding_window", "dynamic_span"]
    moe = space.ffn[1]
    assert moe["capacity_factor"] == (0.0, 1.25) and moe["expansion"] == (2,)


MINIMAL = {"full": {"heads": 2}, "sliding_window": {"heads": 2, "window": 4},
           "dynamic_span": {"heads": 2, "max_span": 8}, "linear": {"heads": 2},
           "identity": {}, "dense": {}, "glu": {}, "moe": {"experts": 2, "top_k": 1}}


@pytest.mark.parametrize("part, kind", [("attention", k) for k in ATTENTION.names()]
                         + [("ffn", k) for k in FFN.names()])
def test_every_arch_kind_can_be_declared_and_sampled(part, kind):
    assert set(MINIMAL) == set(ATTENTION.names()) | set(FFN.names())
    layer = {"attention": {"kind": "full", "heads": 2}, "ffn": {"kind": "dense"}}
    layer[part] = {"kind": kind, **MINIMAL[kind]}
    arch = parse_space({"layers": 1, "d_model": 8, "layer": layer}).sample(_Forbidden())
    assert getattr(arch.layers[0], part).kind == kind
    assert structural_problem(arch) == ""


def test_single_mapping_is_one_fixed_option_and_defaults_fill_in():
    space = parse_space({"layers": 1, "d_model": 8,
                         "layer": {"attention": {"kind": "linear", "heads": 2},
                                   "ffn": {"kind": "moe", "experts": 4}}})
    assert space.decisions() == [] and space.size() == 1
    arch = space.sample(_Forbidden())
    ffn = arch.layers[0].ffn
    assert arch.layers[0].attention.kind == "linear"
    assert (ffn.experts, ffn.router.kind, ffn.router.top_k, ffn.expansion) == (4, "topk", 2, 4)


def test_options_sharing_a_kind_are_labelled_by_index(space_dict):
    space_dict["layer"]["ffn"].append({"kind": "moe", "experts": 8, "top_k": [1, 4]})
    space = parse_space(space_dict)
    assert [o.label for o in space.ffn] == ["dense", "moe#1", "moe#2"]
    names = {d.name for d in space.decisions()}
    assert {"layer0.ffn.moe#1.experts", "layer0.ffn.moe#2.top_k"} <= names
    assert "layer0.ffn.moe#2.experts" not in names  # fixed


# --- decisions ----------------------------------------------------------------------
def test_decisions_are_named_per_option_with_readable_conditions(space_dict):
    by_name = {d.name: d for d in parse_space(space_dict).decisions()}
    assert by_name["layers"].condition is None and by_name["layers"].options == (1, 2, 3)
    assert by_name["layer0.attention"].condition is None
    assert by_name["layer1.attention"].condition == "layers > 1"
    assert by_name["layer2.ffn.moe.top_k"].condition == "layers > 2 and layer2.ffn == moe"
    assert by_name["layer0.ffn.moe.top_p"].condition == (
        "layer0.ffn == moe and layer0.ffn.moe.router == dynamic")
    assert by_name["layer0.attention.sliding_window.window"].options == (4, 8)
    # fixed values are not decisions
    assert "layer0.attention.dynamic_span.heads" not in by_name
    assert "layer0.ffn.moe.expansion" not in by_name
    assert "layer3.attention" not in by_name


def test_sampling_asks_exactly_the_decisions_whose_conditions_hold(space_dict):
    space = parse_space(space_dict)
    for seed in range(40):
        rec = RecordingSuggester(RandomSuggester(seed))
        arch = space.sample(rec)
        assert_asked_in_order(space, rec.params)
        assert not any(n.startswith(f"layer{arch.num_layers}.") for n in rec.params)


def test_condition_holds():
    params = {"layers": 3, "layer1.ffn": "moe#2"}
    assert condition_holds(None, {})
    assert condition_holds("layers > 2 and layer1.ffn == moe#2", params)
    assert not condition_holds("layers > 3", params)
    assert not condition_holds("layer1.ffn == moe", params)
    assert not condition_holds("layer0.ffn == dense", params)
    assert condition_holds("layer1.ffn != moe", params)
    assert not condition_holds("layer1.ffn != moe#2", params)
    with pytest.raises(ValueError):
        condition_holds("layers ~ 2", params)


# --- sampling -----------------------------------------------------------------------
def test_layers_are_heterogeneous(space_dict):
    space = parse_space(space_dict)
    archs = [space.sample(RandomSuggester(s)) for s in range(60)]
    mixed = [a for a in archs if a.num_layers > 1 and len(set(a.layers)) > 1]
    assert mixed, "every sampled multi-layer arch repeated one layer"
    kinds = {(l.attention.kind, l.ffn.kind) for a in mixed for l in a.layers}
    assert len(kinds) >= 4


def test_a_chosen_heterogeneous_arch_is_built_as_asked(space_dict):
    params = {"layers": 2, "d_model": 32,
              "layer0.attention": "full", "layer0.attention.full.heads": 4,
              "layer0.ffn": "dense", "layer0.ffn.dense.expansion": 2,
              "layer1.attention": "sliding_window", "layer1.attention.sliding_window.window": 8,
              "layer1.ffn": "moe", "layer1.ffn.moe.experts": 4, "layer1.ffn.moe.top_k": 2,
              "layer1.ffn.moe.router": "dynamic", "layer1.ffn.moe.top_p": 0.9,
              "layer1.ffn.moe.shared_experts": 1, "layer1.ffn.moe.capacity_factor": 1.25,
              "layer1.ffn.moe.balance": "bias"}
    arch = parse_space(space_dict).sample(FixedSuggester(params))
    l0, l1 = arch.layers
    assert (l0.attention.kind, l0.attention.heads, l0.ffn.kind, l0.ffn.expansion) == ("full", 4, "dense", 2)
    assert (l1.attention.kind, l1.attention.heads, l1.attention.window) == ("sliding_window", 2, 8)
    r = l1.ffn.router
    assert (l1.ffn.experts, r.kind, r.top_k, r.top_p, l1.ffn.shared_experts) == (4, "dynamic", 2, 0.9, 1)
    assert (l1.ffn.capacity_factor, l1.ffn.balance, l1.ffn.expansion) == (1.25, "bias", 2)


def test_topk_router_stores_the_default_top_p_so_equal_models_share_an_id(space_dict):
    space = parse_space(space_dict)
    archs = [space.sample(RandomSuggester(s)) for s in range(40)]
    routers = [l.ffn.router for a in archs for l in a.layers if l.ffn.kind == "moe"]
    assert {r.top_p for r in routers if r.kind == "topk"} == {0.5}
    assert {r.top_p for r in routers if r.kind == "dynamic"} == {0.5, 0.9}


def test_random_sampling_is_deterministic_per_seed(space_dict):
    space = parse_space(space_dict)

    def ids(seed):
        rng = RandomSuggester(seed)
        return [space.sample(rng).arch_id for _ in range(10)]

    assert ids(3) == ids(3)
    assert ids(3) != ids(4)


def test_replaying_recorded_params_reproduces_the_arch(space_dict):
    space = parse_space(space_dict)
    for seed in range(20):
        rec = RecordingSuggester(RandomSuggester(seed))
        arch = space.sample(rec)
        params = json.loads(json.dumps(rec.params))  # as stored in trials.jsonl
        assert space.sample(FixedSuggester(params)).arch_id == arch.arch_id


def test_every_sample_is_buildable_and_round_trips(space_dict, shape):
    space = parse_space(space_dict)
    for seed in range(30):
        arch = space.sample(RandomSuggester(seed))
        assert structural_problem(arch) == ""
        assert ArchConfig.from_dict(arch.to_dict()) == arch
        assert estimate_cost(arch, shape).flops > 0


# --- size ---------------------------------------------------------------------------
OVERLAPPING = {
    "layers": [1, 2],
    "d_model": 8,
    "layer": {
        "attention": [
            {"kind": "full", "heads": [1, 2]},
            {"kind": "sliding_window", "heads": 2, "window": [2, 3]},
            {"kind": "full", "heads": [2, 4]},              # overlaps heads=2 above
        ],
        "ffn": [
            {"kind": "dense", "expansion": [1, 2]},
            {"kind": "moe", "experts": [2, 3], "top_k": [1, 2], "router": ["topk", "dynamic"],
             "top_p": [0.5, 0.9]},
            {"kind": "moe", "experts": 3, "top_k": 1, "router": "dynamic",
             "top_p": [0.9, 1.0]},                          # overlaps one arch above
        ],
    },
}


@pytest.mark.parametrize("spec", [OVERLAPPING, "quickstart"], ids=["overlapping", "quickstart"])
def test_size_counts_distinct_architectures_like_brute_force(spec):
    if spec == "quickstart":
        spec = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())["space"]
        spec["layers"] = [1]  # keep the enumeration small; per-layer counting is the point
    space = parse_space(spec)
    ids = {arch.arch_id for arch in enumerate_all(space)}
    assert space.size() == len(ids)


def test_size_formula_on_the_design_example(space_dict):
    # per layer: attention 2 + 2 + 1 = 5; ffn: dense 2 + moe 2*2*(1 topk + 2 dynamic top_p)*2*2*2
    per_layer = 5 * (2 + 2 * 2 * 3 * 2 * 2 * 2)
    assert parse_space(space_dict).size() == 2 * (per_layer + per_layer ** 2 + per_layer ** 3)


# --- a real Optuna trial is a suggester ---------------------------------------------
def test_optuna_study_drives_the_space(space_dict, shape):
    optuna.logging.set_verbosity(logging.WARNING)
    space = parse_space(space_dict)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=3))

    def objective(trial):
        arch = space.sample(trial)
        trial.set_user_attr("arch_id", arch.arch_id)
        return estimate_cost(arch, shape).flops

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a distribution changing under one name
        study.optimize(objective, n_trials=8)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert_asked_in_order(space, t.params)
        assert space.sample(FixedSuggester(t.params)).arch_id == t.user_attrs["arch_id"]


def test_optuna_ask_tell_on_a_plain_space():
    optuna.logging.set_verbosity(logging.WARNING)
    space = parse_space(yaml.safe_load((EXAMPLES / "plain_space.yaml").read_text())["space"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(5):
        trial = study.ask()
        cand = space.sample(trial)
        assert cand.to_dict()["width"] in range(16, 129, 16)
        study.tell(trial, float(cand.to_dict()["width"]))
    assert len(study.trials) == 5


# --- the plain space ----------------------------------------------------------------
def test_plain_space_samples_assignments():
    space = parse_space({"decisions": {"opt": ["adam", "sgd"], "width": {"low": 16, "high": 64, "step": 16},
                                       "seed": 7}})
    assert isinstance(space, DecisionSpace) and isinstance(space, Space)
    assert [(d.name, d.kind) for d in space.decisions()] == [("opt", "categorical"), ("width", "int")]
    assert list(space.decisions()[1].options) == [16, 32, 48, 64]
    assert space.size() == 8
    rec = RecordingSuggester(RandomSuggester(0))
    cand = space.sample(rec)
    assert isinstance(cand, Assignment) and list(rec.params) == ["opt", "width"]
    assert cand.to_dict()["seed"] == 7
    assert space.sample(FixedSuggester(rec.params)).arch_id == cand.arch_id
    assert len({a.arch_id for a in enumerate_all(space)}) == space.size()


def test_huge_int_range_stays_lazy():
    space = parse_space({"decisions": {"seed": {"low": 0, "high": 2 ** 62}}})
    assert space.size() == 2 ** 62 + 1
    assert 0 <= space.sample(RandomSuggester(0)).to_dict()["seed"] <= 2 ** 62
