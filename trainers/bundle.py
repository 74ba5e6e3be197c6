"""A model bundle: one folder holding everything needed to rebuild and use a trained model.

::

    DIR/arch.json             ArchConfig.save (so `dynas train --arch DIR/arch.json` reads it)
    DIR/weights.safetensors   the model's state_dict; safetensors, so loading runs no code;
                              its metadata names the format and the arch_id
    DIR/model.json            format, task name, options, seed and shape, scenario, class
                              table, the preprocessing state (``tasks.preprocessing``),
                              metrics

``fit`` writes one when given ``weights_dir`` (a search keeps them per trial, ``dynas
train`` in its output folder); ``dynas export --weights`` copies one next to the pick;
``load_model`` (``trainers.predict``) and ``--init-from`` read them. Every problem with
a bundle (missing or foreign file, another architecture, a tensor of the wrong shape)
is one ``DynasError`` line naming the file and, where there is one, the key.

The task's options and seed (``task_options``, ``task_seed``; null for a task not made
by ``build_task`` or with options JSON cannot hold) let ``rebuild_task`` make the same
data again, e.g. to pick a validation example (``dynas inspect --example``). Folders
saved before they were kept read back with both None.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.errors import DynasError

from .model_file import BUNDLE_FORMAT, check_fits, loaded_plugin_specs, read_model_file
from .tasks.base import Task
from .tasks.preprocessing import Preprocessing, preprocessing_from_json, preprocessing_to_json

WEIGHTS_FILE, MODEL_FILE, ARCH_FILE = "weights.safetensors", "model.json", "arch.json"
BUNDLE_FILES = (ARCH_FILE, WEIGHTS_FILE, MODEL_FILE)
WEIGHTS_MAGIC = "dynas-weights"
COMPRESSED_MARK = "compress.json"    # a compressed bundle: trainers.compress rebuilds it
MARKS = (COMPRESSED_MARK,)           # files that make a bundle one a registered rebuild loads

Rebuild = Callable[[nn.Module, "Bundle"], nn.Module]
_REBUILDS: dict[str, Rebuild] = {}   # mark -> rebuild (``register_rebuild``)


@dataclass
class Bundle:
    """A bundle as read back (weights not loaded yet)."""

    path: Path
    arch: ArchConfig
    shape: TaskShape
    task: str
    scenario: str
    class_table: list[list[int]]
    preprocessing: Preprocessing | None
    metrics: dict[str, float]
    task_options: dict[str, Any] | None = None
    task_seed: int | None = None

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE


def save_bundle(out_dir: str | os.PathLike, model: nn.Module, task: Task,
                metrics: dict[str, float] | None = None) -> int:
    """Write ``model`` (a ``DynasModel``) trained on ``task`` as a bundle; returns its
    size in bytes. Files are written to a sibling folder first and moved in whole."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    arch: ArchConfig = model.arch
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(staging / WEIGHTS_FILE),
              metadata={"format": WEIGHTS_MAGIC, "arch_id": arch.arch_id})
    arch.save(staging / ARCH_FILE)
    meta = {"format": BUNDLE_FORMAT, "arch_id": arch.arch_id, "task": task.name,
            "task_options": _json_or_none(task.options), "task_seed": task.seed,
            "shape": dataclasses.asdict(task.shape), "scenario": task.scenario,
            "class_table": [list(e.classes) for e in task.experiences],
            "preprocessing": None if task.preprocessing is None else preprocessing_to_json(task.preprocessing),
            "metrics": {k: float(v) for k, v in (metrics or {}).items()}, "plugins": loaded_plugin_specs()}
    (staging / MODEL_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    out.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:                 # into place one file at a time, atomically
        os.replace(staging / name, out / name)
    staging.rmdir()
    return bundle_size(out)


def _json_or_none(options: dict[str, Any] | None) -> dict[str, Any] | None:
    """``options`` as JSON reads them back (tuples become lists), or None when JSON
    cannot hold them (the folder then cannot rebuild its task; everything else works)."""
    try:
        return None if options is None else json.loads(json.dumps(options))
    except (TypeError, ValueError):
        return None


def bundle_size(path: str | os.PathLike) -> int:
    return sum((Path(path) / name).stat().st_size for name in BUNDLE_FILES if (Path(path) / name).is_file())


def read_bundle(path: str | os.PathLike, *, load_plugins: bool = True) -> Bundle:
    """The bundle at ``path``, checked; weights are read by ``load_weights``.
    ``load_plugins=False`` (copying a folder, nothing built): the plugins it recorded
    are not imported, and its task is not looked up."""
    path = Path(path)
    if not path.is_dir():
        raise DynasError(f"{path}: no such model folder")
    for name in BUNDLE_FILES:
        if not (path / name).is_file():
            raise DynasError(f"{path / name}: missing; a model folder holds {', '.join(BUNDLE_FILES)} "
                             "(written by `dynas export --weights` or `dynas train`)")
    meta = read_model_file(path / MODEL_FILE, load_plugins=load_plugins)
    arch = ArchConfig.load(path / ARCH_FILE)
    if meta.get("arch_id") != arch.arch_id:
        raise DynasError(f"{path / MODEL_FILE}: arch_id: {meta.get('arch_id')!r} does not match "
                         f"{path / ARCH_FILE} ({arch.arch_id})")
    try:
        shape = TaskShape(**meta["shape"])
    except (TypeError, ValueError) as err:
        raise DynasError(f"{path / MODEL_FILE}: shape: {err}") from None
    prep = meta.get("preprocessing")
    return Bundle(path, arch, shape, meta["task"], meta["scenario"],
                  [list(c) for c in meta["class_table"]],
                  None if prep is None else preprocessing_from_json(prep, f"{path / MODEL_FILE}: preprocessing"),
                  dict(meta.get("metrics", {})), meta.get("task_options"), meta.get("task_seed"))


def rebuild_task(bundle: Bundle) -> Task:
    """The task ``bundle``'s model was trained on, built again from its saved options
    and seed (the same experiences and splits); a DynasError naming ``model.json``
    when the folder keeps no options or they no longer give its shape."""
    from dynas.search_space.settings import TaskSettings

    from .tasks.base import build_task

    source = bundle.path / MODEL_FILE
    if bundle.task_options is None or bundle.task_seed is None:
        raise DynasError(f"{source}: task_options: missing (saved by an older dynas, or options "
                         "JSON cannot hold); the task cannot be rebuilt")
    task = build_task(TaskSettings(bundle.task, dict(bundle.task_options)), seed=bundle.task_seed)
    if task.shape != bundle.shape:
        raise DynasError(f"{source}: task_options: give the shape {task.shape}, the model was "
                         f"trained on {bundle.shape}")
    return task


def read_weights(path: str | os.PathLike, arch_id: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a dynas weights file; a foreign file, or one saved for another
    architecture (when ``arch_id`` is given), is a DynasError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise DynasError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise DynasError(f"{path}: not a safetensors file ({err})") from None
    if meta.get("format") != WEIGHTS_MAGIC:
        raise DynasError(f"{path}: not a dynas weights file (metadata format {meta.get('format')!r})")
    if arch_id is not None and meta.get("arch_id") != arch_id:
        raise DynasError(f"{path}: weights of architecture {meta.get('arch_id')}, not {arch_id}")
    return tensors


def load_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: str | os.PathLike,
                 skip: tuple[str, ...] = ()) -> list[str]:
    """Copy ``tensors`` into ``model``; every parameter and buffer must be present with
    its shape, except names starting with one of ``skip`` (left as initialised).
    Returns the names loaded."""
    own = model.state_dict()
    wanted = {k for k in own if not k.startswith(skip)}
    missing = sorted(wanted - set(tensors))
    if missing:
        raise DynasError(f"{source}: key {missing[0]}: missing ({len(missing)} tensors missing)")
    unexpected = sorted(set(tensors) - set(own))
    if unexpected:
        raise DynasError(f"{source}: key {unexpected[0]}: not in this architecture")
    for key in sorted(wanted):
        if tuple(tensors[key].shape) != tuple(own[key].shape):
            raise DynasError(f"{source}: key {key}: shape {tuple(tensors[key].shape)} does not fit "
                             f"{tuple(own[key].shape)}")
    model.load_state_dict({k: tensors[k] for k in wanted}, strict=False)
    return sorted(wanted)


def register_rebuild(mark: str, rebuild: Rebuild) -> None:
    """A bundle holding the file ``mark`` is rebuilt by ``rebuild(model, bundle)``
    (``model`` fresh from the arch) instead of loading its weights as they are.
    ``trainers.compress`` registers its pruned / int8 bundles here when imported, so
    this module, which it builds on, never imports it."""
    _REBUILDS[mark] = rebuild


def load_bundle_model(path: str | os.PathLike) -> tuple[nn.Module, Bundle]:
    """Rebuild the bundle's model on CPU with its weights; ``(model, bundle)``."""
    from .model import build_model

    bundle = read_bundle(path)
    check_fits(bundle.arch, bundle.shape, bundle.path / ARCH_FILE)
    model = build_model(bundle.arch, bundle.shape)
    for mark in MARKS:
        if (bundle.path / mark).is_file():
            if mark not in _REBUILDS:           # the rebuilding module was never imported
                raise DynasError(f"{bundle.path / mark}: a model folder of another kind; load it "
                                 "with dynas.trainers.predict.load_model")
            return _REBUILDS[mark](model, bundle), bundle
    load_weights(model, read_weights(bundle.weights_path, bundle.arch.arch_id), bundle.weights_path)
    return model.eval(), bundle


def copy_bundle(src: str | os.PathLike, out_dir: str | os.PathLike) -> None:
    """Copy a (checked) bundle's files into ``out_dir``, each atomically."""
    read_bundle(src, load_plugins=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        tmp = out / f".{name}.tmp"
        shutil.copyfile(Path(src) / name, tmp)
        os.replace(tmp, out / name)

