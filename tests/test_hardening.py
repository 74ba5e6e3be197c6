"""Hardened boundaries (issue 11): what an attacker, a full disk or an impatient user
does to dynas, and what dynas must do back.

- A table of refusals: every case runs the real command line in a fresh process and
  must exit 2 with exactly one line on stderr naming the file/argument and key, no
  traceback, and every file in the working folder byte-identical.
- Broken record lines are skipped with one warning naming their line number;
  ``report`` and ``resume`` go on with the good ones.
- Hypothesis fuzzes ``trials.jsonl`` lines (read by report, resume and export) and
  arch files (read by train and export): any content ends in a result or a one-line
  ``DynasError``, never another exception.
- One driver per run directory (``controllers.lock``), a stale lock taken over.
- SIGINT / SIGTERM on a real search (``controllers.interrupt``), a second driver
  refused while it runs, the private Ray instance listening on loopback only, and a
  full disk (a small tmpfs; skipped where mounting is not allowed).
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.signal_stop import alive, descendants
from dynas.controllers.lock import PID_FILE, RunLocked, run_lock
from dynas.controllers.records import POLICY_STATE_FILE, RECORDS_FILE, iter_records
from dynas.search_space import settings as settings_module
from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError
from tests.test_bad_input import (ARCH, GOOD, Case, _run_dir, arch_variant, assert_refused, run_cli,
                                  snapshot, variant, workdir)

ROOT = Path(__file__).resolve().parents[1]
__all__ = ["workdir"]          # the fixture, shared with test_bad_input


def validate(name: str, old: str, new: str, *expect: str) -> Case:
    return Case(name, {f"{name}.yaml": variant(old, new)}, ("space", "validate", f"{name}.yaml"),
                (f"{name}.yaml",) + expect)


def search_key(name: str, key: str, value: str, *expect: str) -> Case:
    return validate(name, "concurrent: 1", f"concurrent: 1\n  {key}: {value}", f"search.{key}", *expect)


def train_key(name: str, key: str, value: str, *expect: str) -> Case:
    return validate(name, "device: cpu", f"device: cpu\n  {key}: {value}", f"training.{key}", *expect)


def train_arch(name: str, text: str, *expect: str) -> Case:
    return Case(f"arch-{name}", {f"{name}.json": text},
                ("train", "--arch", f"{name}.json", "--config", "good.yaml", "--out", "out"),
                (f"{name}.json",) + expect)


def search_name(case_id: str, name: str, *expect: str) -> Case:
    return Case(case_id, {}, ("search", "good.yaml", "--storage", "st", "--name", name, "--no-report"),
                ("--name",) + expect)


def _layers(n: int) -> str:
    data = ARCH.to_dict()
    data["layers"] = data["layers"] * n
    return json.dumps(data)


SETTINGS_CASES = [
    search_key("max_failures", "max_failures", "-1", ">= 0"),
    search_key("cpus_zero", "cpus_per_trial", "0", "> 0"),
    search_key("cpus_negative", "cpus_per_trial", "-1", "> 0"),
    search_key("gpus_negative", "gpus_per_trial", "-1", ">= 0"),
    search_key("seed_negative", "seed", "-1", ">= 0"),
    validate("trials_absurd", "trials: 2", "trials: 1000000000000", "search.trials", "<="),
    train_key("weight_decay", "weight_decay", "-1", ">= 0"),
    train_key("eval_batch", "eval_batch_size", "1000000000000", "<="),
    train_key("train_seed", "seed", "-1", ">= 0"),
    train_key("replay_budget", "replay", "{budget: 1000000000000}", "budget", "<="),
    train_key("der_alpha", "replay", "{der_alpha: -1}", "der_alpha", ">= 0"),
    train_key("loss_weight", "loss_weights", "{balance: -1}", "balance", ">= 0"),
    train_key("curriculum_levels", "curriculum", "{levels: 100000}", "levels", "<="),
    validate("objective_unknown", "concurrent: 1",
             "concurrent: 1\n  objectives: [{metric: happiness, direction: max}]",
             "search.objectives[0].metric", "unknown metric 'happiness'"),
    validate("objective_twice", "concurrent: 1",
             "concurrent: 1\n  objectives: [{metric: flops, direction: min}, {metric: flops, direction: max}]",
             "search.objectives[1].metric", "'flops'"),
]

SIZE_CASES = [
    train_arch("huge_width", arch_variant(d_model=1_000_000_000), "too large", "GiB"),
    train_arch("huge_experts", arch_variant(layers__0__ffn__kind="moe", layers__0__ffn__experts=1_000_000,
                                            layers__0__ffn__expansion=64,
                                            layers__0__ffn__router={"kind": "topk", "top_k": 1}),
               "too large", "GiB"),
    train_arch("many_layers", _layers(10_000), "layers", "at most 1024"),
]

NAME_CASES = [
    search_name("name-parent", "../../x", "not a run name"),
    search_name("name-absolute", "/tmp/dynas-escape", "not a run name"),
    search_name("name-hidden", ".hidden", "not a run name"),
    search_name("name-long", "x" * 300, "not a run name"),
    search_name("name-space", "a b", "not a run name"),
    Case("search-seed", {}, ("search", "good.yaml", "--storage", "st", "--seed", "-1", "--no-report"),
         ("search.seed", ">= 0")),
]

REFUSED = SETTINGS_CASES + SIZE_CASES + NAME_CASES


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused_in_one_line_with_exit_2_and_nothing_written(case: Case, workdir: Path):
    assert_refused(case, workdir)
    assert not Path("/tmp/dynas-escape").exists()


def test_every_numeric_setting_has_a_range():
    """A numeric field added to the settings without a RANGES row fails here."""
    for cls in (settings_module.CurriculumSettings, settings_module.ReplaySettings,
                settings_module.LossWeights, settings_module.TrainingSettings,
                settings_module.Budget, settings_module.SearchSettings, settings_module.ConfirmSettings,
                settings_module.FidelitySettings):
        hints = typing.get_type_hints(cls)
        numeric = {f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)}
        assert numeric <= set(settings_module.RANGES.get(cls, {})), (cls.__name__, numeric)


def _settings_classes() -> list[type]:
    from dynas.controllers.policies import POLICIES

    return [settings_module.CurriculumSettings, settings_module.ReplaySettings, settings_module.LossWeights,
            settings_module.TrainingSettings, settings_module.Budget, settings_module.SearchSettings,
            settings_module.ConfirmSettings, settings_module.FidelitySettings] + \
        [e.settings_cls for e in POLICIES.values() if e.settings_cls is not None]


@pytest.mark.parametrize("cls", _settings_classes(), ids=lambda c: c.__name__)
def test_a_negative_absurd_value_of_any_numeric_setting_is_refused(cls):
    """Every numeric field of every settings section (strategies' included) is ranged."""
    from dynas.search_space.errors import ConfigError

    hints = typing.get_type_hints(cls)
    numeric = [f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)]
    assert numeric, cls
    for name in numeric:
        value = -10**15 if hints[name] is int else -1e15
        with pytest.raises(ConfigError, match=name):
            cls(**{name: value}).validate("section")


