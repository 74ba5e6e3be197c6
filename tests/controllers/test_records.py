"""The run directory's files survive crashes: records are durable before the call
returns, rewrites are atomic, and a torn last line costs only that line."""
from __future__ import annotations

import json
import os

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers import records
from dynas.controllers.records import (RECORDS_FILE, RUN_FILE, TrialRecord, append_record, create_run_dir,
                                 iter_records, read_run, write_json_atomic)
from dynas.search_space.errors import DynasError


def rec(pid: int) -> TrialRecord:
    return TrialRecord(pid, f"a{pid:011d}", {"x": pid}, {"x": pid}, "complete", TrialMetrics(values={"m": 0.5}),
                       objectives=[0.5])


def test_append_record_fsyncs_the_line_before_returning(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        # what is on disk when fsync is called: the line must already be written
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(records.os, "fsync", spy)
    append_record(tmp_path, rec(0))
    size = (tmp_path / RECORDS_FILE).stat().st_size
    assert synced == [size] and size > 0
    append_record(tmp_path, rec(1))
    assert len(synced) == 2 and synced[1] == (tmp_path / RECORDS_FILE).stat().st_size


def test_write_json_atomic_fsyncs_then_renames(tmp_path, monkeypatch):
    order = []
    monkeypatch.setattr(records.os, "fsync", lambda fd: order.append("fsync"))
    real_replace = os.replace
    monkeypatch.setattr(records.os, "replace", lambda a, b: (order.append("replace"), real_replace(a, b)))
    write_json_atomic(tmp_path / "state.json", {"a": 1})
    assert order == ["fsync", "replace"]
    assert json.loads((tmp_path / "state.json").read_text()) == {"a": 1}


def test_a_crash_mid_rewrite_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "policy_state.json"
    write_json_atomic(path, {"version": 1})

    def crash(a, b):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(records.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"version": 2})
    assert json.loads(path.read_text()) == {"version": 1}


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_clean(tmp_path):
    append_record(tmp_path, rec(0))
    append_record(tmp_path, rec(1))
    path = tmp_path / RECORDS_FILE
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[1][:25])   # a crash mid-write
    assert [r.proposal_id for r in iter_records(tmp_path)] == [0, 1]
    append_record(tmp_path, rec(2))
    assert [r.proposal_id for r in iter_records(tmp_path)] == [0, 1, 2]
    with open(path, "ab") as fh:                                        # foreign junk lines
        fh.write(b"\x00\xff garbage\n[1, 2]\n{\"no\": \"arch_id\"}\n")
    append_record(tmp_path, rec(3))
    assert [r.proposal_id for r in iter_records(tmp_path)] == [0, 1, 2, 3]


def test_read_run_names_the_file(tmp_path):
    with pytest.raises(DynasError, match="no such run directory"):
        read_run(tmp_path / "nope")
    with pytest.raises(DynasError, match="not a dynas run directory"):
        read_run(tmp_path)
    (tmp_path / RUN_FILE).write_text('{"name": ')
    with pytest.raises(DynasError, match=r"run\.json: not valid JSON"):
        read_run(tmp_path)
    (tmp_path / RUN_FILE).write_text("[1]")
    with pytest.raises(DynasError, match="expected a JSON object"):
        read_run(tmp_path)
    write_json_atomic(tmp_path / RUN_FILE, {"runner": "ray"})
    assert read_run(tmp_path) == {"runner": "ray"}


def test_a_run_directory_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "r"
    create_run_dir(run_dir, {"runner": "ray"}, {"experiment.yaml": "space: {}\n"})
    assert read_run(run_dir) == {"runner": "ray"}
    assert (run_dir / "experiment.yaml").read_text() == "space: {}\n"
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["r"]       # no staging left

    def killed(*args):
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(records.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        create_run_dir(tmp_path / "runs" / "s", {"runner": "ray"}, {"experiment.yaml": "x: 1\n"})
    assert not (tmp_path / "runs" / "s").exists()              # no run without run.json
    monkeypatch.undo()
    (tmp_path / "runs" / "t").mkdir()                            # an empty target is fine
    create_run_dir(tmp_path / "runs" / "t", {"a": 1}, {})
    with pytest.raises(DynasError, match="cannot create the run directory"):
        create_run_dir(tmp_path / "runs" / "t", {"a": 2}, {})  # a full one is not
    assert read_run(tmp_path / "runs" / "t") == {"a": 1}


def test_every_measured_field_has_a_record_check_and_round_trips():
    """What a trial measured is one shape (``TrialMetrics``): each of its fields is a key
    of the record line, checked on read, and comes back as it went in."""
    from dataclasses import fields

    from dynas.controllers.record_check import FIELDS, record_problem

    assert set(records.MEASURED_KEYS.values()) <= set(FIELDS)
    measured = TrialMetrics(values={"m": 0.5}, acc_matrix=[[0.5]], test_acc_matrix=[[0.4]],
                            expert_load={"l0": [0.5, 0.5]}, curriculum_log=[{"level": 1}],
                            bits_matrix=[[2.0]], dynamics=[{"experience": 0}], steps=7, wall_time_s=1.5,
                            chance_accuracy=0.1)
    assert {f.name for f in fields(measured)} == set(records.MEASURED_KEYS)
    line = TrialRecord(0, "a0", {}, {}, "complete", measured).to_dict()
    assert record_problem(line) is None and line["metrics"] == {"m": 0.5} and line["steps"] == 7
    back = TrialRecord.from_dict(line)
    assert back.measured == measured and back.metrics == {"m": 0.5} and back.to_dict() == line


def test_records_of_schema_1_and_2_still_load():
    """Lines written before TrialMetrics was carried (flat fields, no ``steps``) read back."""
    old = {"proposal_id": 3, "arch_id": "a3", "arch": {}, "params": {}, "state": "complete",
           "metrics": {"acc": 0.7}, "acc_matrix": [[0.7]], "wall_time_s": 2.0, "policy": "random", "seed": 1}
    for schema in (None, 2):
        line = old if schema is None else {**old, "schema_version": schema, "test_acc_matrix": [[0.6]]}
        record = TrialRecord.from_dict(line)
        assert record.metrics == {"acc": 0.7} and record.acc_matrix == [[0.7]] and record.wall_time_s == 2.0
        assert record.schema_version == (schema or 1) and record.steps == 0


def test_dynamics_without_expert_load_still_load_and_a_malformed_load_is_named():
    """Records written before the per-experience expert load was measured lack it in
    their dynamics entries: they load; an entry whose load is not numbers is refused."""
    from dynas.controllers.record_check import record_problem

    base = {"proposal_id": 1, "arch_id": "a1", "arch": {}, "params": {}, "state": "complete"}
    old = {**base, "dynamics": [{"experience": 0, "spans": {}, "k": {"layers.0.ffn": {"mean": 1.0, "hist": [0, 4]}}}]}
    assert record_problem(old) is None
    assert TrialRecord.from_dict(old).measured.dynamics == old["dynamics"]
    new = {**base, "dynamics": [{"experience": 0, "expert_load": {"layers.0.ffn": [0.75, 0.25]}}]}
    assert record_problem(new) is None
    bad = {**base, "dynamics": [{"experience": 0, "expert_load": {"layers.0.ffn": ["lots"]}}]}
    assert "dynamics" in record_problem(bad) and "expert_load" in record_problem(bad)
