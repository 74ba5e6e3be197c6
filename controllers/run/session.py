"""One run, assembled once: ``start_search``, ``resume_search`` and ``confirm_run``.

A ``RunSession`` owns a run directory while a command works on it: the lock
(``controllers.lock``, one driver per run), ``run.json`` (written here only, from
``prepare.run_info``), the driver and the policy state (built and restored once, by
``prepare.build_driver``), and the phases, in this order:

    supernet (search.evaluation: supernet) -> search -> rungs (search.fidelity) -> confirm
    (search.confirm) -> baselines

With ``search.fidelity`` the search is rung 0, at its budget; the rungs above train its
best candidates again at growing budgets (``controllers.run.fidelity``), and confirm and
the baselines train at the top rung's budget, beside the front they are compared with.

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
import dataclasses
import os
import re
import signal
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from dynas.search_space.boundary import inside
from dynas.search_space.errors import ConfigError, DynasError, InfrastructureError
from dynas.search_space.experiment import Experiment, load_experiment
from dynas.search_space.settings import RANGES, ConfirmSettings, SearchSettings

from .. import outcomes
from ..interrupt import Interrupted, InterruptedNow, StopRequest, stop_on_signals
from ..leftovers import record_helpers
from ..lock import run_lock
from ..run_schema import missing_keys
from ..records import (EXPERIMENT_COPY, RUN_FILE, TrialRecord, create_run_dir, iter_records, read_run,
                       require_run_dir, trained_count, utc_now, write_json_atomic)
from ..tracking import NORMAL, ObjectiveCurves, Progress, TrialHParams, check_loggers
from .amend import amend
from .confirm import queued_driver, run_confirmations
from .executor import Executor
from .fidelity import at_rung, pending, rung_budgets, rung_records, run_rungs, top_rung
from .prepare import (build_driver, check_policy_state, experiment_text, prepare_search, run_info,
                      train_search_baselines)
from .supernet import ensure_supernet

__all__ = ["RunSession", "start_search", "resume_search", "confirm_run", "new_run_dir", "report_counts"]

MAX_RUN_NAME = 100
MAX_TRIALS = int(RANGES[SearchSettings]["trials"].high)
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
        """supernet -> search -> rungs -> confirm -> baselines, until ``target`` trials
        are done (a resume whose search is done goes on with the rungs it misses)."""
        ensure_supernet(self.experiment, self.search, self.run_dir, self.executor, self.verbose)
        self.check_stop()
        if trained_count(records) < target:
            self.search_phase(records, target, phase)
        self.check_stop()
        run_rungs(self.experiment, self.search, self.run_dir, self.executor, self.verbose, self.stop)
        if self.search.confirm.enabled:
            self.confirm_phase(self.search.confirm.top, self.search.confirm.seeds)
        train_search_baselines(*self.rung(top_rung(self.experiment, self.search)), self.run_dir)

    def rung(self, k: int) -> tuple[Experiment, Any]:
        """The experiment and settings as rung ``k`` trains (without rungs: as they are)."""
        return at_rung(self.experiment, self.search, k)

    def search_phase(self, records: Sequence[TrialRecord], target: int, phase: str) -> None:
        """The policy's proposals, through the executor, until ``target`` distinct
        architectures finished; progress lines and the search's curves as they do."""
        experiment, search = self.rung(0)
        if self.search.fidelity.enabled:           # progress and curves of rung 0 only
            records = rung_records(records, rung_budgets(self.experiment, self.search)[0])
        listeners = [Progress(search.objectives, target, self.run_dir, records=records, level=self.verbose),
                     ObjectiveCurves(search.objectives, self.run_dir, records), TrialHParams(self.run_dir)]
        driver = build_driver(experiment, search, self.run_dir, budget=target - trained_count(records),
                              records=records, listeners=listeners)
        if self.stop is not None:
            self.stop.on_stop.append(driver.stop)
        try:
            self.executor.drive(driver, experiment, search, self.run_dir, phase,
                                verbose=self.verbose, stop=self.stop)
        finally:
            for listener in listeners:
                getattr(listener, "close", lambda: None)()
        if driver.fault:
            raise InfrastructureError(f"{self.run_dir}: {driver.fault}; the search stopped and the trial was "
                                      f"not charged with it; fix that, then: dynas resume {self.run_dir}")

    def confirm_phase(self, top: int, seeds: int) -> bool:
        """Seed repeats of the ``top`` best candidates (of the top rung, at its budget);
        False when none is complete."""
        experiment, search = self.rung(top_rung(self.experiment, self.search))
        driver = queued_driver(experiment, search, self.run_dir, top, seeds, verbose=self.verbose)
        if driver is None:
            return False
        run_confirmations(self.executor, driver, experiment, search, self.run_dir, self.verbose)
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
            record_helpers(run_dir)
            RunSession(experiment, search, run_dir, executor, verbose, stop).run_phases([], search.trials, "search")
    report_counts(run_dir, search.trials)
    return run_dir


