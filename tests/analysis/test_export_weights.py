"""`dynas export --weights`: the pick's kept model, with its preprocessing, in one
folder that ``load_model`` reads; predicting the raw test split gives the accuracy the
search recorded. A pick without kept weights, or an occupied folder, is exit 2 with
nothing written."""
import json
import shutil

import pytest

from dynas.analysis.cli import main
from dynas.controllers.kept_weights import INDEX_FILE, read_index
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.records import iter_records
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.settings import TaskSettings
from dynas.trainers.predict import load_model
from dynas.trainers.tasks import build_task

TASK = {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("search")
    experiment = parse_experiment({
        "space": {"layers": [1], "d_model": [16], "layer": {
            "attention": [{"kind": "full", "heads": [1, 2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}},
        "task": TASK,
        "training": {"steps_per_experience": 40, "batch_size": 32, "device": "cpu"},
        "search": {"strategy": "random", "trials": 3, "seed": 0, "keep_weights": "all"},
    })
    run_local_experiment(experiment, run_dir)
    return run_dir


@pytest.mark.slow
def test_exported_model_predicts_the_test_split_at_the_recorded_accuracy(run_dir, tmp_path, capsys):
    out = tmp_path / "model"
    assert main(["export", str(run_dir), "--pick", "best-accuracy", "--weights", "--out", str(out)]) == 0
    assert {"arch.json", "pareto.json", "weights.safetensors", "model.json"} <= {p.name for p in out.iterdir()}
    picked = json.loads((out / "pareto.json").read_text())["picked"]
    (record,) = [r for r in iter_records(run_dir) if r.proposal_id == picked["proposal_id"]]
    assert picked["checkpoint"] == record.weights["path"]
    predictor = load_model(out)
    task = build_task(TaskSettings(**TASK), seed=0)
    for j, exp in enumerate(task.experiences):
        correct = int((predictor.predict(exp.raw_test).classes == exp.test.tensors[1]).sum())
        assert correct / len(exp.raw_test) == pytest.approx(record.test_acc_matrix[-1][j], abs=1e-12)


@pytest.mark.slow
def test_refusals_write_nothing(run_dir, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "weights.safetensors").write_text("mine")
    assert main(["export", str(run_dir), "--weights", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "weights.safetensors exists; pass --force" in err
    assert sorted(p.name for p in out.iterdir()) == ["weights.safetensors"]
    assert (out / "weights.safetensors").read_text() == "mine"

    pruned = tmp_path / "pruned"
    shutil.copytree(run_dir, pruned)
    (pruned / INDEX_FILE).write_text("{}")                # as if the keep rule had removed them all
    assert main(["export", str(pruned), "--weights", "--out", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no kept weights" in err
    assert not (tmp_path / "none").exists()
    assert len(read_index(run_dir)) == 3
