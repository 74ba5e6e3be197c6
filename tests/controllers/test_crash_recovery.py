"""What survives what: a search driver killed with SIGKILL at random moments, and a
Ray worker node killed mid-trial.

The driver test runs the real command line in its own process group with a private
Ray temp dir (``RAY_TMPDIR``), so every Ray process it starts can be found afterwards
by that path and ended by pid: never ``ray stop``, never a name match. Kills are chained
(search, killed; resume, killed; resume, killed; resume to the end) so three kills at
seeded random moments cost one full search, and after each kill the run directory
must already be consistent: intact records kept, nothing duplicated, the policy state
a whole file that a fresh policy restores exactly.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from dynas.controllers.policies import make_policy
from dynas.controllers.records import POLICY_STATE_FILE, RUN_FILE, iter_records
from dynas.search_space.experiment import load_experiment

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TRIALS = 6
KILLS = 3
TINY = """
space:
  layers: [1]
  d_model: [16]
  layer:
    attention:
      - {kind: full, heads: [2, 4]}
      - {kind: sliding_window, heads: [2], window: [2]}
      - {kind: linear, heads: [2]}
    ffn:
      - {kind: dense, expansion: [2, 4]}
      - {kind: moe, experts: [2], top_k: [1], expansion: 2}
task: {name: split_digits, options: {classes_per_experience: 5, patch: 4}}
training: {steps_per_experience: 60, batch_size: 32, device: cpu}   # a few seconds a trial
search: {trials: %d, concurrent: 2, max_failures: 1, ppo: {warmup: 1, batch: 2}}
""" % TRIALS


# --- processes ----------------------------------------------------------------------------
def ray_processes(marker: str) -> list[int]:
    """Pids whose command line or environment names ``marker`` (our private RAY_TMPDIR)."""
    found, needle = [], marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:                       # gone, or not ours to read
            continue
    return found


def reap(marker: str, grace: float = 2.0) -> list[int]:
    """Wait for the killed driver's Ray to wind down on its own, then SIGKILL what is
    left, by pid. Returns the pids that had to be killed."""
    deadline = time.monotonic() + grace
    while ray_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = ray_processes(marker)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while ray_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ray_processes(marker), "Ray processes of a killed driver survived SIGKILL"
    return left


def dynas(args: list[str], env: dict, kill: "Callable[[float, int], bool] | None" = None,
          run_dir: Path | None = None, timeout: float = 300):
    """Run ``dynas ARGS`` in its own process group. ``kill(seconds, records)`` is polled
    with the time since start and the number of records in ``run_dir``; when it says so
    the whole group gets SIGKILL. Returns (exit code, None when killed; stderr tail)."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "dynas.analysis.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    start = time.monotonic()
    code = None
    while (code := proc.poll()) is None:
        elapsed = time.monotonic() - start
        if kill is not None and kill(elapsed, count_records(run_dir)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
            break
        if elapsed > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"dynas {args[0]} did not finish in {timeout} s")
        time.sleep(0.1)
    log.seek(0)
    return code, log.read().decode(errors="replace")[-3000:]


def count_records(run_dir: Path | None) -> int:
    return len(list(iter_records(run_dir))) if run_dir is not None and run_dir.exists() else 0


def early(delay: float):
    """At ``delay`` seconds, or at the second record if that comes first: on a quiet
    machine a whole tiny search can finish before a purely timed kill."""
    return lambda elapsed, records: elapsed >= delay or records >= 2


def after_next_record(already: int, extra: float):
    """Kill ``extra`` seconds after the first record this process writes: the moment
    between a record and the policy state, with other trials mid-flight."""
    seen: list[float] = []

    def due(elapsed: float, records: int) -> bool:
        if records > already and not seen:
            seen.append(elapsed)
        return bool(seen) and elapsed >= seen[0] + extra
    return due


