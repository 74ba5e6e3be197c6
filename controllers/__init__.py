"""What to try next: search policies, the driver, and the runs that use them.

The core (policy, driver, dedup, records, results, outcomes) knows no executor;
``run/`` assembles a run's phases against the executor seam, with the in-process
executor; ``tune/`` is the Ray Tune executor; ``runs`` picks one by name.

Importing ``controllers`` is cheap: Ray, Optuna and torch load only when a name that
needs them is first used (PEP 562 module ``__getattr__``).
"""
from __future__ import annotations

import importlib
from typing import Any

from .policy import Outcome, Policy, Proposal
from .records import TrialRecord, append_record, iter_records, write_json_atomic

_LAZY = {
    "make_policy": "dynas.controllers.policies",
    "register_policy": "dynas.controllers.policies",
    "POLICIES": "dynas.controllers.policies",
    "SearchDriver": "dynas.controllers.driver",
    "TrialResult": "dynas.controllers.results",
    "objective_values": "dynas.controllers.objectives",
    "run_local": "dynas.controllers.run.in_process",
    "run_local_experiment": "dynas.controllers.runs",
    "run_search": "dynas.controllers.runs",
    "resume_search": "dynas.controllers.runs",
    "confirm_run": "dynas.controllers.runs",
    "make_executor": "dynas.controllers.runs",
    "RunSession": "dynas.controllers.run.session",
    "InProcess": "dynas.controllers.run.in_process",
    "RayTune": "dynas.controllers.tune.executor",
    "PolicySearcher": "dynas.controllers.tune.searcher",
}

__all__ = [
    "Policy", "Proposal", "Outcome", "TrialRecord", "append_record", "iter_records",
    "write_json_atomic", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'controllers' has no attribute {name!r}")
