"""One run, assembled once: ``start_search``, ``resume_search`` and ``confirm_run``.

A ``RunSession`` owns a run directory while a command works on it: the lock
(``controllers.lock``, one driver per run), ``run.json`` (written here only, from
``prepare.run_info``), the driver and the policy state (built and restored once, by
``prepare.build_driver``), and the phases, in this order:

    supernet (search.evaluation: supernet) -> search -> confirm (search.confirm) -> baselines

Every phase is written once against ``Executor`` (``controllers.run.executor``); the
executor passed in decides where trials train (this process, or Ray Tune). The run
directory holds the whole state (``controllers.records``), never an executor's, so
any executor resumes or confirms a run that any other made.

``trials`` counts distinct architectures that finished (complete, failed or pruned; a
candidate rejected as infeasible counts as failed); duplicates a policy proposes again
are answered from the cache, recorded with ``cached_from`` and never counted or
retrained. Resuming rebuilds the policy from ``policy_state.json`` and the duplicate
cache from ``trials.jsonl``; proposals asked but never finished before a kill are
simply asked again. What stays to watch (training curves, the search's objectives,
failed trials' tracebacks) and what is printed while it runs: ``controllers.tracking``.

Boundaries: ``--name`` is one safe path component inside the resolved ``--storage``
(``check_run_name``); SIGINT/SIGTERM stop the search cleanly
(``controllers.interrupt``); a full disk, an I/O error or a lost node stops it with
``InfrastructureError`` and is never recorded as a trial's failure
(``controllers.outcomes.infrastructure_fault``).
"""
from __future__ import annotations

import contextlib
import re
import signal
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from dynas.search_space.errors import ConfigError, DynasError, InfrastructureError
from dynas.search_space.experiment import Experiment, load_experiment

from .. import outcomes
from ..interrupt import Interrupted, InterruptedNow, StopRequest, stop_on_signals
from ..lock import run_lock
from ..records import (EXPERIMENT_COPY, RUN_FILE, TrialRecord, create_run_dir, iter_records, read_run,
                       require_run_dir, trained_count, utc_now, write_json_atomic)
from ..tracking import NORMAL, ObjectiveCurves, Progress, check_loggers
from .confirm import queued_driver, run_confirmations
from .executor import Executor
from .prepare import build_driver, experiment_text, prepare_search, run_info, train_search_baselines
from .supernet import ensure_supernet

__all__ = ["RunSession", "start_search", "resume_search", "confirm_run", "new_run_dir", "report_counts"]

MAX_RUN_NAME = 100
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (MAX_RUN_NAME - 1))
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class RunSession:
    """A run directory, its experiment and settings, and the executor its phases use."""

    experiment: Experiment
    search: Any                        # SearchSettings, overrides applied (prepare_search)
    run_dir: Path
    executor: Executor
    verbose: int = NORMAL
    stop: StopRequest | None = None

    def run_phases(self, records: Sequence[TrialRecord], target: int, phase: str) -> None:
        """supernet -> search -> confirm -> baselines, until ``target`` trials are done."""
        ensure_supernet(self.experiment, self.search, self.run_dir, self.executor, self.verbose)
        self.check_stop()
        self.search_phase(records, target, phase)
        self.check_stop()
        if self.search.confirm.enabled:
            self.confirm_phase(self.search.confirm.top, self.search.confirm.seeds)
        train_search_baselines(self.experiment, self.search, self.run_dir)

    def search_phase(self, records: Sequence[TrialRecord], target: int, phase: str) -> None:
        """The policy's proposals, through the executor, until ``target`` distinct
        architectures finished; progress lines and the search's curves as they do."""
        listeners = [Progress(self.search.objectives, target, self.run_dir, records=records, level=self.verbose),
                     ObjectiveCurves(self.search.objectives, self.run_dir, records)]
        driver = build_driver(self.experiment, self.search, self.run_dir, budget=target - trained_count(records),
                              records=records, listeners=listeners)
        if self.stop is not None:
            self.stop.on_stop.append(driver.stop)
        try:
            self.executor.drive(driver, self.experiment, self.search, self.run_dir, phase,
                                verbose=self.verbose, stop=self.stop)
        finally:
            for listener in listeners:
                getattr(listener, "close", lambda: None)()
        if driver.fault:
            raise InfrastructureError(f"{self.run_dir}: {driver.fault}; the search stopped and the trial was "
                                      f"not charged with it; fix that, then: dynas resume {self.run_dir}")

    def confirm_phase(self, top: int, seeds: int) -> bool:
        """Seed repeats of the ``top`` best candidates; False when none is complete."""
        driver = queued_driver(self.experiment, self.search, self.run_dir, top, seeds)
        if driver is None:
            return False
        run_confirmations(self.executor, driver, self.experiment, self.search, self.run_dir, self.verbose)
        return True

    def check_stop(self) -> None:
        if self.stop is not None:
            self.stop.check()


