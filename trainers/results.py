"""What ``fit`` returns and reports: the contract between trainers and controllers."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class TrialMetrics:
    """Everything one candidate's training produced: the one shape of "what a trial
    measured", carried unchanged from ``fit`` through the executors
    (``controllers.results.TrialResult.measured``) into the record
    (``controllers.records.TrialRecord.measured``). A new measured field is added here,
    where it is produced, and checked in ``controllers.record_check``; nothing in
    between copies fields.

    ``values`` maps names from ``search_space.names`` (accuracy, forgetting, cost) to
    floats: plain names are measured on the validation splits, ``test.<name>`` on the
    held-out test splits. ``acc_matrix[i][j]`` is validation accuracy on experience j
    after training on experience i (j > i: not yet seen, still measured) and
    ``test_acc_matrix`` the same on the test splits; ``expert_load`` maps an MoE layer
    name to the fraction of routed tokens each expert received (validation pass);
    ``bits_matrix[i][j]`` is validation cross-entropy in bits per labelled token on
    experience j after experience i (bits per character on ``text_lm``);
    ``dynamics[i]`` what the dynamic blocks did after experience i (learned spans per
    head and layer, realised k per MoE layer; ``trainers.dynamics``).
    """

    values: dict[str, float] = field(default_factory=dict)
    acc_matrix: list[list[float]] = field(default_factory=list)
    test_acc_matrix: list[list[float]] = field(default_factory=list)
    expert_load: dict[str, list[float]] = field(default_factory=dict)
    curriculum_log: list[dict[str, Any]] = field(default_factory=list)
    bits_matrix: list[list[float]] = field(default_factory=list)
    dynamics: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0
    chance_accuracy: float | None = None   # a uniform guess's accuracy on this task (Task.chance_accuracy)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialMetrics":
        """The fields ``data`` holds (others are ignored: a blob or record carries more)."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class ExperienceProgress:
    """Sent to callbacks after each experience: enough to report and to prune."""

    experience: int               # index just finished (0-based)
    num_experiences: int
    values: dict[str, float]      # continual metrics over experiences 0..experience (+ test.*)
    acc_matrix: list[list[float]] # R_val rows 0..experience
    test_acc_matrix: list[list[float]]  # R_test rows 0..experience
    checkpoint_dir: Path | None   # where fit saved its resumable state, if it did


class FitCallback(Protocol):
    def on_experience_end(self, progress: ExperienceProgress) -> None: ...


class NonFiniteLoss(RuntimeError):
    """Training diverged (NaN/inf loss): the trial fails with this as its reason."""
