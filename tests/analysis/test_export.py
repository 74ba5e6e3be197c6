"""Export: the arch file is what ArchConfig.load (and so `dynas train --arch`) reads,
pareto.json lists the front and the pick, and nothing on disk is overwritten silently."""
import json

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.analysis.export import export_arch, pareto_path_for
from dynas.analysis.load import load_runs
from dynas.analysis.pareto import pareto_front
from dynas.controllers.records import TrialRecord
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.errors import DynasError

OBJ = [(names.FINAL_AVG_ACCURACY, "max"), (names.FLOPS, "min")]


@pytest.fixture
def search(runs):
    return runs.make("search", runs.synthetic(25, seed=4))


def test_export_round_trip_and_pareto_json(search, tmp_path):
    out = export_arch(search, "knee", tmp_path / "exp" / "arch.json")
    assert out == tmp_path / "exp" / "arch.json"
    df = load_runs(search)
    payload = json.loads(pareto_path_for(out).read_text())
    picked = payload["picked"]
    record = df[df["proposal_id"] == picked["proposal_id"]].iloc[0]
    assert ArchConfig.load(out) == ArchConfig.from_dict(record["arch"])
    assert ArchConfig.load(out).arch_id == record["arch_id"]
    assert json.loads(out.read_text()) == record["arch"]  # the plain ArchConfig.save format

    assert payload["schema_version"] == 1
    assert picked["rule"] == "knee" and picked["on_front"] is True
    front = pareto_front(df, OBJ)
    assert [m["arch_id"] for m in payload["front"]] == front["arch_id"].tolist()
    member = payload["front"][0]
    assert set(member) >= {"arch", "arch_id", "metrics", "cost", "seed", "checkpoint", "dynas_version"}
    assert member["checkpoint"] is None and member["dynas_version"] == "0.1.0"
    assert member["cost"][names.FLOPS] == member["metrics"][names.FLOPS]
    assert payload["objectives"] == [{"metric": m, "direction": d} for m, d in OBJ]
    assert payload["hypervolume"] > 0 and payload["reference_point"][0] == 0.0
    assert "NaN" not in pareto_path_for(out).read_text()


def test_existing_files_are_kept_unless_forced(search, tmp_path):
    out = tmp_path / "arch.json"
    out.write_text("precious")
    with pytest.raises(DynasError, match="exists; pass --force"):
        export_arch(search, "knee", out)
    assert out.read_text() == "precious" and not (tmp_path / "pareto.json").exists()

    out.unlink()
    (tmp_path / "pareto.json").write_text("also precious")
    with pytest.raises(DynasError, match="pareto.json exists"):
        export_arch(search, "knee", out)
    assert not out.exists() and (tmp_path / "pareto.json").read_text() == "also precious"

    export_arch(search, "best-accuracy", out, force=True)
    assert ArchConfig.load(out) and json.loads((tmp_path / "pareto.json").read_text())["picked"]["rule"] == "best-accuracy"


def test_a_rule_that_picks_nothing_writes_nothing(search, tmp_path):
    with pytest.raises(DynasError, match="the cheapest has"):
        export_arch(search, "max-flops=1", tmp_path / "arch.json")
    assert set(tmp_path.iterdir()) == {search}


def test_sidecar_names_and_folder_output(search, tmp_path):
    assert pareto_path_for(tmp_path / "knee.json") == tmp_path / "knee.pareto.json"
    folder = tmp_path / "dest"
    folder.mkdir()
    out = export_arch(search, "max-flops=5M", folder)
    assert out == folder / "arch.json" and (folder / "pareto.json").is_file()
    assert load_runs(search).set_index("arch_id").loc[ArchConfig.load(out).arch_id, names.FLOPS].max() <= 5e6


def test_export_of_a_plain_assignment(runs, tmp_path):
    rec = TrialRecord(0, "id0", {"opt": "adam", "lr": 0.1}, {"opt": "adam", "lr": 0.1}, "complete",
                      measured=TrialMetrics(values={names.FINAL_AVG_ACCURACY: 0.7, names.FLOPS: 10.0}))
    out = export_arch(runs.make("plain", [rec]), "best-accuracy", tmp_path / "a.json")
    assert json.loads(out.read_text()) == {"opt": "adam", "lr": 0.1}


def test_rebuilt_model_has_the_recorded_parameter_count(runs, tmp_path):
    """The exported file rebuilds the very model the search measured."""
    from dynas.search_space.cost import estimate_cost
    from dynas.trainers.model import build_model

    shape = TaskShape(seq_len=16, num_classes=10, input_dim=8)
    archs = [runs.tiny_arch(32, (("full", "dense"),)),
             runs.tiny_arch(64, (("sliding_window", "moe"), ("linear", "dense"))),
             runs.tiny_arch(32, (("dynamic_span", "moe"),))]
    records = []
    for pid, arch in enumerate(archs):
        metrics = {**estimate_cost(arch, shape).as_metrics(), names.FINAL_AVG_ACCURACY: 0.5 + 0.1 * pid}
        records.append(TrialRecord(pid, arch.arch_id, arch.to_dict(), {}, "complete",
                                   measured=TrialMetrics(values=metrics)))
    run = runs.make("costed", records)
    out = export_arch(run, "best-accuracy", tmp_path / "arch.json")
    model = build_model(ArchConfig.load(out), shape)
    assert sum(p.numel() for p in model.parameters()) == records[-1].metrics[names.PARAMS]
