"""The kind registries: an unknown kind is named with its key wherever a config names
it, and a kind registered from outside the package is parsed, sampled, costed and
described like a built-in one. (Every registered kind has a test case, and lookups and
double registration fail in one line: ``tests/test_registries.py``, for every registry.)"""
from __future__ import annotations

import pytest

from dynas.search_space import kinds
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import estimate_cost
from dynas.search_space.errors import ConfigError
from dynas.search_space.kinds import ATTENTION, KindSpec, Part
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester
from tests.kind_cases import ROUTER_CASES


def test_unknown_kind_is_one_line_naming_the_known_ones():
    with pytest.raises(ConfigError) as err:
        ATTENTION.get("flash", "layers[0].attention.kind")
    assert str(err.value) == ("layers[0].attention.kind: unknown attention kind 'flash'; known attention kinds: "
                              + ", ".join(ATTENTION.names()))
    with pytest.raises(ConfigError, match=r"layers\[0\]\.ffn\.router: unknown router kind 'softmax'"):
        ArchConfig.from_dict({"d_model": 8, "layers": [{
            "attention": {"kind": "full", "heads": 2},
            "ffn": {"kind": "moe", "experts": 2, "router": {"kind": "softmax"}}}]})


@pytest.fixture
def plugin_kind():
    """A kind registered from outside the package, as a plugin would (removed after)."""
    spec = KindSpec("half_full", lambda v: AttentionConfig("half_full", **v),
                    cost=lambda a, d, t, causal: ATTENTION.get("full").cost(a, d, t, causal) + Part(),
                    label=lambda a: f"half_full(h={a.heads})", short=lambda a: "half",
                    fields=ATTENTION.get("full").fields)
    kinds.register_attention(spec)
    yield spec
    ATTENTION.unregister("half_full")
    assert "half_full" not in ATTENTION


def test_a_plugin_kind_goes_through_the_space_cost_and_describers(plugin_kind):
    space = parse_space({"layers": [1], "d_model": [8], "layer": {
        "attention": [{"kind": "half_full", "heads": [2, 4]}, {"kind": "full", "heads": 2}],
        "ffn": {"kind": "dense", "expansion": 2}}})
    assert space.size() == 3
    arch = ArchConfig(8, (LayerConfig(AttentionConfig("half_full", 2), FFNConfig("dense", 2)),))
    shape = TaskShape(4, 2, input_dim=3)
    full = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),))
    assert estimate_cost(arch, shape) == estimate_cost(full, shape)
    assert "half_full(h=2)" in arch.describe() and arch.summary() == "d8 | half+dense x2"
    assert ArchConfig.from_dict(arch.to_dict()) == arch
    assert space.sample(RandomSuggester(0)).layers[0].attention.kind in {"half_full", "full"}


def test_new_fields_at_their_default_are_left_out_of_the_json():
    """``expert`` arrived after schema 1: old arch files keep their arch_id."""
    ffn = FFNConfig("moe", 2, 4, ROUTER_CASES["topk"], 0, 0.0, "aux_loss")
    arch = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2), ffn),))
    assert "expert" not in arch.to_dict()["layers"][0]["ffn"]
    glu = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2),
                                     FFNConfig("moe", 2, 4, ffn.router, 0, 0.0, "aux_loss",
                                               expert="glu")),))
    assert glu.to_dict()["layers"][0]["ffn"]["expert"] == "glu"
    assert ArchConfig.from_dict(glu.to_dict()) == glu and glu.arch_id != arch.arch_id


def test_identity_and_glu_in_a_space():
    space = parse_space({"layers": [2], "d_model": [8], "layer": {
        "attention": [{"kind": "identity"}, {"kind": "full", "heads": [2]}],
        "ffn": [{"kind": "glu", "expansion": [2, 4]},
                {"kind": "moe", "experts": 4, "top_k": 2, "expert": ["dense", "glu"]}]}})
    assert space.size() == (2 * 4) ** 2
    names = [d.name for d in space.decisions()]
    assert "layer0.ffn.moe.expert" in names and "layer0.attention.identity.heads" not in names
    kinds_seen = {(l.attention.kind, l.ffn.kind, l.ffn.expert)
                  for seed in range(30) for l in space.sample(RandomSuggester(seed)).layers}
    assert {k[0] for k in kinds_seen} == {"identity", "full"}
    assert {k[2] for k in kinds_seen if k[1] == "moe"} == {"dense", "glu"}
    with pytest.raises(ConfigError, match=r"expert\[1\]: 'mlp' is not one of dense, glu"):
        parse_space({"layers": [1], "d_model": [8], "layer": {
            "attention": {"kind": "identity"},
            "ffn": {"kind": "moe", "experts": 2, "top_k": 1, "expert": ["glu", "mlp"]}}})


def test_identity_has_one_canonical_config():
    with pytest.raises(ConfigError, match="identity has no heads"):
        AttentionConfig("identity", 2).validate("a")


# Written by dynas before kind specs (commit d5b6441), with the arch_id it had then.
OLD_ARCH_JSON = (
    '{"d_model":64,"layers":[{"attention":{"heads":4,"kind":"full","max_span":0,"window":0},'
    '"ffn":{"balance":"aux_loss","capacity_factor":1.25,"expansion":2,"experts":4,"kind":"moe",'
    '"router":{"kind":"dynamic","top_k":2,"top_p":0.5},"shared_experts":1}},{"attention":'
    '{"heads":2,"kind":"dynamic_span","max_span":8,"window":0},"ffn":{"balance":"bias",'
    '"capacity_factor":0.0,"expansion":2,"experts":4,"kind":"moe","router":{"kind":"topk",'
    '"top_k":1,"top_p":0.5},"shared_experts":1}}],"schema_version":1}')


def test_an_old_arch_file_loads_with_its_old_arch_id(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(OLD_ARCH_JSON)
    arch = ArchConfig.load(path)
    assert arch.arch_id == "2424938ad01b" and arch.to_json() == OLD_ARCH_JSON
    assert arch.layers[0].ffn.expert == "dense"
