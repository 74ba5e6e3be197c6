"""``search.ppo``: PPO's settings (no torch here, so the registry stays cheap to import)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dynas.search_space.settings import Range, check_ranges


@dataclass(frozen=True)
class PPOSettings:
    lr: float = 0.05
    clip: float = 0.2
    batch: int = 4                    # proposals per policy update
    epochs: int = 4                   # passes over each batch
    entropy_bonus: float = 0.05       # weight of entropy / max entropy (advantages have unit scale)
    baseline_decay: float = 0.9       # moving-average baseline
    reward: Literal["scalar", "hypervolume", "rank", "chebyshev"] = "rank"   # one objective: scalar
    flops_penalty: float = 0.05       # scalar reward: acc - penalty * log2(flops / min_flops)
    surrogate: bool = False
    surrogate_screen: int = 8         # policy samples scored by the surrogate per ask
    warmup: int = 4                   # random proposals before the policy is used
    novelty_tries: int = 32           # re-draws of an already-proposed sample before giving up

    def validate(self, key: str = "search.ppo") -> None:
        """Ranges a file can get wrong, reported with their keys."""
        check_ranges(self, key or "search.ppo", PPO_RANGES)


PPO_RANGES = {
    "lr": Range(0, 100, low_open=True), "clip": Range(0, 10, low_open=True), "batch": Range(1, 10**5),
    "epochs": Range(1, 1000), "entropy_bonus": Range(0, 100), "baseline_decay": Range(0, 0.999999),
    "flops_penalty": Range(0, 1000), "surrogate_screen": Range(1, 10**5), "warmup": Range(0, 10**6),
    "novelty_tries": Range(1, 10**4),
}
