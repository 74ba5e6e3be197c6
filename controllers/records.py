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
Lines are appended with flush + fsync; a torn last line (a crash mid-write) is skipped
by the reader, never fatal.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from search_space.errors import DynasError

RECORDS_FILE = "trials.jsonl"
RUN_FILE = "run.json"
POLICY_STATE_FILE = "policy_state.json"
EXPERIMENT_COPY = "experiment.yaml"
RECORD_SCHEMA_VERSION = 2      # 2: metrics from validation, test.* and R_test held out


@dataclass
class TrialRecord:
    proposal_id: int
    arch_id: str
    arch: dict[str, Any]                      # ArchConfig.to_dict() or an Assignment's dict
    params: dict[str, Any]                    # decision name -> value
    state: str                                # complete | failed | pruned
    metrics: dict[str, float] = field(default_factory=dict)   # names from search_space.names;
    #   plain names: validation splits; test.<name>: held-out test splits (schema >= 2)
    objectives: list[float] | None = None     # values told to the policy, objective order
    acc_matrix: list[list[float]] = field(default_factory=list)       # R_val (schema 1: R_test)
    test_acc_matrix: list[list[float]] = field(default_factory=list)  # R_test; empty before schema 2
    expert_load: dict[str, list[float]] = field(default_factory=dict)
    curriculum_log: list[dict[str, Any]] = field(default_factory=list)
    bits_matrix: list[list[float]] = field(default_factory=list)   # validation bits, B[i][j]
    dynamics: list[dict[str, Any]] = field(default_factory=list)   # learned spans, realised k
    reason: str | None = None                 # why it failed / was pruned
    policy: str = ""
    seed: int = 0
    wall_time_s: float = 0.0
    experiences_done: int = 0
    cached_from: int | None = None            # proposal id whose result was reused
    trial_id: str = ""                        # Ray's trial id, when run under Ray
    node: str = ""
    asks: int = 0                             # policy asks this distinct arch took (0: older record)
    baseline: str = ""                        # a reference model's name (search.baselines); "" = searched
    weights: dict[str, Any] | None = None     # {"path" (relative to the run dir), "bytes"} when saved
    repeat_of: int | None = None              # a seed repeat of this proposal id's architecture
    train_seed: int | None = None             # training seed when not the experiment's own
    chance_accuracy: float | None = None      # a uniform guess's accuracy on the task (None: older)
    finished_at: float = field(default_factory=time.time)
    schema_version: int = RECORD_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_confirmation(self) -> bool:
        """A seed repeat trained after the search (``dynas confirm``): no policy asked
        for it or heard of it, so it carries its original's proposal id."""
        return self.repeat_of is not None and self.proposal_id == self.repeat_of

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known.setdefault("schema_version", 1)      # a line without one predates versioning
        return cls(**known)


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
    """Every intact record, in file order; torn or foreign lines are skipped."""
    path = Path(run_dir) / RECORDS_FILE
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "arch_id" in data and "state" in data:
                yield TrialRecord.from_dict(data)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Write-then-rename with fsync, so readers see the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = run_dir.with_name(f".{run_dir.name}.partial-{os.getpid()}")
    staging.mkdir()
    for name, text in files.items():
        with open(staging / name, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    write_json_atomic(staging / RUN_FILE, run_info)
    try:
        os.replace(staging, run_dir)     # atomic; replaces an empty directory
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise DynasError(f"{run_dir}: cannot create the run directory ({err.strerror})") from None
    return run_dir
