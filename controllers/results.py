"""What a trial reports, and what the driver learns from it: the trial result format.

Workers (``controllers.trainable``) import this module alone; it needs neither Ray nor
the Searcher. A trainable passes ``tune_result(...)`` to ``tune.report``: Tune sees a
few scalars (``experiences_done`` is ASHA's time attribute) and the rich fields
(accuracy matrices, expert load, curriculum log) travel as one JSON string under
``RESULT_KEY`` because Tune flattens nested results. ``parse_result`` reads it back.
Test-split metrics (``test.*``) travel only inside the blob: Tune's scalars, which a
scheduler such as ASHA reads, are validation metrics and costs only.

``TrialResult`` is what any executor (in-process or Ray) hands ``SearchDriver.tell``:
the executor's verdict (``state`` and ``reason``) and the measured fields; the driver
derives the outcome told to the policy and builds the record from it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from dynas.search_space import names

RESULT_KEY = "dynas"                  # JSON blob: metrics, acc_matrix, expert_load, ...
DONE_KEY = "experiences_done"         # Tune's time attribute for ASHA
TOTAL_KEY = "num_experiences"
SHOWN_FIRST = (names.FINAL_AVG_ACCURACY, names.FLOPS, names.FORGETTING_LAST)
TRIAL_STATES = ("complete", "failed", "pruned")


@dataclass
class TrialResult:
    """One trial as its executor saw it. ``state``: complete (every experience trained),
    failed (``reason`` says why, in ``controllers.outcomes``' wording) or pruned (stopped
    early; ``reason`` says by whom)."""

    state: str = "complete"
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    experiences_done: int = 0
    acc_matrix: list[list[float]] = field(default_factory=list)          # R_val
    test_acc_matrix: list[list[float]] = field(default_factory=list)     # R_test (never told)
    expert_load: dict[str, list[float]] = field(default_factory=dict)
    curriculum_log: list[dict[str, Any]] = field(default_factory=list)
    bits_matrix: list[list[float]] = field(default_factory=list)
    dynamics: list[dict[str, Any]] = field(default_factory=list)   # spans, realised k per experience
    wall_time_s: float = 0.0
    chance_accuracy: float | None = None   # a uniform guess's accuracy on the task
    trial_id: str = ""                # Ray's trial id, when run under Ray
    node: str = ""
    weights: str = ""                 # folder of the trained model's bundle, when saved
    evaluation: str = "standalone"    # how it was scored: record_check.EVALUATIONS

    def __post_init__(self) -> None:
        if self.state not in TRIAL_STATES:
            raise ValueError(f"trial state {self.state!r}; expected complete, failed or pruned")


def tune_result(metrics: Mapping[str, float], experiences_done: int, num_experiences: int,
                **extra: Any) -> dict[str, Any]:
    """What a trainable passes to ``tune.report``: scalars for Tune, one blob for us.

    ``extra`` may hold ``acc_matrix``, ``test_acc_matrix``, ``expert_load``, ``curriculum_log``,
    ``bits_matrix``, ``dynamics``, ``wall_time_s``, ``chance_accuracy``, ``evaluation``
    and ``node_id`` (Ray's node id; the record's ``node`` is ``IP/node-id-prefix``).
    """
    blob = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}
    # Tune's status table shows the first few scalars: make them the telling ones.
    visible = names.selection_metrics(dict(metrics))
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
    blob.setdefault("wall_time_s", float(result.get("time_total_s", 0.0)))
    return blob


def trial_result(blob: Mapping[str, Any], state: str, reason: str | None = None,
                 trial_id: str = "") -> TrialResult:
    """A parsed blob as a ``TrialResult`` with the executor's verdict."""
    return TrialResult(
        state=state, metrics=dict(blob.get("metrics", {})), reason=reason,
        experiences_done=int(blob.get(DONE_KEY, 0)), acc_matrix=blob.get("acc_matrix", []),
        test_acc_matrix=blob.get("test_acc_matrix", []),
        expert_load=blob.get("expert_load", {}), curriculum_log=blob.get("curriculum_log", []),
        bits_matrix=blob.get("bits_matrix", []), dynamics=blob.get("dynamics", []),
        wall_time_s=float(blob.get("wall_time_s", 0.0)), chance_accuracy=blob.get("chance_accuracy"),
        trial_id=trial_id, node=blob.get("node", ""), evaluation=blob.get("evaluation", "standalone"))
