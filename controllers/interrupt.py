"""SIGINT and SIGTERM during a search: stop cleanly, say how to continue.

``stop_on_signals`` replaces Ray Tune's own SIGINT handler (which exits 0, writes a
report and suggests ``Tuner.restore``) and Ray's SIGTERM handler for the duration of
a search:

- **first signal**: the driver stops at once (``SearchDriver.stop``: no new proposal,
  and a trial that fails from now on is abandoned, not recorded: a worker killed by the
  same Ctrl-C is the interrupt's fault, not the architecture's). At Tune's next step
  ``StopOnSignal`` raises ``Interrupted``; Tune stops every running trial on the way
  out, and ``ray_session`` shuts the private Ray instance down (no worker outlives the
  driver). Records and policy state were written at each tell, so nothing is lost;
  the running trials are asked again by ``dynas resume``.
- **second signal**: ``InterruptedNow`` (a ``BaseException``, so no ``except
  Exception`` on the way swallows it) is raised wherever the driver is: Tune's
  graceful trial stop is skipped and only the ``finally`` blocks run (Ray's shutdown,
  the removal of a half-written temporary file). Records are single appended lines and
  the policy state an atomic rename, so an interrupt at any point tears neither.
- signals that come while Ray shuts down (``shielded``) are ignored: that shutdown is
  what makes sure no worker outlives the driver.

The CLI root prints one line (``dynas resume RUN_DIR``) and exits 128 + the signal
number (130 for SIGINT, 143 for SIGTERM), without writing a report.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Signalled:
    signum: int = signal.SIGINT
    run_dir: Path | None = None
    command: str = "resume"                 # what continues the run: resume, calibrate

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def line(self) -> str:
        """The one line the CLI prints."""
        name = signal.Signals(self.signum).name
        where = f"dynas {self.command} {self.run_dir or 'RUN_DIR'}"
        return (f"dynas: interrupted by {name}; every finished trial is recorded; "
                f"continue with: {where}")


class Interrupted(_Signalled, Exception):
    """The graceful stop after a first SIGINT/SIGTERM."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


class InterruptedNow(_Signalled, KeyboardInterrupt):
    """The immediate stop after a second signal."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum


class StopRequest:
    """What the signal handler sets; ``on_stop`` hooks run (in the handler) on the first."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.on_stop: list[Callable[[str], None]] = []
        self._previous: dict[int, object] = {}

    def check(self) -> None:
        """Raise ``Interrupted`` when a signal came: call at a safe point."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def install(self) -> None:
        """(Re)install the handlers: ``ray.init`` sets its own SIGTERM handler, so call
        this again once Ray runs. Main thread only; elsewhere nothing changes."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            old = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, old)

    def restore(self) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if _SHIELD:
            return                                   # Ray is shutting down: let it finish
        if self.signum is None:
            self.signum = signum
            for hook in self.on_stop:
                hook(f"interrupted by {signal.Signals(signum).name}")
            return
        raise InterruptedNow(self.signum)


_SHIELD = False


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Signals are ignored inside (the shutdown that makes sure no worker outlives us)."""
    global _SHIELD
    before, _SHIELD = _SHIELD, True
    try:
        yield
    finally:
        _SHIELD = before


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Our handlers (not Tune's) for the ``with`` block; the old ones afterwards."""
    request = StopRequest()
    tune_handler = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    request.install()
    try:
        yield request
    finally:
        request.restore()
        if tune_handler is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = tune_handler
