"""ArchConfig JSON: round trips, a stable id, and corrupt files fail naming the file."""
import json

import pytest

from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                               replace_layer)
from dynas.search_space.errors import ConfigError
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester

REFERENCE = ArchConfig(
    d_model=32,
    layers=(
        LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2)),
        LayerConfig(AttentionConfig("sliding_window", 2, window=4),
                    FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("dynamic", 2, 0.5),
                              shared_experts=1, capacity_factor=1.25, balance="bias")),
    ),
)
# Pinned: an arch_id must not change across versions, or de-duplication of records and
# resumed searches silently break. Change only together with SCHEMA_VERSION.
REFERENCE_ID = "8bf5c1491cd6"


def test_arch_id_is_pinned():
    assert REFERENCE.arch_id == REFERENCE_ID


def test_arch_id_ignores_construction_order_but_not_content():
    same = ArchConfig.from_dict(json.loads(json.dumps(REFERENCE.to_dict())))
    assert same.arch_id == REFERENCE.arch_id
    other = replace_layer(REFERENCE, 0, ffn=FFNConfig("dense", expansion=4))
    assert other.arch_id != REFERENCE.arch_id


def test_sampled_archs_round_trip_through_files(space_dict, tmp_path):
    space = parse_space(space_dict)
    for seed in range(10):
        arch = space.sample(RandomSuggester(seed))
        path = arch.save(tmp_path / f"{seed}.json")
        loaded = ArchConfig.load(path)
        assert loaded == arch and loaded.arch_id == arch.arch_id
        assert ArchConfig.from_dict(arch.to_dict()) == arch


def test_export_with_an_arch_entry_loads(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"arch": REFERENCE.to_dict(), "metrics": {"flops": 1.0}}))
    assert ArchConfig.load(path) == REFERENCE


def test_truncated_file_names_the_file(tmp_path):
    path = REFERENCE.save(tmp_path / "arch.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ConfigError) as info:
        ArchConfig.load(path)
    assert str(info.value).startswith(f"{path}: not valid JSON (")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("payload, message", [
    ("[1, 2]", "expected a mapping, got [1, 2]"),
    ('{"d_model": 32}', "layers: missing required key"),
    ('{"d_model": 30, "layers": [{"attention": {"kind": "full", "heads": 4}, "ffn": {"kind": "dense"}}]}',
     "layers[0].attention.heads: 4 does not divide d_model=30"),
    ('{"d_model": 32, "layers": [], "schema_version": 9}',
     "schema_version: unsupported version 9 (this dynas reads 1)"),
    ('{"d_model": 32, "layers": [{"attention": {"kind": "flash", "heads": 4}, "ffn": {"kind": "dense"}}]}',
     "layers[0].attention.kind: unknown attention kind 'flash'; known attention kinds: full, sliding_window, "
     "dynamic_span, linear, identity"),
])
def test_wrong_structure_names_file_and_key(tmp_path, payload, message):
    path = tmp_path / "arch.json"
    path.write_text(payload)
    with pytest.raises(ConfigError) as info:
        ArchConfig.load(path)
    assert str(info.value) == f"{path}: {message}"


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(ConfigError, match="no such architecture file"):
        ArchConfig.load(tmp_path / "nope.json")
    path = tmp_path / "bin.json"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"bin\.json: not valid JSON"):
        ArchConfig.load(path)
