"""A plugin attention kind with a field of its own: ``examples/plugins/conv_mixer.py``.

The kind declares ``kernel`` (type, range, default) and no heads; the config keeps
it in ``extra``, its cost and builder read it there, and its cost is the module's
(parameters exactly, FLOPs as FlopCounterMode counts them). ``space validate`` builds
every kind combination a space allows, so a plugin kind that cannot take its own
fields, or whose cost breaks on one of them, is one line naming the option, exit 2,
before any sample (issue 25, item 4). The search on the loopback cluster is in
``tests/controllers/test_cluster.py``.
"""
from __future__ import annotations

import math

import pytest
import torch

from dynas.analysis.cli import main
from dynas.search_space import plugins
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, TaskShape
from dynas.search_space.cost import estimate_cost
from dynas.search_space.choices import Field
from dynas.search_space.errors import ConfigError
from dynas.search_space.kinds import KindSpec
from dynas.search_space.experiment import load_experiment
from dynas.search_space.settings import ReplaySettings, TaskSettings, TrainingSettings
from dynas.search_space.suggest import RandomSuggester

from tests.test_plugins import REPO, registries, write  # noqa: F401  (the fixture puts registries back)

EXAMPLES = REPO / "examples" / "plugins"
EXAMPLE = EXAMPLES / "conv_search.yaml"


@pytest.fixture
def conv():
    plugins.load_plugins([str(EXAMPLES / "conv_mixer.py"), str(EXAMPLES / "wine_task.py")])


def conv_arch(kernel: int, d: int = 16) -> ArchConfig:
    return ArchConfig(d, (LayerConfig(AttentionConfig("conv_mixer", extra={"kernel": kernel}),
                                      FFNConfig("dense", 2)),
                          LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2))))


def test_the_kind_declares_its_own_field_and_needs_no_heads(conv, tmp_path):
    space = load_experiment(EXAMPLE).space
    (option, _) = space.attention
    assert option.values == (("kernel", (3, 5)),)                 # no heads asked
    rng = RandomSuggester(0)
    layers = [l.attention for _ in range(40) for l in space.sample(rng).layers]
    convs = [a for a in layers if a.kind == "conv_mixer"]
    assert {a.extra["kernel"] for a in convs} == {3, 5} and {a.heads for a in convs} == {1}
    assert all(a.extra is None for a in layers if a.kind == "full")
    arch = conv_arch(5)
    assert arch.to_dict()["layers"][0]["attention"]["extra"] == {"kernel": 5}
    assert "extra" not in arch.to_dict()["layers"][1]["attention"]   # built-in JSON unchanged
    again = ArchConfig.load(arch.save(tmp_path / "a.json"))
    assert again == arch and again.arch_id == arch.arch_id and hash(again) == hash(arch)
    assert "conv_mixer(k=5)" in arch.describe() and "conv5+dense" in arch.summary()
    write(tmp_path / "d.yaml", f"""
        plugins: [{EXAMPLES / 'conv_mixer.py'}]
        space: {{layers: 1, d_model: 8, layer: {{attention: {{kind: conv_mixer}}, ffn: {{kind: dense}}}}}}
        """)
    fixed = load_experiment(tmp_path / "d.yaml").space.sample(rng)
    assert fixed.layers[0].attention.extra == {"kernel": 3}          # the declared default


@pytest.mark.parametrize("bad, fragment", [
    ({"kernel": 0}, "layers[0].attention.kernel: must be >= 1, got 0"),
    ({"kernel": 3, "dilation": 2}, "layers[0].attention.extra.dilation: kind conv_mixer has no such field"),
    ({}, "layers[0].attention.kernel: missing field of kind conv_mixer"),
])
def test_a_saved_config_is_checked_against_the_declared_fields(conv, bad, fragment):
    data = conv_arch(3).to_dict()
    data["layers"][0]["attention"]["extra"] = bad
    with pytest.raises(ConfigError) as err:
        ArchConfig.from_dict(data)
    assert fragment in str(err.value)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_the_cost_is_the_built_module_and_the_mixer_is_causal(conv, kernel):
    from dynas.trainers.model import build_model
    from dynas.trainers.modules.flops import measured_flops

    shape = TaskShape(seq_len=13, num_classes=3, input_dim=1)
    model, arch = build_model(conv_arch(kernel), shape).eval(), conv_arch(kernel)
    cost = estimate_cost(arch, shape)
    assert cost.params == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 13, 1)
    assert measured_flops(model, x) / 2 == pytest.approx(cost.flops, rel=0.02)   # per sample
    mixer = model.layers[0].attn
    assert type(mixer).__name__ == "ConvMixer"
    h = torch.randn(1, 13, 16)
    later = h.clone()
    later[:, 7:] += 1.0                                   # change only positions 7..12
    with torch.no_grad():
        y, aux = mixer(h)
        y2, _ = mixer(later)
    assert aux == {} and torch.equal(y[:, :7], y2[:, :7]) and not torch.equal(y[:, 7], y2[:, 7])