def test_an_absurd_architecture_in_a_search_is_a_failed_record_with_the_reason():
    from dynas.controllers.run.prepare import feasibility
    from dynas.search_space.experiment import parse_experiment
    import yaml

    experiment = parse_experiment(yaml.safe_load(GOOD))
    ok, why = feasibility(experiment)(ArchConfig.from_dict(json.loads(arch_variant(d_model=1_000_000_000))))
    assert not ok and "GiB to train" in why
    assert feasibility(experiment)(ARCH) == (True, "")


# --- broken records: skipped with one warning, the commands go on -----------------------
BAD_LINES = {
    "missing fields": '{"arch_id": "abc", "state": "complete"}',
    "nested brackets": "[" * 200_000,
    "metrics a string": None,       # filled from a good record below
    "metrics a list": None,
    "wall time a word": None,
    "not json": "this is not json",
}


def _bad_lines(good: dict) -> dict[str, str]:
    lines = dict(BAD_LINES)
    lines["metrics a string"] = json.dumps({**good, "metrics": "0.9"})
    lines["metrics a list"] = json.dumps({**good, "metrics": [0.9]})
    lines["wall time a word"] = json.dumps({**good, "wall_time_s": "fast"})
    return lines


@pytest.mark.parametrize("argv", [("report", "run", "--out", "rep"), ("resume", "run", "--no-report"),
                                  ("export", "run", "--out", "picked.json")], ids=lambda a: a[0])
