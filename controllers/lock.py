"""One driver per run directory: an exclusive ``fcntl.flock`` on ``RUN_DIR/.lock``.

Two ``dynas resume RUN &`` on one run would each rebuild the policy from the same
state and train the same architectures twice. ``search`` and ``resume`` therefore hold
this lock from before they read the run directory until they have written their last
record. A second driver is refused in one line naming the holder's pid (exit 2).

The kernel drops a ``flock`` when its holder dies, however it dies (SIGKILL included),
so a lock file left by a dead process is simply taken over: the pid written in it is
only the message, never the test of whether the lock is held.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from search_space.errors import DynasError

LOCK_FILE = ".lock"


class RunLocked(DynasError):
    """Another live process drives this run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold ``run_dir``'s lock for the ``with`` block, or raise ``RunLocked``."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise DynasError(f"{path}: cannot open the run lock ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            raise RunLocked(f"{run_dir}: another dynas process (pid {holder}) is driving this run; "
                            "wait for it or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        os.close(fd)                # releases the flock; the file stays (harmless, reused)


def _holder(fd: int) -> str:
    """The pid the holder wrote, or '?' while it has not written it yet."""
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"
