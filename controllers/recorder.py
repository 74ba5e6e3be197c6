"""What a driver writes after each trial, in the one safe order.

Both drivers (the local runner and the Ray Tune searcher) tell the policy first, then
hand the record here: it is appended durably (fsync) and only then is the policy's
state rewritten. A crash between the two keeps the record; resume re-tells nothing
twice because ``known`` holds every proposal id already recorded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .dedup import CachedResult, cached_record
from .policy import Policy
from .records import POLICY_STATE_FILE, TrialRecord, append_record, write_json_atomic


class RunRecorder:
    def __init__(self, run_dir: str | Path, policy: Policy, seed: int,
                 known: Mapping[int, TrialRecord] | None = None):
        self.run_dir, self.policy, self.seed = Path(run_dir), policy, seed
        self.known: dict[int, TrialRecord] = dict(known or {})   # proposal id -> record on disk
        self.written: list[TrialRecord] = []                       # records written by this driver

    def write(self, record: TrialRecord) -> None:
        append_record(self.run_dir, record)
        self.known[record.proposal_id] = record
        self.written.append(record)
        self.save_state()

    def write_cached(self, result: CachedResult) -> None:
        """A duplicate was told the original's outcome: record it as reused, never train it."""
        if result.proposal.id in self.known:  # recorded before a crash; told again on resume
            self.save_state()
            return
        original = self.known.get(result.cached_from)
        self.write(cached_record(result, original, self.policy.name, self.seed))

    def save_state(self) -> None:
        write_json_atomic(self.run_dir / POLICY_STATE_FILE, self.policy.state_dict())
