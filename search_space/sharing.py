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
Standard library only, like the rest of ``search_space``.
"""
from __future__ import annotations

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
