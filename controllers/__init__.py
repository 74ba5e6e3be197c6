"""What to try next: search policies, the Ray Tune adapter and the local loop.

Importing ``controllers`` is cheap: Ray, Optuna and torch load only when a name that
needs them is first used (PEP 562 module ``__getattr__``).
"""
from __future__ import annotations

import importlib
from typing import Any

from .policy import Outcome, Policy, Proposal
from .records import TrialRecord, append_record, iter_records, write_json_atomic

_LAZY = {
    "make_policy": "controllers.policies",
    "register_policy": "controllers.policies",
    "POLICIES": "controllers.policies",
    "SearchDriver": "controllers.driver",
    "TrialResult": "controllers.results",
    "objective_values": "controllers.objectives",
    "run_local": "controllers.local",
    "run_local_experiment": "controllers.local",
    "run_search": "controllers.search",
    "resume_search": "controllers.search",
    "confirm_run": "controllers.confirm",
    "PolicySearcher": "controllers.tune_searcher",
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
