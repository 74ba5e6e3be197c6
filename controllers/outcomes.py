"""Why a trial failed, worded once, and the one rule from a trial's result to the
``Outcome`` its policy is told.

The reasons, whatever ran the trial (in-process or a Ray worker):

- ``non-finite loss: MESSAGE``       training diverged (``trainers.results.NonFiniteLoss``)
- ``non-finite objectives [VALUES]`` a complete trial whose objective values are NaN/inf
- ``out of memory: MESSAGE``         CUDA or the CPU allocator ran out
- ``infeasible: WHY``                rejected before training (budget, constraints)
- ``TYPE: MESSAGE``                  any other exception, e.g. ``RuntimeError: boom``
- ``stopped by the scheduler after D of N experiences``   (pruned, e.g. by ASHA)

Faults of the machine are not the architecture's (``infrastructure_fault``): a full
disk or an I/O error (``storage_fault``), a node or worker lost after Tune's retries.
They stop the search and are never recorded as a trial's failure, so a resume
trains that architecture again.
"""
from __future__ import annotations

import errno
import sys
from typing import Sequence

from dynas.search_space.errors import ConfigError, InfeasibleError
from dynas.search_space.settings import Objective

from .objectives import is_finite, objective_values
from .policy import Outcome
from .results import TrialResult


def non_finite_loss(message: object) -> str:
    return f"non-finite loss: {message}"


def non_finite_objectives(values: Sequence[float]) -> str:
    return f"non-finite objectives {list(values)}"


def out_of_memory(message: object) -> str:
    return f"out of memory: {message}"


def infeasible(why: object) -> str:
    return f"infeasible: {why}"


def scheduler_stop(done: int, total: int) -> str:
    return f"stopped by the scheduler after {done} of {total} experiences"


def exception_reason(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"


def failure_reason(err: BaseException) -> str:
    """The one wording for a trial that raised ``err`` (see the module docstring)."""
    if isinstance(err, InfeasibleError):
        return infeasible(err)
    if type(err).__name__ == "NonFiniteLoss":   # trainers.results; no torch import here
        return non_finite_loss(err)
    if is_oom(err):
        return out_of_memory(err)
    return exception_reason(err)


STORAGE_ERRNOS = {errno.ENOSPC: "No space left on device", errno.EIO: "Input/output error",
                  errno.EDQUOT: "Disk quota exceeded", errno.EROFS: "Read-only file system"}
# Ray's exceptions for a process or node that went away (names: no ray import here).
LOST_NODE_ERRORS = ("NodeDiedError", "WorkerCrashedError", "ActorDiedError", "RayActorError",
                    "LocalRayletDiedError", "ObjectLostError", "OwnerDiedError", "ActorUnavailableError")


def storage_fault(err: BaseException) -> str | None:
    """``storage error: [Errno 28] No space left on device: PATH`` or None."""
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        return f"storage error: {err}"
    return None


def infrastructure_fault(err: BaseException | None, text: str = "") -> str | None:
    """Why the machine (not the architecture) failed a trial, or None. ``text`` is the
    trial's error text when the exception itself did not reach the driver."""
    if err is not None:
        if storage_fault(err):
            return storage_fault(err)
        if type(err).__name__ in LOST_NODE_ERRORS:
            return f"lost a node or worker ({exception_reason(err)[:300]})"
    for code, words in STORAGE_ERRNOS.items():
        if f"[Errno {code}]" in text or words in text:
            return f"storage error: {text[:300]}"
    if any(name in text for name in LOST_NODE_ERRORS):
        return f"lost a node or worker ({text[:300]})"
    return None


def is_oom(err: BaseException) -> bool:
    """CUDA or CPU-allocator out of memory, recognised without importing torch."""
    torch = sys.modules.get("torch")
    cuda_oom = torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)
    text = str(err).lower()
    return (cuda_oom or isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError"
            or "out of memory" in text or "can't allocate memory" in text)


def trial_outcome(result: TrialResult, objectives: Sequence[Objective]) -> Outcome:
    """What the policy is told about ``result``; the one non-finite check of a search."""
    if result.state == "failed":
        return Outcome("failed", None, result.reason or "failed")
    metrics = result.metrics
    if result.state == "pruned":
        present = all(o.metric in metrics for o in objectives)
        values = objective_values(metrics, objectives) if present else None
        return Outcome("pruned", values if is_finite(values) else None, result.reason)
    try:
        values = objective_values(metrics, objectives)
    except ConfigError as err:          # the trial did not report an objective's metric
        return Outcome("failed", None, str(err))
    if not is_finite(values):
        return Outcome("failed", None, non_finite_objectives(values))
    return Outcome("complete", values, result.reason)
