"""Export one architecture of a run, chosen by a rule, for downstream training.

``export_arch(run_dir, "knee", "out/arch.json")`` writes

* ``arch.json``: the plain ``ArchConfig.save`` format, so ``ArchConfig.load`` and
  ``dynas train --arch`` read it as is (for a plain decision space: the assignment's
  ``name -> value`` mapping);
* beside it ``pareto.json`` (``<stem>.pareto.json`` when the arch file is not named
  ``arch.json``, so several exports can share a folder): every front member with its
  arch, metrics, cost, seed and producing dynas version, plus which one was picked,
  by what rule, against which objectives and reference point (a ``knee-means`` pick's
  metrics are its seed means).

With ``weights=True`` ``out`` is a folder and receives the picked trial's kept model
as well (``weights.safetensors`` and ``model.json`` with the task's preprocessing
state, ``trainers.bundle``), so ``load_model(out)`` predicts with it and ``dynas train
--init-from out`` fine-tunes it. A pick whose weights were not kept is an error
naming the trial, before anything is written.

Nothing already on disk is lost: an existing output file is an error unless ``force``;
the pick is made before anything is written, and each file is replaced atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dynas.controllers.kept_weights import INDEX_FILE, kept_folder, read_index
from dynas.controllers.records import write_json_atomic
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import DynasError
from dynas.trainers.bundle import BUNDLE_FILES, copy_bundle

from .load import is_transformer_arch, load_runs, metric_columns, read_run_meta, run_objectives
from .pareto import hypervolume, objective_matrix, pareto_front, reference_point
from .picks import resolve

PARETO_SCHEMA_VERSION = 1
DEFAULT_NAME = "arch.json"


def dynas_version() -> str:
    """The installed dynas version, or ``unknown`` when run from a source tree."""
    import dynas

    version = getattr(dynas, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version

        return dist_version("dynas")
    except PackageNotFoundError:
        return "unknown"


def pareto_path_for(arch_path: Path) -> Path:
    """``pareto.json`` beside ``arch.json``; ``knee.pareto.json`` beside ``knee.json``."""
    if arch_path.name == DEFAULT_NAME:
        return arch_path.with_name("pareto.json")
    return arch_path.with_name(f"{arch_path.stem}.pareto.json")


def export_arch(run_dir: str | os.PathLike, pick: str | int, out: str | os.PathLike, *,
                force: bool = False, objectives: Sequence[Any] | None = None,
                weights: bool = False) -> Path:
    """Write the trial ``pick`` names (``analysis.picks``: knee, knee-means,
    best-accuracy, max-flops=X, trial=N, arch_id=HEX, or auto) and the front (and with
    ``weights`` its trained model). ``pareto.json``'s ``picked.rule`` is the pick as
    read (``auto`` resolved to ``knee`` or ``knee-means``).

    Returns the path of the arch file. ``out`` may be a folder (``out/arch.json``);
    with ``weights`` it is always one.
    """
    out = Path(out)
    if out.is_dir() or weights:
        out = out / DEFAULT_NAME
    sidecar = pareto_path_for(out)
    if not force:
        for path in (out, sidecar) + (tuple(out.parent / n for n in BUNDLE_FILES) if weights else ()):
            if path.exists():
                raise DynasError(f"{path} exists; pass --force to overwrite it")
    df = load_runs([run_dir])
    objectives = tuple(objectives) if objectives else run_objectives([run_dir])
    chosen, pick = resolve(run_dir, pick, df, objectives)
    arch = _checked_arch(chosen)
    kept = read_index(run_dir)
    model_dir = kept_model_dir(run_dir, chosen, kept) if weights else None
    front = pareto_front(df, objectives)
    meta = read_run_meta(run_dir)
    metrics = metric_columns(df)

    out.parent.mkdir(parents=True, exist_ok=True)
    if model_dir is not None:
        copy_bundle(model_dir, out.parent)          # arch.json among its files
    elif isinstance(arch, ArchConfig):
        arch.save(out)
    else:
        write_json_atomic(out, arch)
    ref = reference_point(df, objectives)
    payload = {
        "schema_version": PARETO_SCHEMA_VERSION,
        "dynas_version": dynas_version(),
        "run": {"name": meta.get("name"), "strategy": meta.get("strategy"),
                "run_dir": str(Path(run_dir).resolve())},
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in objectives],
        "reference_point": [_clean(r) for r in ref],
        "hypervolume": _clean(hypervolume(objective_matrix(front, objectives), ref, objectives)),
        "picked": {"rule": pick, "arch_file": out.name, "on_front": chosen.name in front.index,
                   **_member(chosen, metrics, meta, kept)},
        "front": [_member(row, metrics, meta, kept) for _, row in front.iterrows()],
    }
    write_json_atomic(sidecar, payload)
    return out


def _checked_arch(row: pd.Series) -> ArchConfig | dict[str, Any]:
    """The record's arch, validated by parsing it back when it is a transformer."""
    arch = row["arch"]
    if is_transformer_arch(arch):
        config = ArchConfig.from_dict(arch, source=f"record of trial {row['proposal_id']}")
        return config
    if isinstance(arch, dict):
        return arch
    raise DynasError(f"trial {row['proposal_id']} has no architecture to export")


def kept_model_dir(run_dir: str | os.PathLike, row: Any, kept: dict[str, Any]) -> Path:
    """The folder of the picked trial's kept model (``row`` has ``proposal_id`` and
    ``arch_id``; ``kept`` is ``weights.json``), or one line saying why there is none."""
    entry = kept.get(str(int(row["proposal_id"])))
    if entry is None:
        raise DynasError(f"{run_dir}: trial {int(row['proposal_id'])} ({row['arch_id']}) has no kept weights "
                         f"(see {INDEX_FILE}; search.keep_weights: all keeps every trial's); "
                         "retrain it with `dynas train --arch`")
    return kept_folder(run_dir, entry)


def _member(row: pd.Series, metric_names: list[str], meta: dict[str, Any],
            kept: dict[str, Any]) -> dict[str, Any]:
    metrics = {m: _clean(row[m]) for m in metric_names if _present(row.get(m))}
    return {
        "arch_id": row["arch_id"],
        "proposal_id": int(row["proposal_id"]),
        "arch": row["arch"],
        "metrics": metrics,
        "cost": {m: metrics[m] for m in names.COST_METRICS if m in metrics},
        "seed": int(row["seed"]) if _present(row["seed"]) else None,
        "checkpoint": kept.get(str(int(row["proposal_id"])), {}).get("path"),   # kept weights, run-relative
        "dynas_version": meta.get("dynas_version"),
    }


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: write null instead."""
    value = float(value)
    return value if math.isfinite(value) else None
