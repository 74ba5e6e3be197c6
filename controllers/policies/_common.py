"""Small pieces every policy shares: outstanding-proposal bookkeeping, outcome checks,
and JSON forms of outcomes and random-generator states (state dicts are plain JSON)."""
from __future__ import annotations

import random
from typing import Any, Sequence

import numpy as np

from dynas.search_space.settings import Objective

from ..objectives import is_finite
from ..outcomes import non_finite_objectives
from ..policy import Outcome

STATE_VERSION = 1


class Outstanding:
    """Proposals asked and not yet told; telling an unknown id is the driver's bug."""

    def __init__(self) -> None:
        self._items: dict[int, Any] = {}

    def add(self, proposal_id: int, item: Any) -> None:
        self._items[proposal_id] = item

    def pop(self, proposal_id: int) -> Any:
        if proposal_id not in self._items:
            raise KeyError(f"proposal {proposal_id} is not outstanding (never asked, already told, "
                           f"or asked before a restore)")
        return self._items.pop(proposal_id)

    def __len__(self) -> int:
        return len(self._items)


def derive_seed(seed: int, stream: int) -> int:
    """A well-mixed 32-bit seed per (policy seed, stream): a proposal id, a warm-up."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, stream]).generate_state(1)[0])


def check_outcome(outcome: Outcome, objectives: Sequence[Objective]) -> None:
    """A told outcome must carry one value per objective when it carries any."""
    if outcome.state not in ("complete", "failed", "pruned"):
        raise ValueError(f"unknown trial state {outcome.state!r}")
    if outcome.values is not None and len(outcome.values) != len(objectives):
        raise ValueError(f"outcome has {len(outcome.values)} values for {len(objectives)} objectives")


def scored_form(outcome: Outcome) -> Outcome:
    """The outcome as a policy should learn from it: a "complete" outcome with NaN/inf
    values is a failure (it must never score), and a pruned one drops such values."""
    finite = is_finite(outcome.values)
    if outcome.state == "complete" and not finite:
        return Outcome("failed", None, non_finite_objectives(outcome.values))
    if outcome.state == "pruned" and outcome.values is not None and not finite:
        return Outcome("pruned", None, outcome.reason)
    return outcome


def outcome_to_json(outcome: Outcome) -> dict[str, Any]:
    values = None if outcome.values is None else [float(v) for v in outcome.values]
    return {"state": outcome.state, "values": values, "reason": outcome.reason}


def outcome_from_json(data: dict[str, Any]) -> Outcome:
    values = data.get("values")
    return Outcome(data["state"], None if values is None else tuple(values), data.get("reason"))


def rng_to_json(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def rng_from_json(data: list) -> random.Random:
    rng = random.Random()
    rng.setstate((data[0], tuple(data[1]), data[2]))
    return rng


def check_state(state: dict[str, Any], name: str) -> None:
    """Refuse a state dict saved by another policy or a newer format."""
    if state.get("policy") != name:
        raise ValueError(f"state was saved by policy {state.get('policy')!r}, not {name!r}")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported {name} state version {state.get('version')!r}")
