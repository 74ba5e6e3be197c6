"""One driver per run directory: an exclusive ``fcntl.flock`` on the run directory.

Two ``dynas resume RUN &`` on one run would each rebuild the policy from the same
state and train the same architectures twice. ``search`` and ``resume`` therefore hold
this lock from before they read the run directory until they have written their last
record. A second driver is refused in one line naming the holder's pid (exit 2).

The lock is taken on the directory itself (Linux allows ``flock`` on a directory's
descriptor), so the lock is never a file that could be deleted or replaced under a
holder. The kernel drops it when its holder dies, however it dies (SIGKILL included),
so a lock left by a dead process is simply taken over. ``RUN_DIR/.lock`` holds the
holder's pid for the message only; it is removed when the lock is released, so a
refused or finished command leaves the directory as it found it. Taking the lock also
stops the processes a killed holder left running (``controllers.leftovers``).
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from dynas.search_space.errors import DynasError

from .leftovers import forget_helpers, stop_leftovers

PID_FILE = ".lock"


class RunLocked(DynasError):
    """Another live process drives this run directory."""


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the ``with`` block, or raise ``RunLocked``."""
    run_dir = Path(run_dir)
    try:
        fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as err:
        raise DynasError(f"{run_dir}: cannot open the run directory ({err.strerror or err})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir}: another dynas process (pid {holder(run_dir)}) is driving "
                            "this run; wait for it to finish or stop it first") from None
        pid_file = run_dir / PID_FILE
        stop_leftovers(run_dir)                   # what a killed holder left running
        with contextlib.suppress(OSError):       # a full disk must not stop the lock itself
            pid_file.write_text(f"{os.getpid()}\n")
        try:
            yield
        finally:
            forget_helpers(run_dir)
            with contextlib.suppress(OSError):
                pid_file.unlink()
    finally:
        os.close(fd)                              # releases the flock


def holder(run_dir: str | os.PathLike) -> str:
    """The pid the holder wrote, or '?' (not written yet, or the disk was full)."""
    try:
        text = (Path(run_dir) / PID_FILE).read_text().strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"
