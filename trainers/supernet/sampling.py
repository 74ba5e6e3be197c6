"""``PathSampler``: which paths of a (sub-)supernet one training step trains.

``search.supernet.sampling`` picks the rule:

- ``uniform``: one path, every decision uniform (SPOS, Guo et al. 2020);
- ``fair``: one path, each decision's choices dealt from shuffled rounds (``FairSuggester``):
  over any full round every choice of a layer is trained exactly once, instead of
  equally often only in expectation. FairNAS (Chu et al. 2021) goes further and sums a
  whole round into one update; here a round spans consecutive steps;
- ``sandwich``: the largest path, the smallest and ``sandwich_paths`` uniform ones, their
  losses summed into one update (BigNAS, Yu et al. 2020). A space's kinds have no
  order, so "largest" is every *numeric* decision (depth, width, heads, window, span,
  experts, top_k, ...) at its largest value, the categorical ones (kinds, routers) uniform;
  "smallest" likewise at the smallest.

A few-shot sub-supernet's sampler answers its split decision only with its own values
(``Shot.choices``), so it trains only the architectures it holds. Every path is
resampled until feasible (``MAX_RESAMPLE`` draws).
"""
from __future__ import annotations

import random
from typing import Any, Callable, Sequence

from dynas.search_space.arch import ArchConfig
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.sharing import Shot
from dynas.search_space.space import ArchSpace
from dynas.search_space.suggest import RandomSuggester, Suggester

MAX_RESAMPLE = 200                   # draws before giving up on a feasible path
SAMPLINGS = ("uniform", "fair", "sandwich")

Feasible = Callable[[ArchConfig], "tuple[bool, str]"]


def _numeric(choices: Sequence[Any]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


class FairSuggester:
    """Each decision's choices dealt from a shuffled round; a new round once one is used
    up. Rounds are kept per (decision, choices), so a restricted decision has its own."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rounds: dict[tuple, list] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        key = (name, tuple(choices))
        left = self.rounds.get(key)
        if not left:
            left = self.rounds[key] = list(choices)
            self.rng.shuffle(left)
        return left.pop()

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.suggest_categorical(name, list(range(low, high + 1, step)))


class _Extreme:
    """Numeric decisions at their largest (``pick=max``) or smallest; the rest to ``inner``."""

    def __init__(self, inner: Suggester, pick: Callable):
        self.inner, self.pick = inner, pick

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self.pick(choices) if _numeric(choices) else self.inner.suggest_categorical(name, choices)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.pick(range(low, high + 1, step))


class _Pinned:
    """A shot's split decision answered from its own values only; the rest to ``inner``."""

    def __init__(self, inner: Suggester, shot: Shot, space: ArchSpace):
        self.inner, self.shot, self.space = inner, shot, space

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        mine = self.shot.choices(name, choices, self.space)
        return mine[0] if len(mine) == 1 else self.inner.suggest_categorical(name, mine)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.inner.suggest_int(name, low, high, step)


class PathSampler:
    """The paths of one training step under ``sampling`` (module docstring)."""

    def __init__(self, space: ArchSpace, *, sampling: str = "uniform", sandwich_paths: int = 2,
                 shot: Shot | None = None, feasible: Feasible | None = None, seed: int = 0):
        if sampling not in SAMPLINGS:
            raise ConfigError("search.supernet.sampling", f"{sampling!r} is not one of {', '.join(SAMPLINGS)}")
        self.space, self.sampling, self.sandwich_paths = space, sampling, sandwich_paths
        self.shot, self.feasible = shot or Shot(), feasible
        self.rng = random.Random(seed)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Seed the draws (per experience: a resumed training draws what it would have)."""
        self.rng.seed(seed)
        base = FairSuggester(self.rng) if self.sampling == "fair" else RandomSuggester(rng=self.rng)
        self._base = _Pinned(base, self.shot, self.space)
        self._largest = _Pinned(_Extreme(RandomSuggester(rng=self.rng), max), self.shot, self.space)
        self._smallest = _Pinned(_Extreme(RandomSuggester(rng=self.rng), min), self.shot, self.space)

    def sample(self) -> ArchConfig:
        """One feasible path by the base rule (uniform or fair)."""
        return self._draw(self._base)

    def step(self) -> list[ArchConfig]:
        """The paths one training step trains, in order."""
        if self.sampling != "sandwich":
            return [self.sample()]
        return [self._draw(self._largest), self._draw(self._smallest),
                *(self._draw(self._base) for _ in range(self.sandwich_paths))]

    def _draw(self, suggester: Suggester) -> ArchConfig:
        why = ""
        for _ in range(MAX_RESAMPLE):
            arch = self.space.sample(suggester)
            try:
                arch.validate()
            except ConfigError as err:
                why = str(err)
                continue
            ok, why = self.feasible(arch) if self.feasible else (True, "")
            if ok:
                return arch
        raise DynasError(f"the supernet drew {MAX_RESAMPLE} infeasible paths in a row (last: {why})")
