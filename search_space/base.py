"""What every search space offers a policy, whatever it describes.

Policies see only this: an ordered list of decisions and ``sample(suggester)``. The
transformer space (``ArchSpace``) and a plain space of named decisions
(``DecisionSpace``) both satisfy it, so every policy can be tested on any space.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .suggest import Decision, Suggester


@runtime_checkable
class Candidate(Protocol):
    """A sampled point: JSON-able and identified by content."""

    @property
    def arch_id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class Space(Protocol):
    def decisions(self) -> list[Decision]:
        """Every question ``sample`` may ask, in the order it asks them."""

    def sample(self, suggester: Suggester) -> Candidate:
        """Build one candidate, asking ``suggester`` each decision define-by-run."""

    def size(self) -> int:
        """Number of distinct candidates (conditional decisions counted exactly)."""


@dataclass(frozen=True)
class Assignment:
    """A candidate of a plain ``DecisionSpace``: decision name -> value."""

    values: tuple[tuple[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.values)

    @property
    def arch_id(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
