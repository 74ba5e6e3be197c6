"""Loading run directories: one row per record, flattened columns, raw objects kept,
torn lines skipped, foreign folders refused in one line."""
import json

import pandas as pd
import pytest

from dynas.trainers.results import TrialMetrics
from dynas.analysis.load import DEFAULT_OBJECTIVES, load_runs, run_objectives
from dynas.controllers.records import RECORDS_FILE, TrialRecord, append_record
from dynas.search_space import names
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import Objective


def test_one_row_per_trial_with_flat_columns(runs):
    arch = runs.tiny_arch(64, (("full", "dense"), ("sliding_window", "moe"), ("full", "moe")))
    rec = runs.record(7, arch, 0.8, 1e6, **{names.PARAMS: 1234.0})
    rec.acc_matrix = [[0.9, 0.1], [0.7, 0.8]]
    rec.expert_load = {"layers.1.ffn": [1, 2, 3, 4]}
    failed = runs.record(8, runs.tiny_arch(), None, None, state="failed", reason="NonFiniteLoss")
    df = load_runs(runs.make("run1", [rec, failed], strategy="tpe"))

    assert len(df) == 2
    row = df.iloc[0]
    assert (row["run"], row["strategy"], row["trial"], row["proposal_id"]) == ("run1", "tpe", 0, 7)
    assert row["arch_id"] == arch.arch_id and row["state"] == "complete"
    assert row[names.FINAL_AVG_ACCURACY] == 0.8 and row[names.FLOPS] == 1e6
    assert row[names.PARAMS] == 1234.0
    assert pd.isna(row[names.BWT])  # every known metric is a column, NaN when unreported
    assert row["param.pid"] == 7
    assert row["arch.layers"] == 3 and row["arch.d_model"] == 64
    assert row["arch.attention_kinds"] == "full,sliding_window"
    assert row["arch.ffn_kinds"] == "dense,moe"
    assert row["arch.moe_layers"] == 2
    assert row["arch.summary"].startswith("d64 | full+dense x2, sw8+moe4k2")
    assert row["arch"] == arch.to_dict()
    assert row["acc_matrix"] == [[0.9, 0.1], [0.7, 0.8]]
    assert row["expert_load"] == {"layers.1.ffn": [1, 2, 3, 4]}
    assert df.iloc[1]["state"] == "failed" and df.iloc[1]["reason"] == "NonFiniteLoss"
    assert df[names.FINAL_AVG_ACCURACY].dtype == float


def test_a_torn_last_line_is_skipped_and_later_records_still_load(runs):
    run = runs.make("torn", [runs.record(0, runs.tiny_arch(), 0.5, 10.0),
                             runs.record(1, runs.tiny_arch(32), 0.6, 20.0)])
    with open(run / RECORDS_FILE, "a") as fh:
        fh.write('{"proposal_id": 2, "arch_id": "abc", "sta')  # crash mid-write
    assert load_runs(run)["proposal_id"].tolist() == [0, 1]
    append_record(run, runs.record(3, runs.tiny_arch(), 0.7, 30.0))
    assert load_runs(run)["proposal_id"].tolist() == [0, 1, 3]


def test_plain_assignments_have_no_arch_summary(runs):
    rec = TrialRecord(0, "x1", {"lr": 0.1, "opt": "adam"}, {"lr": 0.1, "opt": "adam"}, "complete",
                      measured=TrialMetrics(values={names.FINAL_AVG_ACCURACY: 0.5, "loss": 0.7}))
    df = load_runs(runs.make("plain", [rec]))
    assert df.iloc[0]["param.opt"] == "adam"
    assert df.iloc[0]["loss"] == 0.7
    assert pd.isna(df.iloc[0]["arch.layers"])
    assert df.iloc[0]["arch"] == {"lr": 0.1, "opt": "adam"}


def test_several_runs_keep_their_names_even_when_equal(runs):
    a = runs.make("a", [runs.record(0, runs.tiny_arch(), 0.5, 1.0)], name="same")
    b = runs.make("b", [runs.record(0, runs.tiny_arch(), 0.6, 2.0)], name="same", strategy="tpe")
    df = load_runs([a, b])
    assert df["run"].tolist() == ["same", "same#2"]
    assert df["strategy"].tolist() == ["random", "tpe"]


def test_an_empty_run_gives_an_empty_frame_with_the_columns(runs):
    df = load_runs(runs.make("empty", []))
    assert df.empty and names.FLOPS in df and "arch" in df and "state" in df


def test_missing_or_foreign_directories_are_one_line_errors(tmp_path):
    with pytest.raises(DynasError, match="no such run directory") as err:
        load_runs(tmp_path / "nope")
    assert "\n" not in str(err.value)
    (tmp_path / "foreign").mkdir()
    with pytest.raises(DynasError, match="not a dynas run directory"):
        load_runs([tmp_path / "foreign"])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "run.json").write_text("{not json")
    with pytest.raises(DynasError, match="run.json: not valid JSON"):
        load_runs(tmp_path / "broken")


def test_objectives_come_from_run_json(runs):
    objectives = [{"metric": names.FINAL_AVG_ACCURACY, "direction": "max"},
                  {"metric": names.PARAMS, "direction": "min"}]
    run = runs.make("objs", [], objectives=objectives)
    assert run_objectives(run) == (Objective(names.FINAL_AVG_ACCURACY, "max"),
                                   Objective(names.PARAMS, "min"))
    meta = json.loads((run / "run.json").read_text())
    del meta["objectives"]
    (run / "run.json").write_text(json.dumps(meta))
    assert run_objectives(run) == DEFAULT_OBJECTIVES