def test_an_architecture_with_the_kind_trains_in_process(conv):
    from dynas.trainers.fitting import fit
    from dynas.trainers.tasks import build_task

    task = build_task(TaskSettings("split_wine"), seed=0)
    cfg = TrainingSettings(steps_per_experience=4, batch_size=16, device="cpu",
                           replay=ReplaySettings("reservoir", 20))
    measured = fit(conv_arch(3), task, cfg, seed=0)
    assert len(measured.acc_matrix) == 2
    assert all(math.isfinite(v) for row in measured.acc_matrix for v in row)


# --- space validate builds every kind combination ----------------------------------------
# The plugin: a field of its own, handed to AttentionConfig as a keyword.
KEYWORD_KIND = """
from dynas.search_space.arch import AttentionConfig
from dynas.search_space.choices import Field, as_int
from dynas.search_space.kinds import ATTENTION, KindSpec, register_attention
register_attention(KindSpec("keyword_conv", lambda v: AttentionConfig("keyword_conv", **v),
                            cost=ATTENTION.get("full").cost, label=str, short=str,
                            fields=(("kernel", Field(as_int, default=3)),)))
"""
# A kind that is made and checked fine, but whose cost breaks on one of its choices.
BAD_COST_KIND = """
from dynas.search_space.arch import AttentionConfig
from dynas.search_space.choices import Field, as_int
from dynas.search_space.kinds import KindSpec, Part, make_config, register_attention
TABLE = {3: Part(1, 1, 1.0)}
register_attention(KindSpec("table_conv", make_config(AttentionConfig, "table_conv"),
                            cost=lambda a, d, t, causal: TABLE[a.extra["kernel"]], label=str, short=str,
                            fields=(("kernel", Field(as_int, default=3)),)))
"""


@pytest.mark.parametrize("code, attention, fragment", [
    (KEYWORD_KIND, "{kind: keyword_conv, kernel: [3, 5]}",
     "space.layer.attention[0]: kind keyword_conv cannot be made from {'kernel': 3}: TypeError: "),
    (BAD_COST_KIND, "{kind: table_conv, kernel: [3, 5]}",
     "space.layer.attention[0]: kind table_conv+dense fails its cost at d_model=8: KeyError: 5"),
])
def test_validate_names_a_kind_that_cannot_be_built_in_one_line(code, attention, fragment, tmp_path, capsys):
    write(tmp_path / "kind.py", code)
    write(tmp_path / "e.yaml", f"""
        plugins: [kind.py, {EXAMPLES / 'wine_task.py'}]
        space: {{layers: 1, d_model: 8, layer: {{attention: [{attention}], ffn: {{kind: dense}}}}}}
        task: {{name: split_wine}}
        """)
    for command in ("validate", "sample"):
        assert main(["space", command, str(tmp_path / "e.yaml")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert fragment in err, err
        if code is BAD_COST_KIND:
            break                      # its configs are fine: only the cost (validate) sees it


def test_validate_counts_what_it_built(conv, capsys):
    assert main(["space", "validate", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    # (conv_mixer, full) x dense = 2 kind combinations, plus kernel 5's own instance
    assert out.strip().endswith("3 kind combinations built"), out


def test_heads_are_refused_for_the_kind_without_them(conv, tmp_path):
    write(tmp_path / "e.yaml", f"""
        plugins: [{EXAMPLES / 'conv_mixer.py'}]
        space: {{layers: 1, d_model: 8, layer: {{attention: {{kind: conv_mixer, heads: 2}}, ffn: {{kind: dense}}}}}}
        """)
    with pytest.raises(ConfigError, match=r"space\.layer\.attention\.heads: unknown key for kind conv_mixer"):
        load_experiment(tmp_path / "e.yaml")


def test_an_ffn_kind_keeps_its_own_fields_the_same_way():
    from dynas.search_space.choices import as_float
    from dynas.search_space.kinds import FFN, make_config, register_ffn
    from dynas.search_space.space import parse_space

    dense = FFN.get("dense")
    register_ffn(KindSpec("scaled_dense", make_config(FFNConfig, "scaled_dense"), cost=dense.cost,
                          label=str, short=str, fields=dense.fields + (("gain", Field(as_float, default=1.0)),)))
    space = parse_space({"layers": 1, "d_model": 8, "layer": {
        "attention": {"kind": "full", "heads": 2}, "ffn": {"kind": "scaled_dense", "gain": [0.5, 2.0]}}})
    ffns = {space.sample(RandomSuggester(seed)).layers[0].ffn for seed in range(20)}
    assert {(f.expansion, f.extra["gain"]) for f in ffns} == {(4, 0.5), (4, 2.0)}
    arch = ArchConfig(8, (LayerConfig(AttentionConfig("full", 2), ffns.pop()),))
    assert ArchConfig.from_dict(arch.to_dict()) == arch
