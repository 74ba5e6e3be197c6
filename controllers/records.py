"""The run directory and its append-only trial records.

Layout of a run directory (everything JSON/YAML, nothing pickled)::

    RUN_DIR/
      run.json            what was asked: experiment path, strategy, trials, seed, version
      experiment.yaml     a copy of the experiment file the run started from
      trials.jsonl        one line per finished trial (complete, failed or pruned)
      policy_state.json   the policy's state_dict after its last tell (atomic rewrite)
      weights.json        the trials whose trained weights are kept (controllers.kept_weights)
      weights/            the local runner's kept weights, one model folder per arch_id
      ray/                Ray Tune's own storage (experiment state, trial checkpoints,
                          the Ray runner's kept weights)

A record line (``TrialRecord.to_dict``) is self-contained: analysis reads only these.
Schema 2 records measure ``metrics`` and ``acc_matrix`` on the validation splits and
hold the test splits' twins as ``test.*`` metrics and ``test_acc_matrix``; schema 1
records (before the split) have neither, and their accuracies were measured on the
test splits. Both read back; analysis says which it shows.
Lines are appended with flush + fsync; a line that is not a valid record (a torn last
line after a crash mid-write, a hand edit) is skipped by the reader with one warning,
never fatal (``controllers.record_check``).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator

from dynas.search_space.errors import DynasError, InfrastructureError
from dynas.trainers.results import TrialMetrics

from .record_check import MAX_DEPTH, MAX_LINE_CHARS, record_problem

RECORDS_FILE = "trials.jsonl"
RUN_FILE = "run.json"
POLICY_STATE_FILE = "policy_state.json"
OPTUNA_DB = "optuna.db"            # SQLite mirror of an Optuna policy's study (dashboard only)
EXPERIMENT_COPY = "experiment.yaml"
RECORD_SCHEMA_VERSION = 2      # 2: metrics from validation, test.* and R_test held out


@dataclass
class TrialRecord:
    """One line of ``trials.jsonl``: who proposed what, how it ended, and what it
    measured. ``measured`` is the trial's ``trainers.results.TrialMetrics`` as the
    executor handed it over; on disk its fields sit flat beside the record's own (the
    layout of schema 1 and 2, ``values`` under the key ``metrics``), and each reads as
    an attribute of the record (``record.metrics``, ``record.acc_matrix``)."""

    proposal_id: int
    arch_id: str
    arch: dict[str, Any]                      # ArchConfig.to_dict() or an Assignment's dict
    params: dict[str, Any]                    # decision name -> value
    state: str                                # controllers.policy.TRIAL_STATES
    # metrics (names from search_space.names): plain names from the validation splits,
    # test.<name> from the held-out test splits (schema >= 2; schema 1: test splits only)
    measured: TrialMetrics = field(default_factory=TrialMetrics)
    objectives: list[float] | None = None     # values told to the policy, objective order
    reason: str | None = None                 # why it failed / was pruned
    policy: str = ""
    seed: int = 0
    experiences_done: int = 0
    cached_from: int | None = None            # proposal id whose result was reused
    trial_id: str = ""                        # Ray's trial id, when run under Ray
    node: str = ""
    asks: int = 0                             # policy asks this distinct arch took (0: older record)
    baseline: str = ""                        # a reference model's name (search.baselines); "" = searched
    weights: dict[str, Any] | None = None     # {"path" (relative to the run dir), "bytes"} when saved
    repeat_of: int | None = None              # a seed repeat of this proposal id's architecture
    train_seed: int | None = None             # training seed when not the experiment's own
    # how the metrics were measured (record_check.EVALUATIONS): trained from scratch, or with weights
    # inherited from the run's supernet (search.evaluation: supernet), optionally fine-tuned
    evaluation: str = "standalone"
    budget: int | None = None                 # training steps per experience it was measured at (None: the file's)
    finished_at: float = field(default_factory=time.time)
    schema_version: int = RECORD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measured"}
        return {**own, **{MEASURED_KEYS[k]: v for k, v in asdict(self.measured).items()}}

    @property
    def is_confirmation(self) -> bool:
        """A seed repeat trained after the search (``dynas confirm``): no policy asked
        for it or heard of it, so it carries its original's proposal id."""
        return self.repeat_of is not None and self.proposal_id == self.repeat_of

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        own = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "measured"}
        own.setdefault("schema_version", 1)      # a line without one predates versioning
        measured = TrialMetrics(**{field_name: data[key] for field_name, key in MEASURED_KEYS.items()
                                   if key in data})
        return cls(**own, measured=measured)


# TrialMetrics field -> its key in a record line (``values`` was always ``metrics`` there)
MEASURED_KEYS = {f.name: {"values": "metrics"}.get(f.name, f.name) for f in fields(TrialMetrics)}
for _name, _key in MEASURED_KEYS.items():     # record.metrics, record.acc_matrix, ...
    setattr(TrialRecord, _key, property(lambda self, _n=_name: getattr(self.measured, _n),
                                        lambda self, value, _n=_name: setattr(self.measured, _n, value),
                                        doc=f"``measured.{_name}``"))


