"""Processes a killed driver left behind, found by the PIDs it recorded and stopped.

A driver that starts its own Ray instance starts Ray's helpers with it (the GCS, the
raylet, ``DashboardAgent``, ``RuntimeEnvAgent``, workers). ``ray.shutdown`` stops them
when the driver ends normally or on a signal; after a SIGKILL nobody does, and some
outlive the driver. So a driver, once its executor is up, records the processes below
it in ``RUN_DIR/.helpers`` (pid and kernel start time, so a reused pid is never
mistaken for one of them), and removes the file when it releases the run. The next
command that takes the run's lock (``controllers.lock``: the previous holder is dead
then) finds the file, stops each recorded process still alive with the same start
time (SIGTERM, then SIGKILL after ``GRACE_S``), and removes it. Linux ``/proc`` only;
elsewhere nothing is recorded.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

HELPERS_FILE = ".helpers"
GRACE_S = 3.0


def _stat(pid: int) -> tuple[int, int, str] | None:
    """``(parent pid, start time in clock ticks, state)`` of ``pid``, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(pid: int) -> dict[int, int]:
    """pid -> start time of every process below ``pid``."""
    procs = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = _stat(int(entry.name))
            if info is not None:
                procs[int(entry.name)] = info
    found: dict[int, int] = {}
    frontier = {pid}
    while frontier:
        children = {p: start for p, (parent, start, _) in procs.items() if parent in frontier and p not in found}
        found.update(children)
        frontier = set(children)
    return found


def record_helpers(run_dir: str | os.PathLike) -> None:
    """Write the processes below this driver to ``RUN_DIR/.helpers`` (none: no file)."""
    if not Path("/proc/self/stat").exists():
        return
    helpers = descendants(os.getpid())
    if helpers:
        with contextlib.suppress(OSError):       # a full disk must not stop the search
            (Path(run_dir) / HELPERS_FILE).write_text(json.dumps({str(p): t for p, t in helpers.items()}))


def forget_helpers(run_dir: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        (Path(run_dir) / HELPERS_FILE).unlink()


def stop_leftovers(run_dir: str | os.PathLike) -> list[int]:
    """Stop what a dead driver of ``run_dir`` recorded and is still alive; the pids stopped.
    Call it only while holding the run's lock (the recorder is then dead)."""
    path = Path(run_dir) / HELPERS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        recorded = None
    forget_helpers(run_dir)
    if not isinstance(recorded, dict):
        return []
    mine = {os.getpid()} | set(descendants(os.getpid()))
    targets = [int(p) for p, start in recorded.items()
               if str(p).isdigit() and int(p) not in mine and _alive_as(int(p), start)]
    for pid in targets:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(_alive_as(p, recorded[str(p)]) for p in targets):
        time.sleep(0.1)
    for pid in targets:
        if _alive_as(pid, recorded[str(pid)]):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + GRACE_S            # SIGKILL cannot be ignored: only delivery waits
    while time.monotonic() < deadline and any(_alive_as(p, recorded[str(p)]) for p in targets):
        time.sleep(0.05)
    if targets:
        print(f"dynas: {run_dir}: stopped {len(targets)} process(es) a killed driver left "
              f"(pids {', '.join(map(str, targets))})", file=sys.stderr)
    return targets


def _alive_as(pid: int, start: object) -> bool:
    """``pid`` is alive (not a zombie) and started when the record says."""
    info = _stat(pid)
    return info is not None and info[2] != "Z" and info[1] == start
