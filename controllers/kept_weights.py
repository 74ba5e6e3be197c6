"""Kept weights: which trials of a search keep their trained model, where and how large.

Each complete trial's final model is saved as a bundle (``trainers.bundle``): by the
Ray trainable as the trial's last Tune checkpoint, so Tune persists it into the
driver's storage (``RUN_DIR/ray/<tune run>/trial_<id>/checkpoint_<n>/``) whatever node
trained it; by the local runner under ``RUN_DIR/weights/<arch_id>/``. The record says
where (``weights.path``, relative to the run directory) and how large
(``weights.bytes``) at the time it was written.

``search.keep_weights`` says which stay:

* ``front`` (default): the Pareto front of the objectives plus the top ``TOP_K`` by
  the first objective; a trial that leaves that set loses its weights at once;
* ``all``: every complete trial's;
* ``none``: nothing is saved.

``weights.json`` in the run directory lists the weights still kept (proposal id ->
path, bytes), rewritten atomically after every change; ``dynas export --weights``
reads it (``read_index``: every entry checked, its path inside the run directory).

Deletion stays inside the boundary (``search_space.boundary``): a record whose
``weights.path`` resolves outside the run directory (absolute, ``../``, a symlink out)
or to anything but a folder under it is never deleted, nor indexed; a run directory
copied from someone else cannot make dynas delete a folder of yours.
"""
from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from dynas.search_space.boundary import inside, json_file
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import Objective
from dynas.trainers.bundle import WEIGHTS_FILE

from .pareto import non_dominated, to_minimise
from .records import TrialRecord, write_json_atomic

log = logging.getLogger(__name__)

KEEP_MODES = ("front", "all", "none")
TOP_K = 3
LOCAL_WEIGHTS_DIR = "weights"
INDEX_FILE = "weights.json"


def weights_entry(run_dir: str | Path, path: str | Path) -> dict[str, Any] | None:
    """``{"path": relative to run_dir, "bytes": size of the folder's files}``; None
    (and a warning) for a folder outside the run directory, which no reader accepts."""
    run_dir, path = Path(run_dir).resolve(), Path(path).resolve()
    try:
        rel = str(path.relative_to(run_dir))
    except ValueError:
        log.warning("weights at %s are outside the run directory %s: not recorded", path, run_dir)
        return None
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"path": rel, "bytes": int(size)}


def kept_set(records: Sequence[TrialRecord], objectives: Sequence[Objective], mode: str) -> set[int]:
    """Proposal ids whose weights stay under ``mode``."""
    have = [r for r in records if r.weights and r.state == "complete" and r.cached_from is None]
    if mode == "all":
        return {r.proposal_id for r in have}
    if mode == "none":
        return set()
    scored = [r for r in have if r.objectives is not None and all(math.isfinite(v) for v in r.objectives)]
    if not scored:
        return set()
    pts = to_minimise([r.objectives for r in scored], objectives)       # (N, M), smaller is better
    keep = {scored[i].proposal_id for i in non_dominated(pts)}
    by_first = sorted(range(len(scored)), key=lambda i: (pts[i][0], scored[i].proposal_id))
    return keep | {scored[i].proposal_id for i in by_first[:TOP_K]}


class WeightKeeper:
    """Applies ``keep_weights`` after each record: deletes the leavers, rewrites the index."""

    def __init__(self, run_dir: str | Path, mode: str, objectives: Sequence[Objective]):
        if mode not in KEEP_MODES:
            raise ValueError(f"keep_weights {mode!r}; expected one of {KEEP_MODES}")
        self.run_dir, self.mode, self.objectives = Path(run_dir), mode, tuple(objectives)

    def update(self, records: Iterable[TrialRecord]) -> dict[str, dict[str, Any]]:
        records = list(records)
        keep = kept_set(records, self.objectives, self.mode)
        index = {}
        for r in records:
            folder = self._folder(r)
            if folder is None:
                continue
            if r.proposal_id in keep and folder.is_dir():
                index[str(r.proposal_id)] = {**r.weights, "arch_id": r.arch_id}
            elif r.proposal_id not in keep and self._deletable(folder):
                shutil.rmtree(folder, ignore_errors=True)
                log.debug("weights of trial %d removed (keep_weights: %s)", r.proposal_id, self.mode)
        write_json_atomic(self.run_dir / INDEX_FILE, index)
        return index

    def _deletable(self, folder: Path) -> bool:
        """Only a model folder this run wrote: below a subfolder of the run directory
        (never ``weights/`` or ``ray/`` themselves), holding a weights file."""
        return (folder.is_dir() and not folder.is_symlink() and folder.parent != self.run_dir.resolve()
                and (folder / WEIGHTS_FILE).is_file())

    def _folder(self, record: TrialRecord) -> Path | None:
        """The record's weights folder inside the run directory, or None (never touched)."""
        if not record.weights:
            return None
        try:
            return inside(self.run_dir, record.weights.get("path"), self.run_dir / "trials.jsonl",
                          f"trial {record.proposal_id}: weights.path")
        except DynasError as err:
            log.warning("%s: left alone", err)
            return None


def read_index(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``weights.json`` (empty when the run kept no weights), every entry checked: a
    mapping with ``path`` inside the run directory and ``bytes`` >= 0, keyed by a
    proposal id. Anything else is one ``DynasError`` naming the file and the key."""
    path = Path(run_dir) / INDEX_FILE
    index = json_file(path, missing={})
    if not isinstance(index, dict):
        raise DynasError(f"{path}: expected a JSON object of proposal id -> kept weights")
    for key, entry in index.items():
        if not key.lstrip("-").isdigit():
            raise DynasError(f"{path}: {key!r}: expected a proposal id")
        if not isinstance(entry, dict):
            raise DynasError(f"{path}: {key}: expected a mapping with path and bytes")
        inside(run_dir, entry.get("path"), path, f"{key}.path")
        size = entry.get("bytes", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DynasError(f"{path}: {key}.bytes: expected an integer >= 0, got {size!r}"[:300])
    return index


def kept_folder(run_dir: str | Path, entry: dict[str, Any]) -> Path:
    """The folder of one (checked, ``read_index``) entry, resolved inside the run."""
    return inside(run_dir, entry["path"], Path(run_dir) / INDEX_FILE, "path")
