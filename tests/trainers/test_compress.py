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


def test_qat_and_latency_batches_show_in_the_table(trained, tmp_path, capsys):
    out = tmp_path / "qat"
    assert main(["compress", str(trained), "--config", str(trained.parent / "exp.yaml"), "--qat", "--qat-steps", "5",
                 "--latency-batches", "2", "3", "--repeats", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| model | params | file KB | batch-2 ms | batch-3 ms | accuracy |" in printed
    meta = json.loads((out / "compress.json").read_text())
    assert meta["int8"] and [r["name"] for r in meta["table"]] == ["original", "5 QAT steps + int8"]
    assert set(meta["table"][-1]["latency_ms"]) == {"2", "3"}
    small = load_model(out)
    assert accuracy(small.model, build_task(TASK, seed=0), "class_il", 10) == pytest.approx(
        meta["table"][-1]["accuracy"], abs=1e-12)


def test_a_folder_of_the_old_torch_ao_int8_format_is_one_line(trained, tmp_path, capsys):
    """Folders written before torchao (int8: true, .weight_int8 / .weight_scale /
    .weight_zero_point per Linear) are refused with the command that re-makes them."""
    from safetensors.torch import save_file

    from dynas.trainers.bundle import ARCH_FILE, MODEL_FILE, WEIGHTS_FILE, WEIGHTS_MAGIC

    old = tmp_path / "old"
    old.mkdir()
    for name in (ARCH_FILE, MODEL_FILE):
        (old / name).write_bytes((trained / name).read_bytes())
    model = load_model(trained).model
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    for name, m in model.named_modules():
        if type(m) is torch.nn.Linear:
            del tensors[f"{name}.weight"]
            scale = float(m.weight.detach().abs().max()) / 127
            tensors[f"{name}.weight_int8"] = (m.weight.detach() / scale).round().to(torch.int8)
            tensors[f"{name}.weight_scale"] = torch.tensor([scale], dtype=torch.float64)
            tensors[f"{name}.weight_zero_point"] = torch.tensor([0])
    save_file(tensors, str(old / WEIGHTS_FILE), metadata={"format": WEIGHTS_MAGIC, "arch_id": ARCH.arch_id})
    (old / "compress.json").write_text(json.dumps({"plan": [{}, {}], "int8": True, "source": str(trained),
                                                   "table": []}))
    assert main(["portable", str(old), "--out", str(tmp_path / "m.pt2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "earlier dynas versions" in err
    assert f"dynas compress {trained} --int8 --out" in err


@pytest.mark.parametrize("extra, option", [(["--qat", "--qat-steps", "0"], "--qat-steps"),
                                           (["--int8", "--latency-batches", "1", "0"], "--latency-batches")])
def test_bad_qat_and_latency_options_are_one_line(trained, tmp_path, capsys, extra, option):
    assert main(["compress", str(trained), *extra, "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and option in err and not (tmp_path / "q").exists()
