"""``search.ppo``: PPO's settings (no torch here, so the registry stays cheap to import)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from search_space.errors import ConfigError


@dataclass(frozen=True)
class PPOSettings:
    lr: float = 0.05
    clip: float = 0.2
    batch: int = 4                    # proposals per policy update
    epochs: int = 4                   # passes over each batch
    entropy_bonus: float = 0.05       # weight of entropy / max entropy (advantages have unit scale)
    baseline_decay: float = 0.9       # moving-average baseline
    reward: Literal["scalar", "hypervolume"] = "scalar"
    flops_penalty: float = 0.05       # scalar reward: acc - penalty * log2(flops / min_flops)
    surrogate: bool = False
    surrogate_screen: int = 8         # policy samples scored by the surrogate per ask
    warmup: int = 4                   # random proposals before the policy is used
    novelty_tries: int = 32           # re-draws of an already-proposed sample before giving up

    def validate(self, key: str = "search.ppo") -> None:
        """Ranges a file can get wrong, reported with their keys."""
        checks = {
            "lr": self.lr > 0, "clip": self.clip > 0, "batch": self.batch >= 1,
            "epochs": self.epochs >= 1, "entropy_bonus": self.entropy_bonus >= 0,
            "baseline_decay": 0 <= self.baseline_decay < 1, "flops_penalty": self.flops_penalty >= 0,
            "surrogate_screen": self.surrogate_screen >= 1, "warmup": self.warmup >= 0,
            "novelty_tries": self.novelty_tries >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"{key or 'search.ppo'}.{name}", f"invalid value {getattr(self, name)!r}")