def trained_count(records: Iterable[TrialRecord]) -> int:
    """Distinct architectures the search finished (duplicates answered from cache, seed
    repeats and reference baselines excluded)."""
    return len({r.arch_id for r in records
                if r.cached_from is None and r.repeat_of is None and not r.baseline})


def append_record(run_dir: str | os.PathLike, record: TrialRecord) -> None:
    """Append one line durably: a crash after this returns never loses the record."""
    path = Path(run_dir) / RECORDS_FILE
    line = json.dumps(record.to_dict(), sort_keys=True, allow_nan=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A torn previous line (crash mid-write) must not swallow this one.
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            line = "\n" + line
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def iter_records(run_dir: str | os.PathLike) -> Iterator[TrialRecord]:
    """Every valid record, in file order. A line that is not one (torn by a crash, edited,
    written by something else: ``controllers.record_check``) is skipped with one warning
    on stderr naming the file and its line number; the reader never fails on content."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            data, problem = _decode(line)
            if problem:
                _warn_once(path, number, line, problem)
                continue
            yield TrialRecord.from_dict(data)


def _decode(line: str) -> tuple[Any, str | None]:
    if len(line) > MAX_LINE_CHARS:
        return None, f"longer than {MAX_LINE_CHARS} characters"
    try:
        data = json.loads(line)
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    except ValueError as err:          # JSONDecodeError; a 5000-digit int
        return None, f"not valid JSON ({str(err).split(':')[0]})"
    return data, record_problem(data)


_WARNED: set[tuple[str, int, int]] = set()


def _warn_once(path: Path, number: int, line: str, problem: str) -> None:
    """One warning per bad line per process, however often the file is read."""
    key = (str(path.resolve()), number, hash(line))
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"dynas: warning: {path}: line {number} skipped: {problem}", file=sys.stderr)


def write_json_atomic(path: str | os.PathLike, data: Any, *, indent: int | None = 2) -> None:
    """Write-then-rename with fsync, so readers see the old or the new file, never half.
    A failed write (a full disk, an interrupt) removes its temporary file and leaves the
    old file as it was. ``indent=None`` writes compact JSON with the C encoder (the
    policy state, rewritten after every trial, grows with the search; ``json.dump`` and
    any indent encode in pure Python, ten times slower)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as fh:
            fh.write(json.dumps(data, indent=indent, sort_keys=True))   # dumps: the C encoder
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def base_run_info(name: str, runner: str, strategy: str, trials: int, seed: int,
                  objectives: Iterable[Any], space_size: int | float) -> dict[str, Any]:
    """The keys every ``run.json`` holds, whoever starts the run: what was asked, by
    which dynas, when (an experiment's run adds its own: ``run.prepare.run_info``)."""
    return {"name": name, "runner": runner, "strategy": strategy, "trials": int(trials), "seed": int(seed),
            "objectives": [asdict(o) for o in objectives], "space_size": space_size,
            "dynas_version": dynas_version(), "created": utc_now()}


def dynas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynas")
    except PackageNotFoundError:
        return "unknown (not installed)"


def utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def require_run_dir(run_dir: str | os.PathLike) -> Path:
    """A run directory made by dynas, or a one-line error naming the path."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DynasError(f"{path}: no such run directory")
    if not (path / RUN_FILE).is_file():
        raise DynasError(f"{path}: not a dynas run directory (no {RUN_FILE})")
    return path


def read_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """``run.json`` of a run directory as a mapping, or a one-line error naming it."""
    path = require_run_dir(run_dir) / RUN_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise DynasError(f"{path}: not valid JSON ({type(err).__name__}: {err})") from None
    if not isinstance(info, dict):
        raise DynasError(f"{path}: expected a JSON object")
    return info


def create_run_dir(run_dir: str | os.PathLike, run_info: dict[str, Any], files: dict[str, str]) -> Path:
    """Make a run directory whole or not at all: ``run.json`` and ``files`` (name ->
    text) are written into a hidden sibling, synced, and renamed into place in one step.
    A crash leaves no half-made run (one without run.json that neither ``dynas resume``
    nor a new search of that name would accept), at most a ``.NAME.partial-PID`` folder.
    ``run_dir`` may exist if it is empty."""
    run_dir = Path(run_dir)
    staging = run_dir.with_name(f".{run_dir.name}.partial-{os.getpid()}")
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        for name, text in files.items():
            with open(staging / name, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        write_json_atomic(staging / RUN_FILE, run_info)
        os.replace(staging, run_dir)     # atomic; replaces an empty directory
    except OSError as err:               # a full disk, a read-only one, a name taken
        shutil.rmtree(staging, ignore_errors=True)
        from .outcomes import storage_fault

        why = f"{run_dir}: cannot create the run directory ({err.strerror or err})"
        raise (InfrastructureError(why) if storage_fault(err) else DynasError(why)) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return run_dir