def start_search(experiment: Experiment, run_dir: Path, executor: Executor, *, strategy: str | None = None,
                 trials: int | None = None, concurrent: int | None = None, seed: int | None = None,
                 verbose: int = NORMAL, **info: Any) -> Path:
    """A new run of ``experiment`` in ``run_dir`` (missing or empty); ``info``: more
    run.json keys (``address``)."""
    search = prepare_search(experiment, strategy, trials, concurrent, seed)
    with experiment.attribute_errors():
        check_loggers(search.loggers)
    with _stopping(run_dir) as stop, executor.session(search, verbose):
        stop.install()                      # ray.init set a SIGTERM handler of its own
        create_run_dir(run_dir, run_info(experiment, search, run_dir.name, executor.name, **info),
                       {EXPERIMENT_COPY: experiment_text(experiment)})
        with run_lock(run_dir):
            RunSession(experiment, search, run_dir, executor, verbose, stop).run_phases([], search.trials, "search")
    report_counts(run_dir, search.trials)
    return run_dir


def resume_search(run_dir: str | Path, executor: Executor, extra_trials: int = 0, *,
                  verbose: int = NORMAL) -> Path:
    """Continue a killed (or extend a finished) search until it holds ``trials`` (+
    ``extra_trials``) distinct finished architectures."""
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):                 # before anything is read: one driver per run
        return _resume(run_dir, executor, extra_trials, verbose)


def _resume(run_dir: Path, executor: Executor, extra_trials: int, verbose: int) -> Path:
    run = read_run(run_dir)
    if run.get("kind") == "calibrate":       # controllers.run.calibrate: not a search to extend
        raise DynasError(f"{run_dir}: a calibration, not a search; finish it with: dynas calibrate {run_dir}")
    missing = [key for key in ("trials", "strategy", "seed") if key not in run]
    if missing:
        raise DynasError(f"{run_dir / RUN_FILE}: missing {', '.join(missing)}")
    if extra_trials < 0:
        raise DynasError(f"--extra-trials must be >= 0, got {extra_trials}")
    experiment, search = _reopen(run_dir, run, int(run["trials"]) + int(extra_trials))
    with experiment.attribute_errors():
        check_loggers(search.loggers)
    records = list(iter_records(run_dir))
    if search.trials - trained_count(records) <= 0:
        _extend(run_dir, run, extra_trials, search.trials)
        print(f"{run_dir}: already holds {trained_count(records)} of {search.trials} trials")
        train_search_baselines(experiment, search, run_dir)    # a kill may have cut them short
        return run_dir
    with _stopping(run_dir) as stop, executor.session(search, verbose):
        stop.install()
        _extend(run_dir, run, extra_trials, search.trials)   # once the executor is up: a refused resume changes nothing
        RunSession(experiment, search, run_dir, executor, verbose, stop).run_phases(records, search.trials, "resume")
    report_counts(run_dir, search.trials)
    return run_dir


def confirm_run(run_dir: str | Path, executor: Executor, top: int, seeds: int, *, verbose: int = 1) -> Path:
    """Give the ``top`` best candidates of a finished run ``seeds`` seed repeats each
    (``controllers.run.confirm``)."""
    if top < 1 or seeds < 1:
        raise DynasError(f"--top and --seeds must be >= 1, got top={top}, seeds={seeds}")
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):                 # one driver per run (controllers.lock)
        run = read_run(run_dir)
        experiment, search = _reopen(run_dir, run, run.get("trials"))
        driver = queued_driver(experiment, search, run_dir, top, seeds)
        if driver is None:
            raise DynasError(f"{run_dir}: no complete trial to confirm")
        if driver.queued:
            with executor.session(search, verbose):
                run_confirmations(executor, driver, experiment, search, run_dir, verbose)
    return run_dir


