"""Weights out: a trained model folder (bundle) reloads, predicts raw inputs with the
task's own preprocessing and matches the recorded accuracy; ``--init-from`` transfers
what fits; bad bundles are one-line errors that change nothing."""
import json
import shutil

import pytest
import torch

from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import TaskSettings, TrainingSettings
from dynas.trainers.bundle import (MODEL_FILE, WEIGHTS_FILE, load_bundle_model, read_bundle, read_weights,
                                   rebuild_task)
from dynas.trainers.downstream import train_arch
from dynas.trainers.predict import load_model
from dynas.trainers.tasks import build_task

ARCH = ArchConfig(16, (LayerConfig(
    AttentionConfig("full", 2),
    FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 1), balance="bias")),))
DIGITS = TaskSettings("split_digits", {"classes_per_experience": 5})
CFG = TrainingSettings(steps_per_experience=80, batch_size=32, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    metrics = train_arch(ARCH, DIGITS, CFG, out_dir=out)
    return out, metrics


def test_predicting_the_raw_test_split_matches_the_recorded_accuracy(trained):
    out, metrics = trained
    predictor = load_model(out)
    task = build_task(DIGITS, seed=CFG.seed)
    for j, exp in enumerate(task.experiences):
        labels = exp.test.tensors[1]
        pred = predictor.predict(exp.raw_test)                         # raw pixels 0..16 in
        assert pred.logits.shape == (len(labels), 10)
        assert int((pred.classes == labels).sum()) / len(labels) == pytest.approx(metrics.test_acc_matrix[-1][j], abs=1e-12)
    assert max(metrics.test_acc_matrix[-1]) > 0.4                             # it learned something


def test_the_experience_restricts_predictions_to_its_classes(trained):
    predictor = load_model(trained[0])
    exp = build_task(DIGITS, seed=CFG.seed).experiences[1]
    pred = predictor.predict(exp.raw_test, experience=1)
    assert set(pred.classes.unique().tolist()) <= set(exp.classes)
    assert torch.isinf(pred.logits[:, list(range(5))]).all()
    with pytest.raises(DynasError, match="experience 2: the model knows experiences 0..1"):
        predictor.predict(exp.raw_test, experience=2)


def test_latency_is_measured_and_kept_with_the_weights(trained):
    out, metrics = trained
    assert metrics.values[names.LATENCY_MS] > 0
    assert json.loads((out / MODEL_FILE).read_text())["metrics"][names.LATENCY_MS] == metrics.values[names.LATENCY_MS]


def test_init_from_on_another_task_reinitialises_what_does_not_fit(trained, tmp_path):
    out, _ = trained
    other = TaskSettings("split_digits", {"classes_per_experience": 5, "patch": 4})   # 4 tokens of 16
    fine = train_arch(ARCH, other, TrainingSettings(steps_per_experience=1, batch_size=8, device="cpu", lr=1e-9),
                      out_dir=tmp_path / "fine", init_from=out)
    record = json.loads((tmp_path / "fine" / "metrics.json").read_text())
    assert [r.split()[0] for r in record["init_from"]["reinitialised"]] == ["embed", "positions"]
    source, tuned = read_weights(out / WEIGHTS_FILE), read_weights(tmp_path / "fine" / WEIGHTS_FILE)
    for key in ("layers.0.attn.proj.qkv.weight", "layers.0.ffn.experts.w_up", "norm.weight", "head.weight"):
        assert torch.allclose(source[key], tuned[key], atol=1e-5), key   # transferred; lr=1e-9 keeps them
    assert source["embed.weight"].shape != tuned["embed.weight"].shape
    assert fine.steps == 2


def test_the_folder_keeps_the_task_options_and_seed_so_its_task_rebuilds(trained):
    bundle = read_bundle(trained[0])
    assert bundle.task_options == {"classes_per_experience": 5} and bundle.task_seed == CFG.seed
    again, original = rebuild_task(bundle), build_task(DIGITS, seed=CFG.seed)
    assert again.shape == bundle.shape and again.num_experiences == 2
    for a, b in zip(again.experiences, original.experiences):
        assert all(torch.equal(x, y) for x, y in zip(a.val.tensors, b.val.tensors))


def test_a_folder_from_before_the_options_were_kept_still_loads_but_cannot_rebuild(trained, tmp_path):
    old = _copy(trained[0], tmp_path / "old")
    meta = json.loads((old / MODEL_FILE).read_text())
    del meta["task_options"], meta["task_seed"]
    (old / MODEL_FILE).write_text(json.dumps(meta))
    model, bundle = load_bundle_model(old)
    assert bundle.task_options is None and bundle.task_seed is None
    with pytest.raises(DynasError, match="model.json: task_options: missing"):
        rebuild_task(bundle)
    meta["task_options"] = "classes_per_experience=5"
    (old / MODEL_FILE).write_text(json.dumps(meta))
    with pytest.raises(DynasError, match="model.json: task_options: must be a mapping or null"):
        read_bundle(old)


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / WEIGHTS_FILE).unlink(), "weights.safetensors: missing"),
    (lambda d: (d / WEIGHTS_FILE).write_bytes(b"\x00" * 64), "not a safetensors file"),
    (lambda d: __import__("safetensors.torch").torch.save_file({"x": torch.zeros(1)}, str(d / WEIGHTS_FILE)),
     "not a dynas weights file"),
    (lambda d: _save_other_shape(d), r"key head.weight: shape \(3, 16\) does not fit \(10, 16\)"),
    (lambda d: (d / MODEL_FILE).write_text("{"), "model.json: not valid JSON"),
])
def test_a_broken_bundle_is_one_line(trained, tmp_path, damage, match):
    broken = _copy(trained[0], tmp_path / "broken")
    damage(broken)
    with pytest.raises(DynasError, match=match):
        load_bundle_model(broken)


