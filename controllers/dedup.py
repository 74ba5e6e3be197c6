"""No architecture is trained twice in one run.

Policies may propose a candidate they (or their warm-up) already proposed: random
search on a small space does, and a converged PPO policy does often. The cache maps
``arch_id`` to the outcome of the trial that trained it. ``next_new_proposal`` asks the
policy until it proposes something new; every duplicate is told the cached outcome at
once (so the policy still learns from it) and handed back to the driver, which writes
it as a record with ``cached_from`` set instead of training it (``SearchDriver``).

A duplicate of a candidate that is still training waits: ``finish`` tells it the
original's outcome when that arrives. Every outcome is cached, failures included: the
same architecture with the same seed fails the same way (NaN loss, out of memory).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from search_space.errors import InfeasibleError

from .policy import Outcome, Policy, Proposal
from .records import TrialRecord


@dataclass(frozen=True)
class CachedResult:
    """A duplicate proposal, and the outcome it was told, reused from ``cached_from``."""

    proposal: Proposal
    outcome: Outcome
    cached_from: int


class DedupCache:
    def __init__(self) -> None:
        self._done: dict[str, tuple[int, Outcome]] = {}        # arch_id -> (proposal id, outcome)
        self._running: dict[str, int] = {}                    # arch_id -> proposal id training it
        self._waiting: dict[str, list[Proposal]] = {}         # arch_id -> duplicates of a running one

    def __len__(self) -> int:
        """Distinct architectures trained or training."""
        return len(self._done) + len(self._running)

    def __contains__(self, arch_id: str) -> bool:
        return arch_id in self._done or arch_id in self._running

    def lookup(self, arch_id: str) -> tuple[int, Outcome] | None:
        return self._done.get(arch_id)

    def start(self, proposal: Proposal) -> None:
        """``proposal`` is about to be trained."""
        self._running[proposal.arch.arch_id] = proposal.id

    def finish(self, policy: Policy, proposal: Proposal, outcome: Outcome) -> list[CachedResult]:
        """Cache a trained outcome (the driver tells ``policy`` itself); tell and return
        the duplicates that were waiting for it."""
        arch_id = proposal.arch.arch_id
        self._running.pop(arch_id, None)
        self._done[arch_id] = (proposal.id, outcome)
        results = []
        for dup in self._waiting.pop(arch_id, []):
            policy.tell(dup.id, outcome)
            results.append(CachedResult(dup, outcome, proposal.id))
        return results

    def add_record(self, record: TrialRecord) -> None:
        """Seed from a run's records (on resume): trained records only."""
        if record.cached_from is None:
            values = None if record.objectives is None else tuple(record.objectives)
            if record.state == "complete" and values is None:
                return
            self._done[record.arch_id] = (record.proposal_id, Outcome(record.state, values, record.reason))

    @classmethod
    def from_records(cls, records: Iterable[TrialRecord]) -> "DedupCache":
        cache = cls()
        for record in records:
            cache.add_record(record)
        return cache

    def wait_for_original(self, proposal: Proposal) -> None:
        """``proposal`` duplicates a running trial: tell it in ``finish``."""
        self._waiting.setdefault(proposal.arch.arch_id, []).append(proposal)


def next_new_proposal(
    policy: Policy,
    cache: DedupCache,
    max_tries: int = 50,
    on_cached: Callable[[CachedResult], None] | None = None,
) -> tuple[Proposal, list[CachedResult], int]:
    """Ask until the policy proposes an architecture not in ``cache``; mark it started.
    Returns the new proposal, the cached duplicates and how many asks it took.

    Duplicates of finished trials are told their cached outcome and returned (and passed
    to ``on_cached`` right away, so a driver can record them before anything else can
    fail); duplicates of running trials wait for ``cache.finish``. ``max_tries``
    duplicates in a row mean the policy has nothing new left to propose.
    """
    cached: list[CachedResult] = []
    for asks in range(1, max_tries + 1):
        proposal = policy.ask()
        arch_id = proposal.arch.arch_id
        if arch_id not in cache:
            cache.start(proposal)
            return proposal, cached, asks
        hit = cache.lookup(arch_id)
        if hit is None:
            cache.wait_for_original(proposal)
            continue
        original, outcome = hit
        policy.tell(proposal.id, outcome)
        result = CachedResult(proposal, outcome, original)
        cached.append(result)
        if on_cached is not None:
            on_cached(result)
    raise InfeasibleError(exhausted_reason(policy, cache, max_tries))


def exhausted_reason(policy: Policy, cache: DedupCache, max_tries: int) -> str:
    """Why no new candidate came: the space truly ran out (every distinct candidate
    trained or training), or the policy kept repeating itself with candidates left."""
    size, seen = policy.space.size(), len(cache)
    if seen >= size:
        return f"the space is exhausted: all {size} distinct candidates were explored"
    return (f"{policy.name} proposed only known candidates {max_tries} times in a row, with "
            f"{size - seen} of the space's {size} distinct candidates never tried ({seen} explored)")
