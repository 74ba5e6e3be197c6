"""The kind registries' building blocks: a kind's spec and cost parts.

A *kind* (an attention, FFN or router variant) is declared once, as a ``KindSpec``
registered in its family's ``Registry`` (``search_space.registry``, the one registry
class of every layer). Everything else derives from the spec: the space's option
fields and conditions, config validation, the cost model and the describers.
``trainers`` registers one builder per kind under the same name.

No torch here; specs import the config dataclasses, never the other way round
(``arch.py`` looks specs up lazily).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..choices import Field


@dataclass(frozen=True)
class Part:
    """Cost of one component; ``floats`` are activation floats kept for backward,
    ``kv_floats`` the floats kept per sample for incremental decoding."""

    params: int = 0
    active: int = 0
    flops: float = 0.0
    kv_floats: float = 0.0
    floats: float = 0.0

    def __add__(self, other: "Part") -> "Part":
        return Part(self.params + other.params, self.active + other.active,
                    self.flops + other.flops, self.kv_floats + other.kv_floats,
                    self.floats + other.floats)


def linear(n_in: int, n_out: int, tokens: float, bias: bool = True) -> Part:
    """An ``nn.Linear`` applied to ``tokens`` rows: 2 FLOPs per multiply-add."""
    p = n_in * n_out + (n_out if bias else 0)
    return Part(p, p, 2.0 * tokens * n_in * n_out)


def layer_norm(d: int) -> Part:
    """An ``nn.LayerNorm(d)``: a weight and a bias, no matmul FLOPs."""
    return Part(2 * d, 2 * d)


def default_of(cls: type, name: str) -> Any:
    """The dataclass default of ``cls.name`` (so a spec never restates it)."""
    return next(f.default for f in dataclasses.fields(cls) if f.name == name)


def make_config(cls: type, kind: str) -> Callable[[dict[str, Any]], Any]:
    """A ``KindSpec.make`` for config class ``cls`` (``AttentionConfig``, ``FFNConfig``):
    the sampled values of fields the class has become its arguments, the rest (a plugin
    kind's own fields, such as a ``kernel``) go to its ``extra`` mapping; a kind with
    none of its own keeps ``extra`` None, so its JSON and arch_id are as before."""
    own = {f.name for f in dataclasses.fields(cls)} - {"kind", "extra"}

    def make(values: dict[str, Any]) -> Any:
        extra = {k: v for k, v in values.items() if k not in own}
        return cls(kind, **{k: v for k, v in values.items() if k in own}, extra=extra or None)

    make.config_class = cls   # type: ignore[attr-defined]  (KindSpec.extra_fields reads it)
    return make


def _no_check(cfg: Any, key: str) -> None:
    return None


def _no_option_check(values: Mapping[str, tuple], key: str) -> None:
    return None


@dataclass(frozen=True)
class KindSpec:
    """One kind, declared once.

    ``name``: the ``kind`` value in files and configs (also the builder's key).
    ``fields``: the option fields a space may list for this kind, in the order
    sampling asks them, each with its coercion, check and default (None = required).
    ``make(values)``: the config built from one sampled value per field
    (``make_config(AttentionConfig, name)`` for a plugin: fields the config class lacks
    are kept in its ``extra`` mapping, where the cost and the builder read them).
    ``cost``: the family's cost function (each registry's ``contract`` gives its signature).
    ``label(cfg)``: the text ``ArchConfig.describe()`` shows; ``short(cfg)`` the
    compact token of one-line summaries (``sw16``, ``moe8k2``).
    ``validate(cfg, key)``: checks beyond the field types, raising ``ConfigError``.
    ``conditions``: field -> (selector field, active(selector value)): the field
    matters only for some values of the selector (``top_p`` only for router
    ``dynamic``); otherwise it holds its default, so equal models share an arch_id.
    The selector comes before the field in ``fields``.
    ``check_option(values, key)``: cross-field checks over a space option's declared
    choices (``top_k`` <= ``experts`` for every combination).
    ``token_cost(d_model, hidden)``: FFN kinds only: (params, FLOPs per token,
    activation floats per token) of one instance; a kind that has it can also serve
    as a mixture of experts' expert and shared expert.
    ``norm``: the block gives this part a pre-norm (False for ``identity``: no
    sub-layer at all).
    ``slices``: a weight-sharing supernet (``search.evaluation: supernet``) may serve
    this kind's sub-networks by leading slices of its widest instance (every parameter
    of a narrower config is the leading block of the widest one's, as for
    ``nn.Linear`` widths, expert counts and per-head vectors). False for a kind that has
    not said so (a plugin's, by default): a supernet search on it is refused up front.
    """

    name: str
    make: Callable[[dict[str, Any]], Any]
    cost: Callable[..., Any]
    label: Callable[[Any], str]
    short: Callable[[Any], str]
    fields: tuple[tuple[str, Field], ...] = ()
    validate: Callable[[Any, str], None] = _no_check
    conditions: Mapping[str, tuple[str, Callable[[Any], bool]]] = field(default_factory=dict)
    check_option: Callable[[Mapping[str, tuple], str], None] = _no_option_check
    token_cost: Callable[[int, int], tuple[int, float, float]] | None = None
    norm: bool = True
    slices: bool = False

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def extra_fields(self) -> tuple[tuple[str, Field], ...]:
        """The fields kept in the config's ``extra`` mapping: those a ``make_config``
        maker's config class has no attribute for (a custom ``make``, such as the MoE's
        that puts ``top_k`` into its router, keeps none there)."""
        cls = getattr(self.make, "config_class", None)
        if cls is None:
            return ()
        own = {f.name for f in dataclasses.fields(cls)}
        return tuple((name, fld) for name, fld in self.fields if name not in own)

    def get_field(self, name: str) -> Field:
        return dict(self.fields)[name]

    def active(self, name: str, picked: Mapping[str, Any]) -> bool:
        """Whether field ``name`` shapes the model, given the values picked so far."""
        cond = self.conditions.get(name)
        return cond is None or cond[1](picked[cond[0]])
