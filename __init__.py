"""dynas: dynamic neural architecture search and continual learning.

This file is the ``dynas`` package itself (``pyproject.toml`` maps it to the repository
root), so the four layers install as ``dynas.search_space``, ``dynas.trainers``,
``dynas.controllers`` and ``dynas.analysis``. It is also the Python API::

    import dynas

    run = dynas.search("examples/quickstart.yaml", trials=4)   # a Run
    run.records                     # one row per trial (pandas)
    run.pick("knee")                # a Pick: trial, arch_id, values
    model = run.load_model("knee")  # a Predictor, when the pick's weights were kept

Names resolve on first use (PEP 562): ``import dynas`` loads neither torch nor Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_API = ("search", "load_run", "resume", "confirm", "load_model", "Run", "Pick")

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module("dynas.analysis.api"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dynas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