def test_a_compressed_bundle_needs_its_registered_rebuild(trained, tmp_path, monkeypatch):
    from dynas.trainers import bundle

    marked = _copy(trained[0], tmp_path / "marked")
    (marked / bundle.COMPRESSED_MARK).write_text("{}")
    monkeypatch.delitem(bundle._REBUILDS, bundle.COMPRESSED_MARK)      # trainers.compress not imported
    with pytest.raises(DynasError, match="compress.json: a model folder of another kind"):
        load_bundle_model(marked)


def _save_other_shape(folder):
    from safetensors.torch import save_file

    tensors = read_weights(folder / WEIGHTS_FILE)
    tensors["head.weight"] = torch.zeros(3, 16)
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format": "dynas-weights", "arch_id": ARCH.arch_id})


def test_init_from_another_architecture_is_refused_before_anything_is_written(trained, tmp_path):
    other = ArchConfig(32, ARCH.layers)
    out = tmp_path / "never"
    with pytest.raises(DynasError, match=f"holds architecture {ARCH.arch_id}, not {other.arch_id}"):
        train_arch(other, DIGITS, CFG, out_dir=out, init_from=trained[0])
    assert not out.exists()


def test_cli_init_from_a_broken_folder_is_exit_2_and_keeps_the_output(trained, tmp_path, capsys):
    from dynas.analysis.cli import main

    broken = _copy(trained[0], tmp_path / "broken")
    (broken / WEIGHTS_FILE).unlink()
    (tmp_path / "exp.yaml").write_text(
        "space: {layers: [1], d_model: [16], layer: {attention: [{kind: full, heads: [2]}], "
        "ffn: [{kind: dense, expansion: [2]}]}}\ntask: {name: split_digits, options: {classes_per_experience: 5}}\n")
    out = _copy(trained[0], tmp_path / "out")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    code = main(["train", "--init-from", str(broken), "--config", str(tmp_path / "exp.yaml"),
                 "--out", str(out), "--force"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "weights.safetensors: missing" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
