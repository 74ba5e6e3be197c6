"""How long ``dynas search`` takes to stop after SIGINT / SIGTERM, and whether any of
its processes outlive it.

    python -m benchmarks.signal_stop [--repeats 1]

Each case starts the real command line on a tiny experiment (one trial at a time,
long enough that a trial is running), waits until a trial worker
(``ray::ImplicitFunc``) exists, sends the signal(s) to the driver by pid, and times
the interval to the driver's exit. It then checks every descendant pid it saw. It
prints the exit code, the median stop time over the repeats, and how many
descendants were still alive after the driver exited (the target is 0).
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = """
space:
  layers: [1]
  d_model: [16]
  layer:
    attention: [{kind: full, heads: [2]}]
    ffn: [{kind: dense, expansion: [2, 4]}]
task: {name: split_digits}
training: {steps_per_experience: 400, batch_size: 16, device: cpu}
search: {strategy: random, trials: 3, concurrent: 1}
"""
CASES = {"SIGINT": (signal.SIGINT,), "SIGINT twice": (signal.SIGINT, signal.SIGINT),
         "SIGTERM": (signal.SIGTERM,)}


def descendants(pid: int) -> dict[int, str]:
    """pid -> short name of every process below ``pid`` (from /proc)."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            procs[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]),
                                      stat[stat.index("(") + 1: stat.rindex(")")])
    found, frontier = {}, {pid}
    while frontier:
        children = {p: n for p, (parent, n) in procs.items() if parent in frontier and p not in found}
        found.update(children)
        frontier = set(children)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def one(signals: tuple[int, ...], workdir: Path, n: int) -> tuple[int, float, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT)])), "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    driver = subprocess.Popen([sys.executable, "-m", "dynas.analysis.cli", "search", "exp.yaml", "--storage", "st",
                               "--name", f"run{n}", "--verbose", "0"], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, str] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and driver.poll() is None:
        seen.update(descendants(driver.pid))
        if any(name.startswith("ray::Impl") for name in seen.values()):
            break
        time.sleep(0.3)
    time.sleep(2)
    seen.update(descendants(driver.pid))
    start = time.perf_counter()
    for sig in signals:
        driver.send_signal(sig)
        time.sleep(0.3)
    code = driver.wait(timeout=300)
    took = time.perf_counter() - start
    time.sleep(1)
    return code, took, sum(alive(p) for p in seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "exp.yaml").write_text(EXPERIMENT)
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        print(f"{'case':<14} {'exit':>4} {'stop s (median)':>16} {'alive after':>12}")
        n = 0
        for name, signals in CASES.items():
            runs = []
            for _ in range(args.repeats):
                n += 1
                runs.append(one(signals, workdir, n))
            print(f"{name:<14} {runs[0][0]:>4} {statistics.median(r[1] for r in runs):>16.1f} "
                  f"{max(r[2] for r in runs):>12}")
        print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
