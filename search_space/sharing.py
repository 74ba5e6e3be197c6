"""Can one weight-sharing supernet serve every candidate of a space?

``search.evaluation: supernet`` trains one set of weights and scores each candidate
with its slice of them (``trainers.supernet``). That holds only when every decision
changes *which slice* a candidate uses, never what a weight means:

- every kind the space can pick (attention, FFN, a MoE's expert and router kinds,
  the whole-model kinds) declares ``KindSpec.slices``;
- no training setting is a decision (``training.lr: [...]``): the supernet is trained
  with one setting, so a candidate's own learning rate would never have been used.

``check_shareable`` names the first decision that breaks this, as a ``ConfigError``
on its key (``space.layer.attention[2].kind``), before anything is trained.
``split`` cuts a space into the sub-supernets of a few-shot supernet (``Shot``).
Standard library only, like the rest of ``search_space``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from .arch import ArchConfig
from .errors import ConfigError
from .kinds import REGISTRIES
from .space import ArchSpace

WHY = "search.evaluation: supernet shares weights by slicing"


def check_shareable(space: object, key: str = "space") -> None:
    """Refuse, naming the decision, a space one supernet cannot share."""
    if not isinstance(space, ArchSpace):
        raise ConfigError("search.evaluation", "a supernet shares a transformer's weights; a plain "
                          "decision space has none (use search.evaluation: standalone)")
    for part in ("attention", "ffn"):
        for opt in getattr(space, part):
            _require(part, opt.kind, f"{opt.key}.kind")
            values = dict(opt.values)
            for expert in values.get("expert", ()):
                _require("ffn", expert, f"{opt.key}.expert")
            for router in values.get("router", ()):
                _require("router", router, f"{opt.key}.router")
    for family, kinds in space.model:
        for kind in kinds:
            _require(family, kind, f"{key}.{family}")
    for name, _ in space.training:
        raise ConfigError(f"training.{name}", f"{WHY}: the supernet is trained with one {name}, "
                          f"so a list here (a per-candidate {name}) cannot be shared; give one value, "
                          "or use search.evaluation: standalone")


def _require(family: str, kind: str, key: str) -> None:
    spec = REGISTRIES[family].get(kind, key)
    if not spec.slices:
        raise ConfigError(key, f"{WHY}, and {family} kind {kind!r} does not declare that its "
                          "narrower configs are leading slices of its widest one (KindSpec(slices=True)); "
                          "use search.evaluation: standalone")


# --- few-shot: one sub-supernet per answer to one decision ----------------------------
SHOT_DECISIONS = {"d_model": "d_model", "attention": "layer0.attention"}


@dataclass(frozen=True)
class Shot:
    """One sub-supernet of a few-shot split (Zhao et al., "Few-shot neural architecture
    search", ICML 2021): the architectures whose answer to ``decision`` is ``value``.

    ``decision`` is ``""`` for the one-shot supernet (it holds every architecture);
    ``d_model`` splits on the model width; ``layer0.attention`` on the first layer's
    attention *kind* (every layer picks its own kind, so the first layer's is the one
    decision every architecture answers: splitting on it is a partition). The sampler
    restricts the decision's choices with ``choices``; ``contains`` routes a candidate."""

    decision: str = ""
    value: Any = None

    @property
    def label(self) -> str:
        return f"{self.decision}={self.value}" if self.decision else "one-shot"

    def contains(self, arch: ArchConfig) -> bool:
        if self.decision == "d_model":
            return arch.d_model == self.value
        if self.decision == "layer0.attention":
            return arch.layers[0].attention.kind == self.value
        return True

    def choices(self, name: str, choices: Sequence[Any], space: ArchSpace) -> list:
        """``choices`` of decision ``name`` for a path of this shot (others unchanged)."""
        if name != self.decision:
            return list(choices)
        if name == "d_model":
            return [c for c in choices if c == self.value]
        kind = {o.label: o.kind for o in space.attention}
        return [c for c in choices if kind[c] == self.value]

    def to_dict(self) -> dict:
        return {"decision": self.decision, "value": self.value}


def split(space: ArchSpace, shots: str, key: str = "search.supernet.shots") -> list[Shot]:
    """The sub-supernets ``shots`` asks for (``one``, ``d_model``, ``attention``); a split
    with a single part (one d_model, one attention kind) is refused: it is no split."""
    if shots == "one":
        return [Shot()]
    if shots not in SHOT_DECISIONS:
        raise ConfigError(key, f"{shots!r} is not one of one, {', '.join(SHOT_DECISIONS)}")
    values = space.d_model if shots == "d_model" else tuple(dict.fromkeys(o.kind for o in space.attention))
    if len(values) < 2:
        raise ConfigError(key, f"the space has one {shots} ({values[0]}), so there is nothing to split; "
                               "use shots: one")
    return [Shot(SHOT_DECISIONS[shots], v) for v in values]
