"""``dynas search --address``: a real two-node Ray cluster with token authentication.

Both nodes are started here on loopback (``--node-ip-address=127.0.0.1``, one CPU
each, private ``--temp-dir``, their own ports) with ``RAY_AUTH_MODE=token`` and a token
file of our own (``RAY_AUTH_TOKEN_PATH``), so nothing touches ``~/.ray`` or another
Ray on the machine. They are stopped by signalling the process groups this test
created (never ``ray stop``, which would kill every Ray on the machine).

Ray rewrites a ``127.0.0.1`` bootstrap address to the machine's own primary IP; the
driver here sets ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so it stays on 127.0.0.1, and
the worker's own GCS connection goes to this machine's interface address (kernel
local routing: nothing leaves the host).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# the `ray` CLI of the interpreter running the tests (the venv may not be on PATH)
RAY_CLI = str(Path(sys.executable).with_name("ray")) if Path(sys.executable).with_name("ray").exists() else "ray"

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TINY = """
space:
  layers: [1]
  d_model: [16, 32]
  layer:
    attention: [{kind: full, heads: [2]}, {kind: sliding_window, heads: [2, 4], window: [2]}]
    ffn: [{kind: dense, expansion: [2]}]
task: {name: split_digits, options: {classes_per_experience: 5, patch: 4}}
training: {steps_per_experience: 10, batch_size: 32}
search: {strategy: random, trials: 3, concurrent: 2, max_failures: 0}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_flags() -> list[str]:
    """One CPU, loopback, and ports of its own (two nodes share this host)."""
    return ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats", "--block",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


