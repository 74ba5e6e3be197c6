"""``dynas inspect``: a kept model's realised k per token and spans per head for one
input, as PNG and HTML; bad input is one line and exit 2."""
import pytest
from PIL import Image

from dynas.analysis.cli import main
from dynas.search_space.arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig,
                                     RouterConfig)
from dynas.search_space.settings import TaskSettings, TrainingSettings
from dynas.trainers.fitting import fit
from dynas.trainers.tasks import build_task

ARCH = ArchConfig(16, (LayerConfig(AttentionConfig("dynamic_span", 2, max_span=16),
                                   FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("dynamic", 3, 0.6),
                                             capacity_factor=0.0)),))


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    task = build_task(TaskSettings("span_range", {"distances": [3], "seq_len": 16,
                                                  "n_train": 64, "n_val": 16, "n_test": 16}))
    fit(ARCH, task, TrainingSettings(steps_per_experience=3, batch_size=16, device="cpu"), weights_dir=out)
    return out


def test_inspect_draws_k_per_token_and_spans_per_head(kept, tmp_path, capsys):
    assert main(["inspect", str(kept), "--input", "2,3,1,4,18,5,1", "--out", str(tmp_path)]) == 0
    png, page = tmp_path / "inspect.png", tmp_path / "inspect.html"
    assert capsys.readouterr().out.split() == [str(png), str(page)]
    width, height = Image.open(png).size
    assert png.stat().st_size > 5000 and width >= 600 and height > 300
    text = page.read_text()
    assert "layers.0.ffn" in text and text.count('title="k=') == 7      # one cell per token


@pytest.mark.parametrize("args, message", [
    (["/no/such/model"], "/no/such/model: no such model folder"),
    (["{kept}", "--input", "hello world"], "--input: expected token ids"),
    (["{kept}", "--input", ",".join(["2"] * 17)], "--input: 17 tokens, the model reads at most 16"),
    (["{kept}", "--input", "2,99"], "--input: token ids must be in [0, 26)"),
])
def test_bad_input_is_one_line_and_exit_2(kept, tmp_path, capsys, args, message):
    args = [a.format(kept=kept) for a in args]
    if "--input" not in args:
        args += ["--input", "1,2"]
    assert main(["inspect", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
