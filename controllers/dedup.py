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

Re-measurement (``search.remeasure: N``, off by default): a duplicate of a complete
architecture measured fewer than 1 + N times is not answered from the cache but
trained again with a fresh training seed (a ``Proposal`` with ``seed`` and
``repeat_of`` set); the policy is then told the mean over the architecture's complete
measurements, and later duplicates get that mean. ``Measured`` keeps, per
architecture, what that mean needs: how many measurements were told, how many
completed, their mean values, and the training seeds used.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import ConfigError, InfeasibleError

from .policy import Outcome, Policy, Proposal
from .records import TrialRecord


@dataclass(frozen=True)
class CachedResult:
    """A duplicate proposal, and the outcome it was told, reused from ``cached_from``."""

    proposal: Proposal
    outcome: Outcome
    cached_from: int


@dataclass
class Measured:
    """An architecture's measurements so far (first training and seed repeats)."""

    told: int = 0                     # measurements the policy heard (first + remeasures)
    complete: int = 0                 # of those, complete ones
    mean: tuple[float, ...] | None = None    # mean objective values of the complete ones
    seeds: list[int | None] = field(default_factory=list)   # training seeds (None: the experiment's)

    def add(self, outcome: Outcome, seed: int | None) -> None:
        self.seeds.append(seed)
        self.told += 1
        if outcome.state == "complete" and outcome.values is not None:
            values = tuple(float(v) for v in outcome.values)
            old = self.mean or tuple(0.0 for _ in values)
            self.complete += 1
            self.mean = tuple(m + (v - m) / self.complete for m, v in zip(old, values))

    def fresh_seed(self, base: int) -> int:
        """A training seed no measurement of this architecture used: one past the largest."""
        return max(base if s is None else s for s in self.seeds) + 1 if self.seeds else base + 1


def mean_outcome(measured: Measured, outcome: Outcome) -> Outcome:
    """What a policy hears after a re-measurement: the mean over complete measurements
    (this one included), or ``outcome`` itself when none completed."""
    probe = dataclasses.replace(measured, seeds=list(measured.seeds))
    probe.add(outcome, None)
    if probe.mean is None:
        return outcome
    reason = f"mean of {probe.complete} seeds"
    return Outcome("complete", probe.mean, reason)


