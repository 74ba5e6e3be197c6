"""The schema of a model folder's ``model.json``, checked on every read.

A model folder is input like a run directory: copied, downloaded, edited. Its
``model.json`` may say ``num_classes: 1e12``, ``seq_len: "long"``, name a task nobody
registered, or come from a newer dynas. ``read_model_file`` checks every field before
anything is built and turns the first problem into one ``DynasError`` line naming the
file and the key. The plugins the model was trained with (``plugins``, written by
``trainers.bundle.save_bundle``) are imported first, with the user's consent only
(``search_space.plugins``: the same ``--plugin``, or ``--trust-plugins``), so a
plugin's task is known when the task is checked.

``check_fits`` is the size guard of ``dynas train`` applied where a saved model is
rebuilt (``load_model``, ``portable``, ``compress``): an ``arch.json`` with
``d_model: 10**12`` is one line, not a 4 TB allocation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.boundary import json_file
from dynas.search_space.errors import DynasError

BUNDLE_FORMAT = 1
MAX_CLASSES = 10**6
MAX_TOKENS = 2**20


def _int_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


SHAPE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seq_len": (_int_in(1, MAX_TOKENS), f"an integer from 1 to {MAX_TOKENS}"),
    "num_classes": (_int_in(1, MAX_CLASSES), f"an integer from 1 to {MAX_CLASSES}"),
    "input_dim": (_int_in(0, MAX_TOKENS), f"an integer from 0 to {MAX_TOKENS}"),
    "vocab_size": (_int_in(0, 10**7), "an integer from 0 to 10000000"),
    "per_token": (lambda v: isinstance(v, bool), "true or false"),
    "causal": (lambda v: isinstance(v, bool), "true or false"),
    "image_side": (_int_in(0, MAX_TOKENS), f"an integer from 0 to {MAX_TOKENS}"),
}
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "arch_id": (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    "task": (lambda v: isinstance(v, str) and bool(v), "a task name"),
    "scenario": (lambda v: isinstance(v, str), "a string"),
    "shape": (lambda v: isinstance(v, dict), "a mapping"),
    "class_table": (lambda v: isinstance(v, list) and all(
        isinstance(c, list) and all(_int_in(0, MAX_CLASSES)(x) for x in c) for c in v),
        "a list of lists of class indices"),
    "preprocessing": (lambda v: v is None or isinstance(v, dict), "a mapping or null"),
    "metrics": (lambda v: isinstance(v, dict) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v.values()), "a mapping of numbers"),
    "task_options": (lambda v: v is None or isinstance(v, dict), "a mapping or null"),
    "task_seed": (lambda v: v is None or _int_in(-2**63, 2**64)(v), "an integer or null"),
    "plugins": (lambda v: v is None or (isinstance(v, list) and all(isinstance(x, str) and x for x in v)),
                "a list of module names or paths, or null"),
}
REQUIRED = ("arch_id", "task", "scenario", "shape", "class_table")


def read_model_file(path: str | os.PathLike, *, load_plugins: bool = True) -> dict[str, Any]:
    """``model.json`` as a checked mapping (module docstring); with ``load_plugins`` its
    plugins are imported (with consent) and its task must be registered."""
    path = Path(path)
    meta = json_file(path)
    if not isinstance(meta, dict):
        raise DynasError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if not _int_in(1, 10**6)(fmt):
        raise DynasError(f"{path}: format: expected {BUNDLE_FORMAT}, got {fmt!r}"[:300])
    if fmt > BUNDLE_FORMAT:
        raise DynasError(f"{path}: format: {fmt} was written by a newer dynas (this one reads "
                         f"{BUNDLE_FORMAT}); upgrade dynas to load it")
    if fmt != BUNDLE_FORMAT:
        raise DynasError(f"{path}: format: expected {BUNDLE_FORMAT}, got {fmt!r}")
    _check(meta, FIELDS, REQUIRED, path, "")
    _check(meta["shape"], SHAPE_FIELDS, ("seq_len", "num_classes"), path, "shape.")
    shape = meta["shape"]
    if any(c >= shape["num_classes"] for table in meta["class_table"] for c in table):
        raise DynasError(f"{path}: class_table: a class index >= shape.num_classes ({shape['num_classes']})")
    if load_plugins:
        _import_plugins(meta.get("plugins"), path)
        _check_task(meta["task"], path)
    return meta


def _check(data: dict, fields: dict, required: tuple, path: Path, prefix: str) -> None:
    missing = [k for k in required if k not in data]
    if missing:
        raise DynasError(f"{path}: {prefix}{missing[0]}: missing required key")
    for key, (check, what) in fields.items():
        if key in data and not check(data[key]):
            raise DynasError(f"{path}: {prefix}{key}: must be {what}, got {repr(data[key])[:60]}")


def _import_plugins(specs: list[str] | None, path: Path) -> None:
    from dynas.search_space.plugins import load_plugins

    load_plugins(specs, path.parent.resolve(), recorded_in=str(path))


def _check_task(name: str, path: Path) -> None:
    from .tasks import TASKS      # the package: its built-in tasks registered

    if name not in TASKS:
        raise DynasError(f"{path}: task: unknown task {name!r}; known: {', '.join(TASKS.names())} "
                         "(a plugin's task: pass the plugin with --plugin)")


def loaded_plugin_specs() -> list[str]:
    """The plugins this process loaded (resolved): what a model folder records."""
    from dynas.search_space.plugins import loaded_plugins

    return [plugin.spec for plugin in loaded_plugins()]


def check_fits(arch: ArchConfig, shape: TaskShape, source: str | os.PathLike, batch_size: int = 1) -> None:
    """The size guard before a saved model is built: one line when ``arch`` would not
    fit this machine's memory (``search_space.constraints.size_problem``)."""
    from dynas.search_space.constraints import MemoryLimit, size_problem

    problem = size_problem(arch, shape, MemoryLimit.per_trial(batch_size))
    if problem:
        raise DynasError(f"{source}: architecture too large: {problem}")
