"""search.keep_weights: the front plus the top 3 by the first objective keep their
trained model; a trial that leaves that set loses it; the index and the records say
where the weights are and how large."""
import json

import pytest

from dynas.controllers.kept_weights import INDEX_FILE, TOP_K, WeightKeeper, kept_set, read_index
from dynas.controllers.runs import run_local_experiment
from dynas.controllers.records import TrialRecord
from dynas.search_space.experiment import parse_experiment
from dynas.search_space.settings import Objective

OBJECTIVES = (Objective("final_avg_accuracy", "max"), Objective("flops", "min"))


def record(pid, acc, flops, state="complete", weights=True):
    return TrialRecord(proposal_id=pid, arch_id=f"a{pid}", arch={}, params={}, state=state,
                       objectives=[acc, flops], weights={"path": f"w/{pid}", "bytes": 10} if weights else None)


def model_folder(path):
    path.mkdir(parents=True)
    (path / "weights.safetensors").write_bytes(b"w")


def test_front_keeps_the_front_and_the_top_by_the_first_objective():
    # 0 and 4 are on the front; by accuracy 0 > 1 > 2 > 3 (1, 2 dominated by 0)
    records = [record(0, 0.9, 50), record(1, 0.8, 60), record(2, 0.7, 70), record(3, 0.6, 80),
               record(4, 0.1, 1), record(5, 0.95, 40, state="failed"), record(6, 0.99, 1, weights=False)]
    assert kept_set(records, OBJECTIVES, "front") == {0, 1, 2, 4}
    assert TOP_K == 3
    assert kept_set(records, OBJECTIVES, "all") == {0, 1, 2, 3, 4}
    assert kept_set(records, OBJECTIVES, "none") == set()


def test_the_keeper_removes_leavers_and_indexes_the_rest(tmp_path):
    keeper = WeightKeeper(tmp_path, "front", OBJECTIVES)
    records = []
    for pid, acc in enumerate((0.5, 0.6, 0.7, 0.8, 0.9)):        # each better and costlier
        model_folder(tmp_path / "w" / str(pid))
        records.append(record(pid, acc, 10 * (pid + 1)))
        keeper.update(records)
    # all five are on the front (a trade-off each): nothing leaves yet
    assert sorted(read_index(tmp_path)) == ["0", "1", "2", "3", "4"]
    model_folder(tmp_path / "w" / "5")
    records.append(record(5, 0.95, 1))                            # dominates them all
    index = keeper.update(records)
    assert sorted(index) == ["3", "4", "5"]                       # front {5} + top 3 accuracy {5, 4, 3}
    assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["3", "4", "5"]
    assert json.loads((tmp_path / INDEX_FILE).read_text())["5"] == {"path": "w/5", "bytes": 10, "arch_id": "a5"}


@pytest.mark.slow
@pytest.mark.parametrize("mode, kept", [("all", 3), ("none", 0)])
def test_a_local_search_keeps_its_models(tmp_path, mode, kept):
    experiment = parse_experiment({
        "space": {"layers": [1], "d_model": [16], "layer": {
            "attention": [{"kind": "full", "heads": [1, 2, 4]}], "ffn": [{"kind": "dense", "expansion": [2]}]}},
        "task": {"name": "split_digits", "options": {"classes_per_experience": 5, "patch": 4}},
        "training": {"steps_per_experience": 2, "batch_size": 16, "device": "cpu"},
        "search": {"strategy": "random", "trials": 3, "seed": 0, "keep_weights": mode},
    })
    records = [r for r in run_local_experiment(experiment, tmp_path) if r.cached_from is None]
    with_weights = [r for r in records if r.weights]
    assert len(with_weights) == kept and len(read_index(tmp_path)) == kept
    for r in with_weights:
        folder = tmp_path / r.weights["path"]
        assert folder.parent.name == "weights" and folder.name == r.arch_id
        assert r.weights["bytes"] == sum(f.stat().st_size for f in folder.iterdir()) > 0
