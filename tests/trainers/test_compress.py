"""dynas compress: pruning cuts what it says by the rule it says, recovery and int8
keep a loadable model whose accuracy is the table's, bad specs are exit 2."""
import json

import pytest
import torch

from dynas.analysis.cli import main
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import TaskSettings, TrainingSettings
from dynas.trainers.compress import accuracy, count_params
from dynas.trainers.downstream import train_arch
from dynas.trainers.predict import load_model
from dynas.trainers.pruning import PruneSpec, apply_plan, make_plan
from dynas.trainers.tasks import build_task

TASK = TaskSettings("split_digits", {"classes_per_experience": 5, "patch": 4})
ARCH = ArchConfig(16, (
    LayerConfig(AttentionConfig("full", 4), FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2))),
    LayerConfig(AttentionConfig("dynamic_span", 4, max_span=4), FFNConfig("dense", expansion=4)),
))
EXPERIMENT = """
space: {layers: [1], d_model: [16], layer: {attention: [{kind: full, heads: [2]}], ffn: [{kind: dense, expansion: [2]}]}}
task: {name: split_digits, options: {classes_per_experience: 5, patch: 4}}
training: {steps_per_experience: 20, batch_size: 32, device: cpu}
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    train_arch(ARCH, TASK, TrainingSettings(steps_per_experience=20, batch_size=32, device="cpu"), out_dir=out)
    (out.parent / "exp.yaml").write_text(EXPERIMENT)
    return out


def test_plan_keeps_the_most_loaded_experts_and_cuts_shapes(trained):
    model = load_model(trained).model
    loads = {"layers.0.ffn": torch.tensor([5.0, 1.0, 9.0, 0.0])}
    plan = make_plan(model, PruneSpec(experts=2, heads=2, ffn=0.5), loads)
    assert plan[0]["experts"] == [0, 2] and len(plan[0]["heads"]) == 2 and len(plan[1]["heads"]) == 2
    assert [len(c) for c in plan[0]["ffn"]] == [16, 16] and len(plan[1]["ffn"]) == 32
    x = torch.randn(3, 4, 16)
    apply_plan(model, plan)
    assert model.layers[0].ffn.experts.w_up.shape == (2, 16, 16)
    assert model.layers[0].ffn.router.gate.weight.shape == (2, 16)
    assert model.layers[1].attn.proj.qkv.weight.shape == (3 * 2 * 4, 16)
    assert model.layers[1].attn.span_fraction.shape == (2,)
    assert model.layers[1].ffn.up.weight.shape == (32, 16)
    assert model(x).logits.shape == (3, 10)


def test_compress_writes_a_loadable_model_with_the_tables_accuracy(trained, tmp_path, capsys):
    out = tmp_path / "small"
    argv = ["compress", str(trained), "--config", str(trained.parent / "exp.yaml"), "--prune",
            "experts=2,heads=2,ffn=0.5", "--int8", "--recover-steps", "5", "--prune-rounds", "2", "--repeats", "2",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| pruned + 10 recovery steps + int8 |" in printed
    rows = json.loads((out / "compress.json").read_text())["table"]
    assert [r["name"] for r in rows] == ["original", "pruned", "pruned + 10 recovery steps",
                                         "pruned + 10 recovery steps + int8"]
    assert json.loads((out / "compress.json").read_text())["recovery"]["rounds"] == 2
    assert rows[-1]["file_bytes"] < rows[0]["file_bytes"] / 2 and rows[-1]["params"] < rows[0]["params"]
    small = load_model(out)
    task = build_task(TASK, seed=0)
    assert accuracy(small.model, task, "class_il", 10) == pytest.approx(rows[-1]["accuracy"], abs=1e-12)
    assert count_params(small.model) == rows[-1]["params"]
    assert main(argv) == 2 and "exists; pass --force" in capsys.readouterr().err      # nothing overwritten


@pytest.mark.parametrize("text", ["experts=x", "bogus=1", "ffn=1.5", "heads"])
def test_bad_prune_specs_name_the_option(text):
    with pytest.raises(ConfigError, match="--prune"):
        PruneSpec.parse(text)


def test_int8_needs_no_config_when_the_tasks_defaults_fit(tmp_path, capsys):
    """Without --config the model folder's task is built with its default options."""
    plain = tmp_path / "plain"
    train_arch(ARCH, TaskSettings("split_digits"), TrainingSettings(steps_per_experience=2, batch_size=32,
                                                                    device="cpu"), out_dir=plain)
    assert main(["compress", str(plain), "--int8", "--repeats", "1", "--out", str(tmp_path / "q")]) == 0
    assert "| int8 |" in capsys.readouterr().out and load_model(tmp_path / "q")


def test_without_config_other_task_options_are_one_line(trained, tmp_path, capsys):
    assert main(["compress", str(trained), "--int8", "--repeats", "1", "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--config" in err and "trained on split_digits with other options" in err
