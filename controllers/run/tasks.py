"""Each task built once per process (a Ray worker's too), keyed by its settings and seed:
with ``reuse_actors`` a worker pays for data loading once, and a local run once."""
from __future__ import annotations

import json
from typing import Any

_TASKS: dict[tuple, Any] = {}                # task settings -> Task


def task_for(settings: Any, seed: int) -> Any:
    """The task for these settings and data seed, built on first use."""
    from dynas.trainers.tasks import build_task

    key = (settings.name, json.dumps(settings.options, sort_keys=True, default=str), seed)
    if key not in _TASKS:
        _TASKS[key] = build_task(settings, seed=seed)
    return _TASKS[key]
