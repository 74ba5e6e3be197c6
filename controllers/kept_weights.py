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
reads it.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from dynas.search_space.settings import Objective

from .pareto import non_dominated, to_minimise
from .records import TrialRecord, write_json_atomic

log = logging.getLogger(__name__)

KEEP_MODES = ("front", "all", "none")
TOP_K = 3
LOCAL_WEIGHTS_DIR = "weights"
INDEX_FILE = "weights.json"


def weights_entry(run_dir: str | Path, path: str | Path) -> dict[str, Any]:
    """``{"path": relative to run_dir, "bytes": size of the folder's files}``."""
    run_dir, path = Path(run_dir).resolve(), Path(path).resolve()
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    try:
        rel = str(path.relative_to(run_dir))
    except ValueError:                      # outside the run directory: keep it absolute
        rel = str(path)
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
            if not r.weights:
                continue
            folder = self.run_dir / r.weights["path"]
            if r.proposal_id in keep and folder.is_dir():
                index[str(r.proposal_id)] = {**r.weights, "arch_id": r.arch_id}
            elif r.proposal_id not in keep and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
                log.debug("weights of trial %d removed (keep_weights: %s)", r.proposal_id, self.mode)
        write_json_atomic(self.run_dir / INDEX_FILE, index)
        return index


def read_index(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """``weights.json`` (empty when the run kept no weights)."""
    path = Path(run_dir) / INDEX_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
