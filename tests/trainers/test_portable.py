"""Portable files: a .pt2 (and .onnx when installed) gives the model's logits within
tolerance at another batch size; MoE and unknown formats are one-line refusals."""
import importlib.util

import pytest
import torch

from dynas.analysis.cli import main
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.settings import TaskSettings, TrainingSettings
from dynas.trainers.bundle import load_bundle_model
from dynas.trainers.downstream import train_arch
from dynas.trainers.portable import load_pt2

TASK = TaskSettings("split_digits", {"classes_per_experience": 5, "patch": 4})
CFG = TrainingSettings(steps_per_experience=3, batch_size=16, device="cpu")
DENSE = ArchConfig(16, (LayerConfig(AttentionConfig("sliding_window", 2, window=2), FFNConfig("dense", expansion=2)),))
MOE = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2),
                                  FFNConfig("moe", expansion=2, experts=2, router=RouterConfig("topk", 1))),))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    train_arch(DENSE, TASK, CFG, out_dir=out)
    return out


def onnx_logits(path, x):
    import onnxruntime

    return torch.from_numpy(onnxruntime.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0])


@pytest.mark.parametrize("suffix", [".pt2", pytest.param(".onnx", marks=pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime")),
    reason="onnx, onnxscript and onnxruntime not installed (the onnx extra)"))])
def test_round_trip_matches_the_model(model_dir, tmp_path, suffix, capsys):
    out = tmp_path / f"model{suffix}"
    assert main(["portable", str(model_dir), "--out", str(out)]) == 0
    model, _ = load_bundle_model(model_dir)
    x = torch.randn(7, 4, 16)                         # another batch size than the trace's
    with torch.no_grad():
        expected = model(x).logits
    got = load_pt2(out)(x) if suffix == ".pt2" else onnx_logits(out, x)
    assert got.shape == (7, 10) and torch.allclose(got, expected, atol=1e-5)


def test_refusals_are_one_line(model_dir, tmp_path, capsys):
    moe = tmp_path / "moe"
    train_arch(MOE, TASK, CFG, out_dir=moe)
    for argv, match in (([str(moe), "--out", str(tmp_path / "m.pt2")], "MoE routing has data-dependent shapes"),
                        ([str(model_dir), "--out", str(tmp_path / "m.zip")], "unknown portable format")):
        assert main(["portable", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err
    assert not list(tmp_path.glob("m.*"))