def resume_search(run_dir: str | Path, executor: Executor, extra_trials: int = 0, *,
                  verbose: int = NORMAL, settings: dict | None = None) -> Path:
    """Continue a killed (or extend a finished) search until it holds ``trials`` (+
    ``extra_trials``) distinct finished architectures. ``settings`` (``--set``): only
    those that leave what trials measure unchanged (``run.amend``)."""
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):                 # before anything is read: one driver per run
        return _resume(run_dir, executor, extra_trials, verbose, settings)


def _resume(run_dir: Path, executor: Executor, extra_trials: int, verbose: int, settings: dict | None) -> Path:
    run = read_run(run_dir)
    if run.get("kind") == "calibrate":       # controllers.run.calibrate: not a search to extend
        raise DynasError(f"{run_dir}: a calibration, not a search; finish it with: dynas calibrate {run_dir}")
    missing = missing_keys(run)
    if missing:
        raise DynasError(f"{run_dir / RUN_FILE}: missing {', '.join(missing)}")
    if not 0 <= extra_trials <= MAX_TRIALS - run["trials"]:
        raise DynasError(f"--extra-trials must be >= 0 and bring trials to at most {MAX_TRIALS}, "
                         f"got {extra_trials}")
    experiment, search = _reopen(run_dir, run, int(run["trials"]) + int(extra_trials), settings, "resume")
    with experiment.attribute_errors():
        check_loggers(search.loggers)
    records = list(iter_records(run_dir))
    if records:
        check_policy_state(experiment, search, run_dir)
    if search.trials - trained_count(records) <= 0 and not pending(records, experiment, search):
        _extend(run_dir, run, extra_trials, search.trials)
        print(f"{run_dir}: already holds {trained_count(records)} of {search.trials} trials")
        # a kill may have cut them short
        train_search_baselines(*at_rung(experiment, search, top_rung(experiment, search)), run_dir)
        return run_dir
    with _stopping(run_dir) as stop, executor.session(search, verbose):
        stop.install()
        record_helpers(run_dir)
        _extend(run_dir, run, extra_trials, search.trials)   # once the executor is up: a refused resume changes nothing
        RunSession(experiment, search, run_dir, executor, verbose, stop).run_phases(records, search.trials, "resume")
    report_counts(run_dir, search.trials)
    return run_dir


def confirm_run(run_dir: str | Path, executor: Executor, top: int | None, seeds: int, *, verbose: int = 1,
                trials: Sequence[int] | None = None, order: str = "objective",
                settings: dict | None = None) -> Path:
    """Give the ``top`` best candidates of a finished run (in ``order``), or the
    ``trials`` named, ``seeds`` seed repeats each (``controllers.run.confirm``)."""
    if (top is None) == (not trials):
        raise DynasError("confirm: give either --top K or --trials ID,ID,...")
    bounds = RANGES[ConfirmSettings]
    most = int(bounds["top"].high)
    if (top is not None and not 1 <= top <= most) or len(trials or ()) > most \
            or not 1 <= seeds <= bounds["seeds"].high:
        raise DynasError(f"--top (or the --trials named) must be 1-{most} and --seeds "
                         f"1-{int(bounds['seeds'].high)}, got top={top}, trials={len(trials or ())}, "
                         f"seeds={seeds}")
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):                 # one driver per run (controllers.lock)
        run = read_run(run_dir)
        experiment, search = _reopen(run_dir, run, run.get("trials"), settings, "confirm")
        experiment, search = at_rung(experiment, search, top_rung(experiment, search))   # the front's budget
        driver = queued_driver(experiment, search, run_dir, top or 0, seeds, trials=trials, order=order,
                               verbose=verbose)
        if driver is None:
            raise DynasError(f"{run_dir}: no complete trial to confirm")
        if driver.queued:
            with executor.session(search, verbose):
                record_helpers(run_dir)
                run_confirmations(executor, driver, experiment, search, run_dir, verbose)
    return run_dir