class LoopbackCluster:
    """A head and a worker node; ``stop`` ends exactly the processes started here."""

    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        token = root / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "PYTHONPATH": path, "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
        self.env.pop("RAY_AUTH_TOKEN", None)
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")
        proc = subprocess.Popen([RAY_CLI, "start", *args, *node_flags()], env=self.env, cwd=self.root,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 60) -> None:
        head = self._start("head", ["--head", f"--port={self.port}", "--include-dashboard=false",
                                    f"--temp-dir={self.root / 'h'}"])
        deadline = time.monotonic() + timeout
        while True:
            assert head.poll() is None, (self.root / "head.log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "head node did not come up"
                time.sleep(0.5)
        self._start("worker", [f"--address={self.address}"])

    def driver_env(self, **changes: str | None) -> dict[str, str]:
        env = {**self.env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def alive_nodes(self, want: int, timeout: float = 60) -> int:
        code = (f"import ray, time\nray.init(address={self.address!r}, log_to_driver=False)\n"
                f"end = time.time() + {timeout}\n"
                f"while len([n for n in ray.nodes() if n['Alive']]) < {want} and time.time() < end:\n"
                f"    time.sleep(0.5)\nprint(len([n for n in ray.nodes() if n['Alive']]))")
        out = subprocess.run([sys.executable, "-c", code], env=self.driver_env(), cwd=REPO,
                             capture_output=True, text=True, timeout=timeout + 60)
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for proc in reversed(self.procs):          # worker first, then the head
            with _quiet():
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with _quiet():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for proc in self.procs:                    # children that outlived their parent
            with _quiet():
                os.killpg(proc.pid, signal.SIGKILL)


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        return kind is ProcessLookupError


@pytest.fixture(scope="module")
def cluster():
    # A short private root: Ray's socket paths under --temp-dir must stay < 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="dynas-rc-", dir="/tmp"))
    c = LoopbackCluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def dynas(cluster, args, **env_changes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dynas.analysis.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=cluster.driver_env(**env_changes))


def test_search_on_a_two_node_token_cluster(cluster, tmp_path):
    assert cluster.alive_nodes(2) == 2
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = dynas(cluster, ["search", str(tmp_path / "tiny.yaml"), "--address", cluster.address,
                          "--storage", str(tmp_path), "--name", "c", "--verbose", "0", "--no-report"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "c")
    records = [json.loads(line) for line in (tmp_path / "c" / "trials.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["cached_from"] is None]
    assert len(trained) == len({r["arch_id"] for r in trained}) == 3
    assert all(r["state"] == "complete" and r["experiences_done"] == 2 for r in trained)
    # every trial ran on a node of this cluster. Which node is Ray's choice: short trials
    # may all land on one. test_crash_recovery's node-kill test waits for a trial on the
    # worker node and checks it there.
    assert all(r["node"] for r in trained), [r["node"] for r in trained]
    # the trained models reached the driver's storage through Tune's checkpoints
    for r in trained:
        assert r["weights"]["path"].startswith("ray/") and r["weights"]["bytes"] > 0
        assert (tmp_path / "c" / r["weights"]["path"] / "weights.safetensors").is_file()
    run = json.loads((tmp_path / "c" / "run.json").read_text())
    assert run["address"] == cluster.address


def test_a_wrong_token_is_refused_in_one_line(cluster, tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    out = dynas(cluster, ["search", str(tmp_path / "tiny.yaml"), "--address", cluster.address,
                          "--storage", str(tmp_path), "--no-report"],
                RAY_AUTH_TOKEN="0" * 64, RAY_AUTH_TOKEN_PATH=None, RAY_gcs_server_port_wait_time_s="3")
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert err[-1].startswith(f"dynas: error: cannot connect to Ray at {cluster.address}:")
    assert "token" in err[-1].lower()
    assert not any(tmp_path.glob("tiny-*"))


def search_example(cluster, example: Path, run: Path, trials: int) -> list[dict]:
    """``dynas search EXAMPLE`` on the cluster into ``run``; its trained records, each
    complete over both of the wine task's experiences."""
    out = dynas(cluster, ["search", str(example), "--address", cluster.address, "--trials", str(trials),
                          "--storage", str(run.parent), "--name", run.name, "--verbose", "0", "--no-report"])
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["cached_from"] is None]
    assert all(r["state"] == "complete" and r["experiences_done"] == 2 for r in trained), records
    return trained


def test_a_plugin_task_and_strategy_on_the_cluster(cluster, tmp_path):
    """examples/plugins: the wine task and the local-search strategy. The nodes'
    PYTHONPATH holds dynas but not examples/plugins, so the workers can import the task
    only from what the driver shipped in Ray's runtime environment (py_modules)."""
    example = REPO / "examples" / "plugins" / "wine_search.yaml"
    trained = search_example(cluster, example, tmp_path / "w", 3)
    assert len(trained) == len({r["arch_id"] for r in trained}) == 3
    assert all(r["policy"] == "local_search" and r["node"] for r in trained)
    run = json.loads((tmp_path / "w" / "run.json").read_text())
    assert run["plugins"] == [str(example.parent / "wine_task.py"), str(example.parent / "local_search.py")]


def test_a_plugin_attention_kind_with_its_own_field_on_the_cluster(cluster, tmp_path):
    """examples/plugins/conv_search.yaml: the conv_mixer kind (a ``kernel`` field, no
    heads) reaches the workers' spec and builder registries only through the runtime
    environment; the trained records hold its field in ``extra``."""
    trained = search_example(cluster, REPO / "examples" / "plugins" / "conv_search.yaml", tmp_path / "k", 4)
    assert trained and all(r["node"] for r in trained)
    convs = [layer["attention"] for r in trained for layer in r["arch"]["layers"]
             if layer["attention"]["kind"] == "conv_mixer"]
    assert convs and all(a["extra"]["kernel"] in (3, 5) and a["heads"] == 1 for a in convs), trained


def test_a_plain_space_with_a_plugin_evaluator_searched_and_resumed_on_the_cluster(cluster, tmp_path):
    """examples/plugins/plain_search.yaml: the evaluator reaches the workers only through
    the runtime environment; resume imports the plugin again from run.json."""
    example = REPO / "examples" / "plugins" / "plain_search.yaml"
    run = tmp_path / "plain"
    for args in (["search", str(example), "--trials", "3", "--storage", str(tmp_path), "--name", "plain"],
                 ["resume", str(run), "--extra-trials", "2", "--trust-plugins"]):
        out = dynas(cluster, [*args, "--address", cluster.address, "--verbose", "0", "--no-report"])
        assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    trained = [r for r in records if r["cached_from"] is None]
    assert len(trained) == len({r["arch_id"] for r in trained}) == 5
    assert all(r["state"] == "complete" and set(r["metrics"]) == {"val_accuracy", "cost"} for r in trained)
    assert all(r["policy"] == "tpe" and r["node"] for r in trained)
    assert json.loads((run / "run.json").read_text())["plugins"] == [str(example.parent / "toy_evaluator.py")]