class DedupCache:
    def __init__(self, base_seed: int = 0, identity: Callable[[Any], str] | None = None) -> None:
        self.identity = identity                              # candidate -> key; None: arch_id
        self._keys: dict[str, str] = {}                       # arch_id -> its key, as seen
        self._done: dict[str, tuple[int, Outcome]] = {}        # key -> (proposal id, outcome)
        self._running: dict[str, int] = {}                    # key -> proposal id training it
        self._waiting: dict[str, list[Proposal]] = {}         # key -> duplicates of a running one
        self._measured: dict[str, Measured] = {}              # key -> its measurements
        self.base_seed = base_seed                            # the experiment's training seed

    def key(self, arch: Any) -> str:
        """The identity ``arch`` is de-duplicated under (remembered for its arch_id)."""
        key = arch.arch_id if self.identity is None else self.identity(arch)
        self._keys[arch.arch_id] = key
        return key

    def _record_key(self, record: TrialRecord) -> str:
        if self.identity is None:
            return record.arch_id
        try:
            arch = ArchConfig.from_dict(record.arch)
        except ConfigError:                                  # a plain or reference candidate
            return record.arch_id
        key = self.identity(arch)
        self._keys[record.arch_id] = key
        return key

    def __len__(self) -> int:
        """Distinct architectures trained or training."""
        return len(self._done) + len(self._running)

    def __contains__(self, arch_id: str) -> bool:
        return arch_id in self._done or arch_id in self._running

    def lookup(self, arch_id: str) -> tuple[int, Outcome] | None:
        return self._done.get(arch_id)

    def measured(self, arch_id: str) -> Measured:
        """The measurements of the architecture ``arch_id`` (a key from ``key`` is its
        own arch_id's key when the identity rewrites nothing)."""
        return self._measured.setdefault(self._keys.get(arch_id, arch_id), Measured())

    def remeasure(self, proposal: Proposal, original: int, times: int) -> Proposal | None:
        """``proposal`` (a duplicate of finished ``original``) as a seed repeat, when its
        architecture completed and was told fewer than 1 + ``times`` measurements."""
        outcome = self._done[self.key(proposal.arch)][1]
        measured = self.measured(proposal.arch.arch_id)
        if times <= 0 or outcome.state != "complete" or measured.told >= 1 + times:
            return None
        return dataclasses.replace(proposal, seed=measured.fresh_seed(self.base_seed), repeat_of=original)

    def told_outcome(self, proposal: Proposal, outcome: Outcome) -> Outcome:
        """What the policy is told for a trained ``proposal`` measured as ``outcome``."""
        if proposal.repeat_of is None:
            return outcome
        return mean_outcome(self.measured(proposal.arch.arch_id), outcome)

    def start(self, proposal: Proposal) -> None:
        """``proposal`` is about to be trained."""
        self._running[self.key(proposal.arch)] = proposal.id

    def finish(self, policy: Policy, proposal: Proposal, outcome: Outcome,
               measured: Outcome | None = None) -> list[CachedResult]:
        """Cache a trained proposal's told ``outcome`` (the driver tells ``policy``
        itself; ``measured``: its own measurement when that differs, as for a seed
        repeat); tell and return the duplicates that were waiting for it."""
        arch_id = self.key(proposal.arch)
        self._running.pop(arch_id, None)
        self.measured(arch_id).add(measured or outcome, proposal.seed)
        self._done[arch_id] = (proposal.id if proposal.repeat_of is None else proposal.repeat_of, outcome)
        results = []
        for dup in self._waiting.pop(arch_id, []):
            policy.tell(dup.id, outcome)
            results.append(CachedResult(dup, outcome, proposal.id))
        return results

    def add_record(self, record: TrialRecord) -> None:
        """Seed from a run's records (on resume): trained records only. A remeasure
        record holds the mean it told; a confirmation only adds its seed."""
        if record.cached_from is not None:
            return
        values = None if record.objectives is None else tuple(record.objectives)
        key = self._record_key(record)
        if record.is_confirmation:
            self.measured(key).seeds.append(record.train_seed)
            return
        if record.state == "complete" and values is None:
            return
        own = Outcome(record.state, values, record.reason)
        measured = self.measured(key)
        if record.repeat_of is None:
            measured.add(own, record.train_seed)
            self._done[key] = (record.proposal_id, own)
            return
        # a remeasure: its objectives are the mean told after it; its state its own
        measured.seeds.append(record.train_seed)
        measured.told += 1
        if record.state == "complete":
            measured.complete += 1
        if values is not None:
            measured.mean = values
            self._done[key] = (record.repeat_of, Outcome("complete", values, record.reason))

    @classmethod
    def from_records(cls, records: Iterable[TrialRecord], base_seed: int = 0,
                     identity: Callable[[Any], str] | None = None) -> "DedupCache":
        cache = cls(base_seed, identity)
        for record in records:
            cache.add_record(record)
        return cache

    def wait_for_original(self, proposal: Proposal) -> None:
        """``proposal`` duplicates a running trial: tell it in ``finish``."""
        self._waiting.setdefault(self.key(proposal.arch), []).append(proposal)


def next_new_proposal(
    policy: Policy,
    cache: DedupCache,
    max_tries: int = 50,
    on_cached: Callable[[CachedResult], None] | None = None,
    remeasure: int = 0,
) -> tuple[Proposal, list[CachedResult], int]:
    """Ask until the policy proposes an architecture not in ``cache``, or (``remeasure``
    > 0) one to measure again with a fresh seed (``DedupCache.remeasure``); mark it
    started. Returns that proposal, the cached duplicates and how many asks it took.

    Duplicates of finished trials are told their cached outcome and returned (and passed
    to ``on_cached`` right away, so a driver can record them before anything else can
    fail); duplicates of running trials wait for ``cache.finish``. ``max_tries``
    duplicates in a row mean the policy has nothing new left to propose.
    """
    cached: list[CachedResult] = []
    for asks in range(1, max_tries + 1):
        proposal = policy.ask()
        arch_id = cache.key(proposal.arch)
        if arch_id not in cache:
            cache.start(proposal)
            return proposal, cached, asks
        hit = cache.lookup(arch_id)
        if hit is None:
            cache.wait_for_original(proposal)
            continue
        original, outcome = hit
        repeat = cache.remeasure(proposal, original, remeasure)
        if repeat is not None:
            cache.start(repeat)
            return repeat, cached, asks
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
