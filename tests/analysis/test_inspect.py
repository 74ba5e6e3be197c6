"""``dynas inspect``: a kept model's realised k per token and spans per head for one
input (ids, or the N-th validation example of its task), as PNG and HTML; bad input is
one line and exit 2."""
import json
import shutil

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


TASK = TaskSettings("span_range", {"distances": [3], "seq_len": 16, "n_train": 64, "n_val": 16, "n_test": 16})


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    task = build_task(TASK, seed=3)
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


def test_inspect_by_example_index_runs_that_validation_example(kept, tmp_path, capsys):
    """The folder keeps the task's options and seed: the task is rebuilt and example 5
    of its validation split (never test) is what the page shows, token by token."""
    assert main(["inspect", str(kept), "--example", "5", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "inspect.png"), str(tmp_path / "inspect.html")]
    ids = [int(t) for t in build_task(TASK, seed=3).experiences[0].val[5][0]]
    page = (tmp_path / "inspect.html").read_text()
    cells = [cell.split(">")[1].split("<")[0] for cell in page.split('<td ')[1:]]
    assert cells == [str(t) for t in ids] and len(ids) == 16


@pytest.mark.parametrize("index", ["16", "-1"])
def test_an_example_index_out_of_range_is_one_line_and_exit_2(kept, tmp_path, capsys, index):
    assert main(["inspect", str(kept), "--example", index, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dynas: error: --example: {index} is out of range; the validation splits hold 16 examples (0..15)"]
    assert not (tmp_path / "inspect.png").exists()


def test_an_example_index_needs_a_folder_that_keeps_its_task_options(kept, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(kept, old)
    meta = json.loads((old / "model.json").read_text())
    del meta["task_options"], meta["task_seed"]
    (old / "model.json").write_text(json.dumps(meta))
    assert main(["inspect", str(old), "--example", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--example: needs a model folder saved by this version of dynas" in err[0]
    assert main(["inspect", str(old), "--input", "1,2", "--out", str(tmp_path)]) == 0     # ids still work
