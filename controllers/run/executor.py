"""The executor seam: where a run's trials and its supernet train.

A run's phases (``controllers.run.session``) are written once against ``Executor``; the
place they run is an object passed in, as Ray's ``Tuner`` takes a ``Trainer`` and
Lightning's ``Trainer`` a ``Strategy``:

- ``InProcess`` (``controllers.run.in_process``): one trial at a time in this process,
  no Ray (tests, debugging, a laptop);
- ``RayTune`` (``controllers.tune.executor``): trials as Ray Tune trials on a private
  local instance or a cluster, with ``ConcurrencyLimiter``, ASHA, retries.

No phase asks which executor it has. The run directory holds the whole state of a run
(``controllers.records``), never an executor's, so any executor resumes or confirms a
run another one made; ``name`` is recorded as run.json's ``runner`` for the record.
Reference baselines (``search.baselines``) are few, and train in the driver's process
whichever executor runs the trials (``controllers.run.baselines``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ContextManager, Protocol

from ..driver import SearchDriver
from ..interrupt import StopRequest


class Executor(Protocol):
    name: str            # run.json's "runner": "local" (in-process) or "ray"

    def session(self, search: Any, verbose: int) -> ContextManager[None]:
        """Held while a command runs its phases (Ray: the connection to the cluster)."""

    def drive(self, driver: SearchDriver, experiment: Any, search: Any, run_dir: Path, phase: str, *,
              verbose: int, stop: StopRequest | None = None) -> None:
        """Ask ``driver`` for proposals, train each, tell it the result, until the driver
        is finished. ``phase`` (search, resume, confirm) names the executor's own storage
        for this stretch of work. A fault of the machine sets ``driver.fault`` or raises
        ``InfrastructureError``; a user's error propagates."""

    def train_supernet(self, experiment: Any, search: Any, run_dir: Path, out: Path, verbose: int) -> None:
        """Train the run's weight-sharing supernet and write it to ``out``; a killed
        training continues from its last experience when run again."""
