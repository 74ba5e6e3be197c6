"""Hardening, round two (issue 28), continued: model folders (model.json, compress.json,
arch.json and the plugins they record) read through their schema, Hypothesis fuzzing of
the run.json and model.json readers, and the processes a killed driver left, stopped by
the next command on the run. The run-directory table is ``tests/test_hardening2.py``.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynas.controllers.records import RUN_FILE
from tests.test_hardening2 import refused_in_process, write
from tests.test_plugins import registries  # noqa: F401  (autouse: plugins loaded here are put back)

__all__ = ["registries"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A real bundle of an untrained model (what ``save_bundle`` writes after training)."""
    from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
    from dynas.search_space.settings import TaskSettings
    from dynas.trainers.bundle import save_bundle
    from dynas.trainers.model import build_model
    from dynas.trainers.tasks import build_task

    task = build_task(TaskSettings("split_digits", {"classes_per_experience": 5}), seed=0)
    arch = ArchConfig(16, (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),))
    out = tmp_path_factory.mktemp("bundle") / "model"
    save_bundle(out, build_model(arch, task.shape), task)
    return out


def model_json(**changes) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        data = json.loads((folder / "model.json").read_text())
        for dotted, value in changes.items():
            *path, last = dotted.split("__")
            node = data
            for part in path:
                node = node[part]
            node[last] = value
        (folder / "model.json").write_text(json.dumps(data))
    return setup


def huge_arch(folder: Path) -> None:
    data = json.loads((folder / "arch.json").read_text())
    data["d_model"] = 2**16
    data["layers"] = data["layers"] * 64
    (folder / "arch.json").write_text(json.dumps(data))
    from dynas.search_space.arch import ArchConfig

    model_json(arch_id=ArchConfig.load(folder / "arch.json").arch_id)(folder)


MODEL_CASES = [
    ("num-classes-huge", model_json(shape__num_classes=10**12), ("model.json", "shape.num_classes")),
    ("num-classes-negative", model_json(shape__num_classes=-3), ("model.json", "shape.num_classes")),
    ("seq-len-string", model_json(shape__seq_len="long"), ("model.json", "shape.seq_len")),
    ("unknown-task", model_json(task="split_whatever"), ("model.json", "task", "unknown task 'split_whatever'")),
    ("newer-format", model_json(format=99), ("model.json", "format", "newer dynas")),
    ("class-table", model_json(class_table="all"), ("model.json", "class_table")),
    ("metrics", model_json(metrics=[1]), ("model.json", "metrics")),
    ("list", write("model.json", "[]"), ("model.json", "expected a JSON object")),
    ("compress-garbage", write("compress.json", "{\"plan\": 5}"), ("compress.json", "plan")),
    ("compress-not-json", write("compress.json", "\x00\x01"), ("compress.json", "not valid JSON")),
    ("compress-plan-misfit", write("compress.json", '{"plan": [{"heads": [7, 9]}]}'), ("compress.json", "plan")),
    ("huge-arch", huge_arch, ("arch.json", "architecture too large")),
    ("recorded-plugin", model_json(plugins=["/nonexistent/marker.py"]),
     ("model.json", "plugins", "marker.py", "--trust-plugins")),
]


@pytest.mark.parametrize("damage, expect", [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES])
def test_a_model_folder_is_read_through_its_schema(model_folder, tmp_path, capsys, monkeypatch, damage, expect):
    """``dynas portable`` (``load_bundle_model``, as ``load_model``, ``compress`` and
    ``--init-from`` use it) refuses in one line, before anything is built."""
    folder = shutil.copytree(model_folder, tmp_path / "m")
    damage(folder)
    refused_in_process(("portable", "m", "--out", "m.pt2"), expect, tmp_path, capsys, monkeypatch)


def test_a_model_folder_records_its_plugins_and_loads_them_with_consent(model_folder, tmp_path):
    from dynas.search_space import plugins
    from dynas.trainers.predict import load_model

    folder = shutil.copytree(model_folder, tmp_path / "m")
    (tmp_path / "recorded_mark.py").write_text("MARK = 1\n")
    model_json(plugins=[str(tmp_path / "recorded_mark.py")])(folder)
    with plugins.trusted_plugins():
        assert load_model(folder).num_experiences == 2
    assert str(tmp_path / "recorded_mark.py") in [p.spec for p in plugins.loaded_plugins()]
    assert "plugins" in json.loads((model_folder / "model.json").read_text())     # save_bundle wrote them


# --- fuzzing the readers: any content is a result or one DynasError line -------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=12)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