# --- the run directory's invariants ----------------------------------------------------------
def check_consistent(run_dir: Path, strategy: str, before: list) -> list:
    """What a crash may never do: lose an intact record, duplicate a trained arch or a
    proposal id, or leave a policy state that a fresh policy cannot restore exactly."""
    records = list(iter_records(run_dir))
    keys = [(r.proposal_id, r.arch_id, r.state) for r in records]
    assert [k for k in keys if k in set(before)] == before, "records written before a kill were lost"
    assert len({r.proposal_id for r in records}) == len(records), f"duplicate proposal ids: {keys}"
    trained = [r.arch_id for r in records if r.cached_from is None]
    assert len(set(trained)) == len(trained), f"an architecture was trained twice: {keys}"
    assert len(trained) <= TRIALS
    state_file = run_dir / POLICY_STATE_FILE
    if state_file.exists():
        saved = json.loads(state_file.read_text())          # atomic: never half a file
        exp = load_experiment(run_dir / "experiment.yaml")
        run = json.loads((run_dir / RUN_FILE).read_text())
        policy = make_policy(strategy, exp.space, exp.search.objectives, run["seed"], exp.search)
        policy.load_state_dict(saved)
        assert json.loads(json.dumps(policy.state_dict())) == saved
    return keys


def kill_and_resume(strategy: str, root: Path) -> list:
    """Search, SIGKILL it, resume, SIGKILL, resume, SIGKILL, resume to the end; checks
    the run directory after every kill. Returns what happened at each kill."""
    rng = random.Random(f"sigkill-{strategy}")
    ray_tmp = tempfile.mkdtemp(prefix="dynas-k", dir="/tmp")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])), "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    (root / "tiny.yaml").write_text(TINY)
    run_dir = root / "runs" / "k"
    search = ["search", str(root / "tiny.yaml"), "--strategy", strategy, "--trials", str(TRIALS),
              "--name", "k", "--storage", str(root / "runs"), "--no-report", "--verbose", "0"]
    resume = ["resume", str(run_dir), "--no-report", "--verbose", "0"]
    keys: list = []
    history = []
    try:
        for i in range(KILLS):
            # the first kill at a random moment (start-up or mid-trial); the others
            # up to a second after the next record is written
            when = early(rng.uniform(4, 25)) if i == 0 else \
                after_next_record(count_records(run_dir), rng.uniform(0, 1))
            args = resume if (run_dir / RUN_FILE).exists() else search
            code, err = dynas(args, env, when, run_dir)
            assert code in (None, 0), err
            history.append((args[0], code, count_records(run_dir), len(reap(ray_tmp))))
            if run_dir.exists():
                # a run directory exists whole (run.json + experiment) or not at all
                assert (run_dir / RUN_FILE).is_file() and (run_dir / "experiment.yaml").is_file(), \
                    sorted(p.name for p in run_dir.iterdir())
                keys = check_consistent(run_dir, strategy, keys)
        code, err = dynas(resume if (run_dir / RUN_FILE).exists() else search, env)
        assert code == 0, err
        assert not reap(ray_tmp, grace=10), "a finished search left Ray processes behind"
    finally:
        reap(ray_tmp, grace=0)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    keys = check_consistent(run_dir, strategy, keys)
    trained = [r for r in iter_records(run_dir) if r.cached_from is None]
    assert len(trained) == TRIALS, (history, keys)
    assert all(r.state == "complete" and r.experiences_done == 2 for r in trained), \
        [(r.state, r.reason) for r in trained]
    return history


def test_sigkilled_searches_resume_with_nothing_lost_or_duplicated(tmp_path):
    """ppo and nsga2 side by side (each with its own private Ray): the processes mostly
    wait on Ray start-up, so two at once take little longer than one."""
    strategies = ("ppo", "nsga2")
    for s in strategies:
        (tmp_path / s).mkdir()
    with ThreadPoolExecutor(len(strategies)) as pool:
        futures = {s: pool.submit(kill_and_resume, s, tmp_path / s) for s in strategies}
        results = {s: f.result() for s, f in futures.items()}
    for s, history in results.items():
        print(f"{s}: kills (command, exit code, records after, Ray processes reaped) {history}")
        assert len(history) == KILLS and all(code is None for _, code, _, _ in history), history  # real kills


# --- a worker node dies mid-trial ------------------------------------------------------------
LONG = """
space:
  layers: [1]
  d_model: [16]
  layer:
    attention: [{kind: full, heads: [2]}, {kind: sliding_window, heads: [2], window: [2]}]
    ffn: [{kind: dense, expansion: [2]}]
task: {name: split_digits, options: {classes_per_experience: 2, patch: 4}}
training: {steps_per_experience: 150, batch_size: 32, device: cpu}
search: {strategy: random, trials: 2, concurrent: 2, max_failures: 2}
"""


