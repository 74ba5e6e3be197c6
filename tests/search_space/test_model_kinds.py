"""The whole-model kinds (tokens, stem, norm, head) and the reference models on the
torch-free side: spaces, arch JSON, cost, errors."""
from __future__ import annotations

import dataclasses

import pytest

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import block_tokens, estimate_cost
from dynas.search_space.errors import ConfigError
from dynas.search_space.reference import MLPReference, model_from_dict, parse_reference
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester
from tests.kind_cases import all_model_kinds

DIGITS = TaskShape(seq_len=16, num_classes=10, input_dim=4, image_side=8)
LAYER = LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2))


def test_defaults_are_left_out_so_old_archs_keep_their_id():
    plain = ArchConfig(32, (LAYER,))
    assert set(plain.to_dict()) == {"d_model", "layers", "schema_version"}
    assert plain.summary() == "d32 | full+dense x2"


@pytest.mark.parametrize("family,kind", all_model_kinds())
def test_each_kind_round_trips_and_a_non_default_changes_the_id(family, kind):
    arch = ArchConfig(32, (LAYER,), **{family: kind})
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    default = dataclasses.fields(ArchConfig)[[f.name for f in dataclasses.fields(ArchConfig)].index(family)].default
    assert (arch.arch_id == ArchConfig(32, (LAYER,)).arch_id) == (kind == default)


@pytest.mark.parametrize("tokens,expected", [("task", (16, 4)), ("rows", (8, 8)), ("patch2", (16, 4)),
                                             ("patch4", (4, 16)), ("whole", (1, 64))])
def test_tokens_recut_the_image(tokens, expected):
    t, width, seen = block_tokens(ArchConfig(32, (LAYER,), tokens=tokens), DIGITS)
    assert (t, width) == expected and seen == t
    assert block_tokens(ArchConfig(32, (LAYER,), tokens=tokens, head="cls"), DIGITS)[2] == t + 1


def test_kinds_a_task_cannot_take_are_one_line_errors():
    tokens = TaskShape(seq_len=12, num_classes=5, vocab_size=7, per_token=True)
    with pytest.raises(ConfigError, match="tokens: rows tokens need an image task"):
        estimate_cost(ArchConfig(32, (LAYER,), tokens="rows"), tokens)
    with pytest.raises(ConfigError, match="head: cls head needs one label per sample"):
        estimate_cost(ArchConfig(32, (LAYER,), head="cls"), tokens)
    with pytest.raises(ConfigError, match="patch4 does not divide the image side 6"):
        estimate_cost(ArchConfig(32, (LAYER,), tokens="patch4"),
                      TaskShape(seq_len=9, num_classes=3, input_dim=4, image_side=6))
    with pytest.raises(ConfigError, match="head: unknown head kind 'max'; known head kinds: mean, cls, flatten"):
        ArchConfig(32, (LAYER,), head="max").validate()


def test_a_space_lists_model_kinds_as_decisions():
    space = parse_space({"layers": [1, 2], "d_model": 32, "tokens": ["patch2", "whole"],
                         "head": ["mean", "flatten"], "norm": "post", "stem": ["linear", "mlp"],
                         "layer": {"attention": [{"kind": "full", "heads": 2}, {"kind": "identity"}],
                                   "ffn": {"kind": "dense", "expansion": 2}}})
    names = [d.name for d in space.decisions()]
    assert names[:5] == ["layers", "tokens", "stem", "head", "layer0.attention"]
    assert space.size() == 2 * 2 * 2 * (2 + 4)
    archs = {space.sample(RandomSuggester(s)) for s in range(40)}
    assert {a.tokens for a in archs} == {"patch2", "whole"} and {a.norm for a in archs} == {"post"}
    with pytest.raises(ConfigError, match=r"space.stem\[1\]: 'conv' is not one of linear, mlp"):
        parse_space({"layers": 1, "d_model": 32, "stem": ["linear", "conv"],
                     "layer": {"attention": {"kind": "identity"}, "ffn": {"kind": "dense"}}})


def test_reference_mlp_is_parsed_costed_and_round_trips():
    ref = parse_reference("mlp:400x2", "search.baselines[0]")
    assert ref == MLPReference(400, 2) and model_from_dict(ref.to_dict()) == ref
    cost = estimate_cost(ref, DIGITS)
    assert cost.params == 64 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10
    assert cost.flops == 2 * (64 * 400 + 400 * 400 + 400 * 10)
    assert model_from_dict(ArchConfig(32, (LAYER,)).to_dict()) == ArchConfig(32, (LAYER,))


@pytest.mark.parametrize("text,message", [
    ("mlp:400", "unknown reference model 'mlp:400'; known: mlp:WIDTHxDEPTH"),
    ("resnet18", "unknown reference model 'resnet18'"),
    ("mlp:0x2", "width: must be in"),
    ("mlp:400x1000", "depth: must be in"),
])
def test_bad_reference_names_are_one_line_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_reference(text, "search.baselines[0]")


def test_training_lists_become_per_trial_decisions_recorded_with_the_arch():
    from dynas.search_space.experiment import parse_experiment

    exp = parse_experiment({"space": {"layers": 1, "d_model": 16, "layer": {
        "attention": {"kind": "identity"}, "ffn": {"kind": "dense"}}},
        "training": {"lr": [0.001, 0.003], "dropout": [0, 0.1], "weight_decay": [0.01]}})
    assert exp.training.weight_decay == 0.01                   # a one-item list is fixed
    assert [d.name for d in exp.space.decisions()] == ["training.lr", "training.dropout"]
    assert exp.space.size() == 4
    archs = {exp.space.sample(RandomSuggester(s)) for s in range(30)}
    assert {(a.training.lr, a.training.dropout) for a in archs} == {
        (0.001, 0.0), (0.001, 0.1), (0.003, 0.0), (0.003, 0.1)}
    assert len({a.arch_id for a in archs}) == 4               # another lr is another trial
    arch = next(iter(archs))
    assert ArchConfig.from_dict(arch.to_dict()) == arch and "lr=" in arch.summary()


@pytest.mark.parametrize("training,message", [
    ({"lr": [0.001, -1]}, r"training.lr\[1\]: must be > 0"),
    ({"dropout": [0, 1.5]}, r"training.dropout\[1\]: must be < 1, got 1.5"),
    ({"batch_size": [16, "x"]}, r"training.batch_size\[1\]: expected an integer"),
    ({"steps_per_experience": [1, 2]}, "training.steps_per_experience: expected an integer"),
])
def test_bad_training_lists_name_the_key(training, message):
    from dynas.search_space.experiment import parse_experiment

    with pytest.raises(ConfigError, match=message):
        parse_experiment({"space": {"layers": 1, "d_model": 16, "layer": {
            "attention": {"kind": "identity"}, "ffn": {"kind": "dense"}}}, "training": training})


def test_a_cls_head_without_any_token_mixing_is_infeasible():
    from dynas.search_space.constraints import is_feasible

    skip = LayerConfig(AttentionConfig("identity", 1), FFNConfig("dense", 2))
    ok, why = is_feasible(ArchConfig(32, (skip, skip), head="cls"), DIGITS, None)
    assert not ok and "head: cls reads a token that only attention mixes" in why
    assert is_feasible(ArchConfig(32, (skip, LAYER), head="cls"), DIGITS, None) == (True, "")