def _changed(good: dict, keys: list[str]) -> st.SearchStrategy[dict]:
    """``good`` with some keys replaced by arbitrary JSON, some dropped."""
    return st.dictionaries(st.sampled_from(keys), JSON | st.just(...), max_size=4).map(
        lambda edits: {k: v for k, v in {**good, **edits}.items() if v is not ...})


RUN_GOOD = {"name": "r", "runner": "local", "strategy": "random", "trials": 2, "concurrent": 1, "seed": 0,
            "experiment": "experiment.yaml", "objectives": [{"metric": "flops", "direction": "min"}],
            "plugins": [], "schema_version": 1}


@FUZZ
@given(info=_changed(RUN_GOOD, sorted(RUN_GOOD) + ["extensions", "evaluator", "scheduler"]) | JSON)
def test_fuzzed_run_json_is_read_typed_or_refused_in_one_line(info, tmp_path_factory):
    from dynas.controllers.records import read_run
    from dynas.search_space.errors import DynasError

    run = tmp_path_factory.mktemp("run")
    (run / RUN_FILE).write_text(json.dumps(info))
    try:
        got = read_run(run)
    except DynasError as err:
        assert len(str(err).splitlines()) == 1 and str(run / RUN_FILE) in str(err)
        return
    assert type(got.get("trials", 1)) is int and type(got.get("seed", 0)) is int
    assert got.get("experiment", "experiment.yaml") == "experiment.yaml"
    assert all(isinstance(p, str) for p in got.get("plugins") or [])
    assert all(o["direction"] in ("min", "max") for o in got.get("objectives", []))


@FUZZ
@given(edits=st.dictionaries(st.sampled_from(["format", "arch_id", "task", "scenario", "shape", "class_table",
                                              "preprocessing", "metrics", "plugins", "shape.seq_len",
                                              "shape.num_classes", "shape.input_dim", "shape.per_token"]),
                             JSON, max_size=3))
def test_fuzzed_model_json_loads_or_is_refused_in_one_line(edits, model_folder, tmp_path_factory):
    from dynas.search_space.errors import DynasError
    from dynas.trainers.bundle import load_bundle_model

    folder = shutil.copytree(model_folder, tmp_path_factory.mktemp("fuzz") / "m")
    data = json.loads((folder / "model.json").read_text())
    for dotted, value in edits.items():
        node, *rest = dotted.split(".")
        if rest and isinstance(data.get(node), dict):
            data[node][rest[0]] = value
        elif not rest:
            data[node] = value
    (folder / "model.json").write_text(json.dumps(data))
    try:
        model, bundle = load_bundle_model(folder)
    except DynasError as err:
        assert len(str(err).splitlines()) == 1 and str(folder) in str(err)
        return
    assert bundle.shape.num_classes >= 1 and model is not None


# --- a killed driver's helpers are stopped by the next command on the run ------------
HOLDER = """
import subprocess, sys, time
from dynas.controllers.leftovers import record_helpers
from dynas.controllers.lock import run_lock
with run_lock(sys.argv[1]):
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.DEVNULL)
    record_helpers(sys.argv[1])
    print(helper.pid, flush=True)
    time.sleep(600)
"""


def test_the_next_command_stops_what_a_killed_driver_left(tmp_path: Path):
    import signal
    import subprocess
    import sys

    from dynas.controllers.leftovers import HELPERS_FILE, _alive_as, _stat
    from dynas.controllers.lock import run_lock
    from tests.test_bad_input import ROOT

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              text=True)
    helper = int(holder.stdout.readline())
    start = _stat(helper)[1]
    assert json.loads((tmp_path / HELPERS_FILE).read_text())[str(helper)] == start
    holder.send_signal(signal.SIGKILL)          # the driver dies; its helper lives on
    holder.wait()
    assert _alive_as(helper, start)
    with run_lock(tmp_path):                    # the next command on the run
        assert not _alive_as(helper, start)
        assert not (tmp_path / HELPERS_FILE).exists()


def test_a_reused_pid_is_never_stopped(tmp_path: Path):
    """A recorded pid whose start time differs is another process now: left alone."""
    import subprocess
    import sys

    from dynas.controllers.leftovers import HELPERS_FILE, _alive_as, _stat, stop_leftovers

    spawn = ("import subprocess, sys\n"
             "print(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],\n"
             "                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")
    pid = int(subprocess.run([sys.executable, "-c", spawn], capture_output=True, text=True).stdout)
    try:                                        # not below this process: only its start time protects it
        start = _stat(pid)[1]
        (tmp_path / HELPERS_FILE).write_text(json.dumps({str(pid): start - 1}))
        assert stop_leftovers(tmp_path) == [] and _alive_as(pid, start)
        (tmp_path / HELPERS_FILE).write_text(json.dumps({str(pid): start}))
        assert stop_leftovers(tmp_path) == [pid] and not _alive_as(pid, start)
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