def test_bad_record_lines_are_skipped_with_one_warning_each(argv, workdir: Path):
    path = workdir / "run" / RECORDS_FILE
    good = json.loads(path.read_text().splitlines()[0])
    bad = list(_bad_lines(good).values())
    with open(path, "a") as fh:
        fh.write("\n".join(bad) + "\n")
    proc = run_cli(argv, workdir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "skipped" in ln]
    assert len(warnings) == len(bad), proc.stderr
    for number in range(3, 3 + len(bad)):       # two good records come first
        assert sum(f"line {number} skipped" in w for w in warnings) == 1, (number, warnings)
    assert len(list(iter_records(workdir / "run"))) == 2


# --- fuzz: any content, a result or one DynasError ---------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)
GOOD_RECORD_KEYS = ("proposal_id", "arch_id", "arch", "params", "state", "metrics", "objectives",
                    "acc_matrix", "wall_time_s", "seed", "cached_from", "experiences_done")


def record_lines() -> st.SearchStrategy[str]:
    """Whole garbage, JSON of any shape, and good records with one field replaced."""
    good = json.loads(_records_text().splitlines()[0])
    mutated = st.builds(lambda key, value: json.dumps({**good, key: value}, allow_nan=True),
                        st.sampled_from(GOOD_RECORD_KEYS), JSON)
    return st.one_of(st.text(max_size=40), JSON.map(lambda v: json.dumps(v, allow_nan=True)), mutated)


def _records_text() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        _run_dir(Path(tmp) / "run", ("complete",))
        return (Path(tmp) / "run" / RECORDS_FILE).read_text()


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def _fuzzed_run(parent: Path, lines: list[str]) -> Path:
    run = parent / "run"
    _run_dir(run, ("complete",))
    with open(run / RECORDS_FILE, "a") as fh:
        fh.write("\n".join(line.replace("\n", " ") for line in lines) + "\n")
    return run


@FUZZ
@given(lines=st.lists(record_lines(), min_size=1, max_size=4))
def test_fuzzed_record_lines_never_crash_resume_or_export(lines, tmp_path_factory):
    from dynas.analysis.export import export_arch
    from dynas.analysis.load import load_runs
    from dynas.controllers.runs import resume_search

    run = _fuzzed_run(tmp_path_factory.mktemp("fuzz"), lines)
    records = list(iter_records(run))
    assert records and all(r.state in ("complete", "failed", "pruned") for r in records)
    load_runs([run])
    resume_search(run)                                   # target met: reads, then nothing to do
    try:
        export_arch(run, "knee", run.parent / "picked.json")
    except DynasError as err:                            # nothing to pick: one line
        assert "\n" not in str(err)


@settings(FUZZ, max_examples=4)
@given(lines=st.lists(record_lines(), min_size=4, max_size=12))
def test_fuzzed_record_lines_never_crash_the_report(lines, tmp_path_factory):
    from dynas.analysis.report import write_report

    run = _fuzzed_run(tmp_path_factory.mktemp("fuzz"), lines)
    assert write_report([run], run.parent / "report").is_file()