def _cluster_module():
    """``LoopbackCluster`` of test_cluster.py (loaded by path: tests are not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_dynas_cluster_helpers", Path(__file__).with_name("test_cluster.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, process group) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[2])


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (a node's ``ray start``): the node's processes."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _stat(int(entry.name))[0]
            except (OSError, IndexError):
                continue
    out = []
    for pid in parents:
        p = pid
        while p > 1 and p in parents:
            p = parents[p]
            if p == root:
                out.append(pid)
                break
    return out


def trial_on_node(tune_dir: Path, node_pids: list[int]) -> Path | None:
    """The trial running in one of ``node_pids`` (Tune runs a trial with its working
    directory named like its trial directory) once the driver has taken in a checkpoint of
    it: a checkpoint folder alone may still be in flight (the driver registers it with the
    result, when it writes the trial's result.json), and a kill then rightly restarts."""
    for pid in node_pids:
        try:
            name = Path(os.readlink(f"/proc/{pid}/cwd")).name
        except OSError:
            continue
        trial = next(tune_dir.glob(f"*/{name}"), None) if name.startswith("trial_") else None
        result = trial / "result.json" if trial is not None else None
        if result is not None and any(trial.glob("checkpoint_*")) and result.is_file() \
                and result.stat().st_size > 0:
            return trial
    return None


@pytest.mark.cluster
def test_a_trial_on_a_killed_worker_node_is_retried_from_its_checkpoint(tmp_path):
    helpers = _cluster_module()
    root = Path(tempfile.mkdtemp(prefix="dynas-nk-", dir="/tmp"))
    cluster = helpers.LoopbackCluster(root)
    # notice a dead node within seconds, not the default ~30 s
    cluster.env.update({"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
                        "RAY_health_check_failure_threshold": "3"})
    (tmp_path / "long.yaml").write_text(LONG)
    run_dir = tmp_path / "n"
    try:
        cluster.start()
        assert cluster.alive_nodes(2) == 2
        worker = cluster.procs[1]
        driver = subprocess.Popen(
            [sys.executable, "-m", "dynas.analysis.cli", "search", str(tmp_path / "long.yaml"), "--address",
             cluster.address, "--storage", str(tmp_path), "--name", "n", "--verbose", "0", "--no-report"],
            cwd=REPO, env=cluster.driver_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True)
        victim, deadline = None, time.monotonic() + 240
        while victim is None:
            assert driver.poll() is None, driver.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no trial with a checkpoint ran on the worker node"
            victim = trial_on_node(run_dir / "ray", descendants(worker.pid))
            time.sleep(0.2)
        # the whole node dies at once: `ray start`, raylet, its agents and the trial worker
        for pid in [worker.pid, *descendants(worker.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        checkpoints = sorted(p.name for p in victim.glob("checkpoint_*"))
        _, err = driver.communicate(timeout=300)
        assert driver.returncode == 0, err.decode()[-3000:]
    finally:
        if "driver" in locals() and driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    trained = [r for r in iter_records(run_dir) if r.cached_from is None]
    assert len(trained) == 2 and all(r.state == "complete" for r in trained), [(r.state, r.reason) for r in trained]
    assert all(r.experiences_done == 5 and len(r.acc_matrix) == 5 for r in trained)
    # the retry ran in another process (on the surviving node) and resumed from the
    # checkpoint: its first report has iterations_since_restore == 1 but continues the
    # experience count. (Tune may or may not keep the dead run's rows in result.json.)
    assert checkpoints and "Failure # 1" in (victim / "error.txt").read_text()
    rows = [json.loads(line) for line in (victim / "result.json").read_text().splitlines()]
    restarts = [i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1]
    first = rows[restarts[-1]]
    before, after = rows[:restarts[-1]], rows[restarts[-1]:]
    assert first["experiences_done"] > 1, [(r["pid"], r["experiences_done"]) for r in rows]
    assert {r["pid"] for r in after}.isdisjoint(r["pid"] for r in before)
    if before:  # the dead run's rows were kept: the retry picks up at most one experience
        # after the last one the dead run saved. Its newest checkpoint can outrun its rows
        # (the node died between Tune persisting checkpoint_<k>, saved after experience
        # k + 1, and writing that report's row), so the bound is the later of the two.
        saved = max(int(name.rsplit("_", 1)[1]) + 1 for name in checkpoints)
        assert first["experiences_done"] <= max(before[-1]["experiences_done"], saved) + 1
    assert after[-1]["experiences_done"] == 5
    print(f"worker node killed with {checkpoints}, after experiences {[r['experiences_done'] for r in before]}; "
          f"the retry reported {[r['experiences_done'] for r in after]}")
