"""The one interface every search strategy implements.

Lifecycle (Optuna's ask/tell, made explicit):

1. The driver (local runner or the Ray Tune searcher) calls ``ask()``; the policy
   returns a ``Proposal`` with a fresh integer ``id``, the candidate and the decision
   values (``params``) that produced it. Several proposals may be outstanding at once
   (concurrent trials).
2. The driver evaluates the candidate and calls ``tell(id, outcome)`` exactly once per
   proposal, in any order. ``complete`` carries one value per objective, in the order
   of the objectives the policy was built with; ``failed`` (the candidate raised,
   diverged or ran out of memory) and ``pruned`` (stopped early by a scheduler) carry
   the reason and, for pruned, the last reported values when there are any. A policy
   must keep working after failures: it never proposes from a failed point as if it
   had scored.
3. ``state_dict()`` returns plain JSON data (no pickle); ``load_state_dict`` on a policy
   built with the same space, objectives and seed restores it so that the next
   ``ask`` is the one the saved policy would have made. Proposals asked but never told
   before the save are forgotten by the restored policy (the driver re-runs them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Sequence, get_args, runtime_checkable

from dynas.search_space.base import Candidate, Space
from dynas.search_space.settings import Objective

TrialState = Literal["complete", "failed", "pruned"]
TRIAL_STATES: tuple[str, ...] = get_args(TrialState)   # every state a trial ends in, in that order


@dataclass(frozen=True)
class Proposal:
    """A candidate to train. Policies set ``id``, ``arch`` and ``params`` only; the
    driver sets ``seed`` and ``repeat_of`` when it trains an architecture again with a
    fresh training seed (``search.remeasure``, ``dynas confirm``): ``seed`` is then the
    training seed (None: the experiment's ``training.seed``) and ``repeat_of`` the
    proposal id of the architecture's first measurement."""

    id: int
    arch: Candidate
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    repeat_of: int | None = None


@dataclass(frozen=True)
class Outcome:
    state: TrialState
    values: tuple[float, ...] | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if self.state == "complete" and self.values is None:
            raise ValueError("a complete outcome needs its objective values")


@runtime_checkable
class Policy(Protocol):
    name: str
    space: Space
    objectives: Sequence[Objective]

    def ask(self) -> Proposal: ...

    def tell(self, proposal_id: int, outcome: Outcome) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