def _reopen(run_dir: Path, run: dict, trials: Any, settings: dict | None = None,
            command: str = "resume") -> tuple[Experiment, Any]:
    """The run's own experiment copy (inside the run directory, whatever run.json says;
    ``settings`` applied and recorded: ``run.amend``) and its search settings, as
    run.json recorded them; the plugins it recorded are imported only with the user's
    consent (``search_space.plugins``). ``search.baselines`` arch files (architecture
    JSON, never code) stay relative to the file the run started from, while it exists."""
    copy = inside(run_dir, EXPERIMENT_COPY, run_dir / RUN_FILE, "experiment")
    experiment = load_experiment(copy, plugins=run.get("plugins"), recorded_in=str(run_dir / RUN_FILE))
    experiment = amend(experiment, settings, run, run_dir, command)
    origin = run.get("source")
    if isinstance(origin, str) and Path(origin).is_file():
        experiment = dataclasses.replace(experiment, source=Path(origin))
    return experiment, prepare_search(experiment, run.get("strategy"), trials, run.get("concurrent"),
                                      run.get("seed"))


def _extend(run_dir: Path, run: dict, extra_trials: int, target: int) -> None:
    if extra_trials:
        run.setdefault("extensions", []).append({"extra_trials": extra_trials, "at": utc_now()})
        write_json_atomic(run_dir / RUN_FILE, {**run, "trials": target})


def report_counts(run_dir: Path, target: int) -> dict[str, int]:
    records = list(iter_records(run_dir))
    rung0 = min((r.budget for r in records if r.budget is not None and not r.baseline), default=None)
    promoted = [r for r in records if rung0 is not None and (r.budget or rung0) > rung0   # search.fidelity
                and r.cached_from is None and r.repeat_of is None and not r.baseline]
    skip = {id(r) for r in promoted}
    counts = {s: sum(r.state == s and r.cached_from is None and r.repeat_of is None
                     and not r.baseline and id(r) not in skip for r in records)
              for s in ("complete", "failed", "pruned")}
    counts["cached"] = sum(r.cached_from is not None for r in records)
    counts["repeats"] = sum(r.repeat_of is not None for r in records)
    counts["promoted"] = len(promoted)
    done = trained_count(records)
    note = "" if done >= target else f" (short of {target}: see the warnings above)"
    repeats = f", {counts['repeats']} seed repeats" if counts["repeats"] else ""
    rungs = f", {len(promoted)} trainings at higher rungs" if promoted else ""
    print(f"{done} trials: {counts['complete']} complete, {counts['failed']} failed, "
          f"{counts['pruned']} pruned, {counts['cached']} duplicates reused{repeats}{rungs}{note}")
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
    """``storage/name`` (checked), or ``storage/prefix-UTCTIME``; ``storage`` resolved
    and checked (``check_storage``) before anything starts."""
    storage = check_storage(storage.expanduser().resolve())
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


def check_storage(storage: Path) -> Path:
    """``--storage`` is a folder dynas can create run directories in (or one it can
    create): refused in one line before Ray starts when it is a file, read-only, or
    under /proc. Proven by making (and removing) an empty folder in it, or in the
    nearest folder above it that exists; no file is left behind."""
    if storage.parts[:2] in (("/", "proc"), ("/", "sys")):
        raise DynasError(f"{storage}: --storage cannot be under /{storage.parts[1]}")
    existing = storage
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DynasError(f"{existing}: --storage: not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".dynas-probe-", dir=existing))
    except OSError as err:
        raise DynasError(f"{existing}: --storage: cannot create a run directory here "
                         f"({err.strerror or err})") from None
    return storage


@contextlib.contextmanager
def _stopping(run_dir: Path, command: str = "resume") -> Iterator[StopRequest]:
    """Signals stop the search (``controllers.interrupt``); the one line names the run
    and the ``dynas`` command that continues it.
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
            err.run_dir, err.command = run_dir, command
            raise err from None
        except OSError as err:
            fault = outcomes.storage_fault(err)
            if fault is None:
                raise
            raise InfrastructureError(f"{run_dir}: {fault}; the search stopped and nothing was "
                                      f"charged to a trial; free space, then: dynas {command} {run_dir}") from None