def _reopen(run_dir: Path, run: dict, trials: Any) -> tuple[Experiment, Any]:
    """The run's own experiment copy and its search settings, as run.json recorded them."""
    experiment = load_experiment(run_dir / run.get("experiment", EXPERIMENT_COPY), plugins=run.get("plugins"))
    return experiment, prepare_search(experiment, run.get("strategy"), trials, run.get("concurrent"),
                                      run.get("seed"))


def _extend(run_dir: Path, run: dict, extra_trials: int, target: int) -> None:
    if extra_trials:
        run.setdefault("extensions", []).append({"extra_trials": extra_trials, "at": utc_now()})
        write_json_atomic(run_dir / RUN_FILE, {**run, "trials": target})


def report_counts(run_dir: Path, target: int) -> dict[str, int]:
    records = list(iter_records(run_dir))
    counts = {s: sum(r.state == s and r.cached_from is None and r.repeat_of is None
                     and not r.baseline for r in records)
              for s in ("complete", "failed", "pruned")}
    counts["cached"] = sum(r.cached_from is not None for r in records)
    counts["repeats"] = sum(r.repeat_of is not None for r in records)
    done = trained_count(records)
    note = "" if done >= target else f" (short of {target}: see the warnings above)"
    repeats = f", {counts['repeats']} seed repeats" if counts["repeats"] else ""
    print(f"{done} trials: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pruned']} pruned, {counts['cached']} duplicates reused{repeats}{note}")
    baselines = [r for r in records if r.baseline]
    if baselines:
        print("baselines: " + ", ".join(f"{r.baseline} ({r.state})" for r in baselines))
    return counts


# --- pieces -------------------------------------------------------------------------
def check_run_name(name: str) -> str:
    """``--name`` is one path component of at most 100 safe characters (letters, digits,
    ``. _ -``, not starting with a dot or dash), so a run directory never lands outside
    ``--storage`` (``../x``, ``/etc/x``) nor fails on a name the filesystem refuses."""
    if not RUN_NAME.fullmatch(name):
        raise ConfigError("--name", f"{name[:60]!r} is not a run name: use 1-{MAX_RUN_NAME} letters, "
                          "digits, '.', '_' or '-', starting with a letter or digit (no '/')")
    return name


def new_run_dir(storage: Path, name: str | None, prefix: str) -> Path:
    """``storage/name`` (checked), or ``storage/prefix-UTCTIME``; ``storage`` resolved."""
    storage = storage.expanduser().resolve()
    if name is not None:
        run_dir = storage / check_run_name(name)
        if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
            raise DynasError(f"{run_dir}: exists and is not a run directory")
        if run_dir.exists() and any(run_dir.iterdir()):
            raise DynasError(f"{run_dir}: run directory exists and is not empty; "
                             f"use `dynas resume {run_dir}`")
        return run_dir
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    prefix = UNSAFE.sub("_", prefix).lstrip("._-")[: MAX_RUN_NAME - len(stamp) - 6] or "run"
    run_dir, n = storage / f"{prefix}-{stamp}", 1
    while run_dir.exists():
        n += 1
        run_dir = storage / f"{prefix}-{stamp}-{n}"
    return run_dir


@contextlib.contextmanager
def _stopping(run_dir: Path) -> Iterator[StopRequest]:
    """Signals stop the search (``controllers.interrupt``); the one line names the run.
    A storage fault (full disk, I/O error) stops it too, in one line, never charged to
    a trial (``controllers.outcomes.storage_fault``)."""
    with stop_on_signals() as stop:
        try:
            yield stop
        except (Interrupted, KeyboardInterrupt) as err:
            # Ray's C layer turns an exception raised in a signal handler during one of
            # its calls into a plain KeyboardInterrupt: name the signal and run again.
            if not isinstance(err, (Interrupted, InterruptedNow)):
                err = InterruptedNow(stop.signum or signal.SIGINT)
            err.run_dir = run_dir
            raise err from None
        except OSError as err:
            fault = outcomes.storage_fault(err)
            if fault is None:
                raise
            raise InfrastructureError(f"{run_dir}: {fault}; the search stopped and nothing was "
                                      f"charged to a trial; free space, then: dynas resume {run_dir}") from None