def arch_texts() -> st.SearchStrategy[str]:
    good = ARCH.to_dict()
    layer = good["layers"][0]
    mutated_top = st.builds(lambda k, v: json.dumps({**good, k: v}, allow_nan=True),
                            st.sampled_from(sorted(good)), JSON)
    mutated_ffn = st.builds(
        lambda k, v: json.dumps({**good, "layers": [{**layer, "ffn": {**layer["ffn"], k: v}}]}, allow_nan=True),
        st.sampled_from(["kind", "expansion", "experts", "router", "capacity_factor", "shared_experts"]),
        JSON | st.integers(min_value=-10**12, max_value=10**12))
    return st.one_of(st.text(max_size=40), JSON.map(lambda v: json.dumps(v, allow_nan=True)), mutated_top, mutated_ffn)


@FUZZ
@given(text=arch_texts())
def test_fuzzed_arch_files_are_loaded_and_size_checked_or_refused_in_one_error(text, tmp_path_factory):
    """What ``train`` does before torch allocates anything (load, size guard)."""
    import yaml

    from dynas.search_space.experiment import parse_experiment
    from dynas.trainers.commands import check_size

    path = tmp_path_factory.mktemp("arch") / "arch.json"
    path.write_text(text)
    experiment = parse_experiment(yaml.safe_load(GOOD))
    started = time.perf_counter()
    try:
        check_size(ArchConfig.load(path), experiment, 16, str(path))
    except DynasError as err:
        assert "\n" not in str(err)
    assert time.perf_counter() - started < 5, "a size check must never build anything"


# --- one driver per run ---------------------------------------------------------------
def test_a_second_driver_is_refused_naming_the_holder(workdir: Path):
    run = workdir / "run"
    with run_lock(run):
        assert (run / PID_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
            with run_lock(run):
                pass
        before = snapshot(workdir)
        proc = run_cli(("resume", "run", "--extra-trials", "1", "--no-report"), workdir)
        assert proc.returncode == 2 and f"(pid {os.getpid()})" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert snapshot(workdir) == before
    assert not (run / PID_FILE).exists()


def test_a_lock_left_by_a_killed_driver_is_taken_over(tmp_path: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from dynas.controllers.lock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)]))}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"):
            with run_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / PID_FILE).read_text().strip() == str(holder.pid)   # stale, left behind
    with run_lock(tmp_path):
        assert (tmp_path / PID_FILE).read_text().strip() == str(os.getpid())
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free again
    finally:
        os.close(fd)


# --- real searches: signals, a second driver, loopback, a full disk -------------------------
E2E = """
space:
  layers: [1]
  d_model: [16]
  layer:
    attention: [{kind: full, heads: [2]}]
    ffn:
      - {kind: dense, expansion: [2, 4]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 2}
task: {name: split_digits, options: {classes_per_experience: 5, patch: 4}}
training: {steps_per_experience: %d, batch_size: 16, device: cpu}
search: {strategy: random, trials: %d, concurrent: 1, max_failures: 0}
"""
LOOPBACK_HEX = ("0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000")


def listening_addresses(pids) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) that ``pids`` listen on."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:          # 0A: LISTEN
                found.add(cols[1].split(":")[0])
    return found


def start(argv, cwd: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])), "RAY_USAGE_STATS_ENABLED": "0"}
    with open(log, "w") as fh:
        return subprocess.Popen([sys.executable, "-m", "dynas.analysis.cli", *argv], cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=fh, start_new_session=True)


def wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    proc.kill()
    raise AssertionError(f"timed out; log: {log.read_text()[-3000:]}")


