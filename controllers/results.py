"""What a trial reports, and what the driver learns from it: the trial result format.

Workers (``controllers.tune.trainable``) import this module alone; it needs neither Ray
nor the Searcher. A trainable passes ``tune_result(...)`` to ``tune.report``: Tune sees a
few scalars (``experiences_done`` is ASHA's time attribute) and the whole
``TrialMetrics`` travels as one JSON string under ``RESULT_KEY`` because Tune flattens
nested results. ``parse_result`` reads it back. Test-split metrics (``test.*``) travel
only inside the blob: Tune's scalars, which a scheduler such as ASHA reads, are
validation metrics and costs only.

``TrialResult`` is what any executor (in-process or Ray) hands ``SearchDriver.tell``:
the executor's verdict (``state`` and ``reason``), where it ran, and what the trial
measured as one ``trainers.results.TrialMetrics`` (``measured``), never copied field by
field; the driver derives the outcome told to the policy and builds the record from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from dynas.search_space import names
from dynas.trainers.results import TrialMetrics

from .policy import TRIAL_STATES

RESULT_KEY = "dynas"                  # JSON blob: the TrialMetrics and the executor's fields
DONE_KEY = "experiences_done"         # Tune's time attribute for ASHA
TOTAL_KEY = "num_experiences"
SHOWN_FIRST = (names.FINAL_AVG_ACCURACY, names.FLOPS, names.FORGETTING_LAST)


@dataclass
class TrialResult:
    """One trial as its executor saw it. ``state``: complete (every experience trained),
    failed (``reason`` says why, in ``controllers.outcomes``' wording) or pruned (stopped
    early; ``reason`` says by whom)."""

    state: str = "complete"
    measured: TrialMetrics = field(default_factory=TrialMetrics)
    reason: str | None = None
    experiences_done: int = 0
    trial_id: str = ""                # Ray's trial id, when run under Ray
    node: str = ""
    weights: str = ""                 # folder of the trained model's bundle, when saved
    evaluation: str = "standalone"    # how it was scored: record_check.EVALUATIONS

    def __post_init__(self) -> None:
        if self.state not in TRIAL_STATES:
            raise ValueError(f"trial state {self.state!r}; expected {', '.join(TRIAL_STATES)}")

    @property
    def metrics(self) -> dict[str, float]:
        return self.measured.values


def tune_result(measured: TrialMetrics, experiences_done: int, num_experiences: int, *,
                evaluation: str = "standalone", node_id: str = "") -> dict[str, Any]:
    """What a trainable passes to ``tune.report``: scalars for Tune, one blob for us
    (``node_id``: Ray's node id; the record's ``node`` is ``IP/node-id-prefix``)."""
    blob = {"measured": measured.to_dict(), "evaluation": evaluation, "node_id": node_id}
    # Tune's status table shows the first few scalars: make them the telling ones.
    visible = names.selection_metrics(dict(measured.values))
    first = [k for k in SHOWN_FIRST if k in visible]
    scalars = {k: float(visible[k]) for k in first + sorted(set(visible) - set(first))}
    return {DONE_KEY: int(experiences_done), **scalars, TOTAL_KEY: int(num_experiences),
            RESULT_KEY: json.dumps(blob, allow_nan=True)}


def parse_result(result: Mapping[str, Any] | None) -> dict[str, Any]:
    """The blob of a ``tune_result`` (empty when the trial never reported)."""
    if not result or RESULT_KEY not in result:
        return {}
    blob = json.loads(result[RESULT_KEY])
    blob[DONE_KEY] = int(result.get(DONE_KEY, 0))
    blob[TOTAL_KEY] = int(result.get(TOTAL_KEY, 0))
    node_id = blob.pop("node_id", "")       # IPs alone do not tell loopback nodes apart
    blob["node"] = str(result.get("node_ip", "")) + (f"/{node_id[:8]}" if node_id else "")
    measured = blob.setdefault("measured", {})
    if not measured.get("wall_time_s"):
        measured["wall_time_s"] = float(result.get("time_total_s", 0.0))
    return blob


def trial_result(blob: Mapping[str, Any], state: str, reason: str | None = None,
                 trial_id: str = "") -> TrialResult:
    """A parsed blob as a ``TrialResult`` with the executor's verdict."""
    return TrialResult(state=state, measured=TrialMetrics.from_dict(blob.get("measured", {})),
                       reason=reason, experiences_done=int(blob.get(DONE_KEY, 0)), trial_id=trial_id,
                       node=blob.get("node", ""), evaluation=blob.get("evaluation", "standalone"))
