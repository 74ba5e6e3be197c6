"""Uniform random search: the reference policy, and the warm-up smarter policies compose.

Every decision the space asks is drawn uniformly from a seeded generator, so a seed
fixes the whole sequence of proposals whatever the outcomes are.
"""
from __future__ import annotations

import random
from typing import Any, Sequence

from dynas.search_space.base import Space
from dynas.search_space.settings import Objective
from dynas.search_space.suggest import RandomSuggester, RecordingSuggester

from ..policy import Outcome, Proposal
from ._common import (
    STATE_VERSION,
    Outstanding,
    check_outcome,
    check_state,
    outcome_from_json,
    outcome_to_json,
    rng_from_json,
    rng_to_json,
    scored_form,
)


class RandomPolicy:
    """Proposals numbered 0, 1, 2, ...; outcomes are recorded, never used."""

    name = "random"

    def __init__(self, space: Space, objectives: Sequence[Objective], *, seed: int = 0):
        self.space = space
        self.objectives = tuple(objectives)
        self.seed = seed
        self._rng = random.Random(seed)
        self._next_id = 0
        self._outstanding = Outstanding()
        self._told: list[dict[str, Any]] = []

    def ask(self) -> Proposal:
        recorder = RecordingSuggester(RandomSuggester(rng=self._rng))
        arch = self.space.sample(recorder)
        proposal = Proposal(self._next_id, arch, dict(recorder.params))
        self._next_id += 1
        self._outstanding.add(proposal.id, proposal)
        return proposal

    def tell(self, proposal_id: int, outcome: Outcome) -> None:
        check_outcome(outcome, self.objectives)
        self._outstanding.pop(proposal_id)
        self._told.append({"id": proposal_id, **outcome_to_json(scored_form(outcome))})

    def withdraw(self, proposal_id: int) -> None:
        """Forget a proposal that a composing policy drew and will not use (never told)."""
        self._outstanding.pop(proposal_id)

    @property
    def told(self) -> list[tuple[int, Outcome]]:
        """Every outcome told so far, in telling order."""
        return [(t["id"], outcome_from_json(t)) for t in self._told]

    def state_dict(self) -> dict[str, Any]:
        return {
            "policy": self.name,
            "version": STATE_VERSION,
            "seed": self.seed,
            "next_id": self._next_id,
            "rng": rng_to_json(self._rng),
            "told": [dict(t) for t in self._told],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        check_state(state, self.name)
        self._next_id = int(state["next_id"])
        self._rng = rng_from_json(state["rng"])
        self._told = [dict(t) for t in state["told"]]
        self._outstanding = Outstanding()