def assert_whole(run: Path, kept: bytes = b"") -> None:
    """Nothing torn: every line a record, the old ones byte-identical, no temporary file,
    the policy state whole, no trial charged with the interrupt or the machine's fault."""
    text = (run / RECORDS_FILE).read_bytes() if (run / RECORDS_FILE).exists() else b""
    assert text.startswith(kept)
    lines = [ln for ln in text.decode().splitlines() if ln.strip()]
    assert len(list(iter_records(run))) == len(lines)
    for record in iter_records(run):
        assert not any(word in (record.reason or "") for word in
                       ("Interrupt", "SIGINT", "SIGTERM", "Errno 28", "No space", "interrupted")), record.reason
    if (run / POLICY_STATE_FILE).exists():
        json.loads((run / POLICY_STATE_FILE).read_text())
    assert not [p for p in run.parent.rglob("*") if p.name.endswith(".tmp") or ".partial-" in p.name]


@pytest.mark.slow
@pytest.mark.parametrize("signals, code", [((signal.SIGINT,), 130),
                                           ((signal.SIGTERM, signal.SIGINT), 143)],
                         ids=["sigint", "sigterm-then-second-signal"])
def test_a_signal_stops_the_search_cleanly(signals, code, tmp_path: Path):
    # eight candidates for eight trials: the driver is still searching when the second one comes
    (tmp_path / "exp.yaml").write_text((E2E % (150, 8)).replace("expansion: [2, 4]", "expansion: [2, 3, 4, 5, 6, 7, 8]"))
    log, run = tmp_path / "driver.log", tmp_path / "st" / "run"
    driver = start(("search", "exp.yaml", "--storage", "st", "--name", "run", "--verbose", "0"), tmp_path, log)
    try:
        wait_for(lambda: list(iter_records(run)) and descendants(driver.pid), 300, driver, log)
        pids = descendants(driver.pid)
        listening = listening_addresses([driver.pid, *pids])
        assert listening and listening <= set(LOOPBACK_HEX), listening
        second = run_cli(("resume", "st/run", "--no-report"), tmp_path)     # a second driver
        assert second.returncode == 2 and f"(pid {driver.pid})" in second.stderr, second.stderr
        kept = (run / RECORDS_FILE).read_bytes()
        pids.update(descendants(driver.pid))
        for sig in signals:
            os.kill(driver.pid, sig)
            time.sleep(0.5)
        driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    err = log.read_text()
    assert driver.returncode == code, err[-3000:]
    assert err.strip().splitlines()[-1].endswith(f"continue with: dynas resume {run.resolve()}"), err[-2000:]
    assert not (run / "report").exists(), "an interrupted run wrote a report"
    deadline = time.monotonic() + 15
    while [p for p in pids if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not [p for p in pids if alive(p)], f"outlived the driver: {[pids[p] for p in pids if alive(p)]}"
    assert_whole(run, kept)


def fill(path: Path) -> None:
    """Write until the filesystem refuses."""
    with open(path, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


@pytest.mark.slow
def test_a_full_disk_stops_the_search_without_charging_the_trial_and_resume_retrains(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        (tmp_path / "exp.yaml").write_text(E2E % (30, 1))
        log, run = tmp_path / "search.log", disk / "run"
        proc = start(("search", "exp.yaml", "--storage", str(disk), "--name", "run", "--verbose", "0",
                      "--no-report"), tmp_path, log)
        wait_for(lambda: (run / "run.json").exists(), 300, proc, log)
        fill(disk / "filler")                  # the disk is full from the first trial on
        proc.wait(timeout=400)
        err = log.read_text()
        assert proc.returncode == 75, err[-3000:]
        last = err.strip().splitlines()[-1]
        assert "storage error" in last and f"dynas resume {run}" in last, last
        assert_whole(run)
        assert not list(iter_records(run)), "the full disk was charged to a trial"
        (disk / "filler").unlink()
        proc = start(("resume", str(run), "--verbose", "0", "--no-report"), tmp_path, log)
        proc.wait(timeout=400)
        assert proc.returncode == 0, log.read_text()[-3000:]
        assert [r.state for r in iter_records(run)] == ["complete"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
