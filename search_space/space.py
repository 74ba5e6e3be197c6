"""Search spaces read from the ``space`` section of an experiment file.

``ArchSpace``: heterogeneous transformers. Global ``layers`` and ``d_model``; a
per-layer template of attention and FFN options, so every layer picks its own:

    layers: [2, 3]
    d_model: [64, 128]
    layer:
      attention: [{kind: full, heads: [2, 4]}, {kind: sliding_window, heads: 4, window: [16]}]
      ffn: [{kind: dense, expansion: [2, 4]}, {kind: moe, experts: [4, 8], top_k: [1, 2]}]

``DecisionSpace`` (``space: {decisions: {...}}``, in ``plain.py``): named decisions.

Both are sampled define-by-run: ``sample(suggester)`` asks one question per decision
it reaches. Decision names are stable and per option (``layer1.ffn.moe.top_k``), so
an Optuna parameter never changes its distribution. Everything that can be sampled is
buildable: parsing checks every combination of the declared choices up front.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields
from typing import Any, Mapping

from .arch import (BALANCE_KINDS, ROUTER_KINDS, ArchConfig,
                   AttentionConfig, FFNConfig, LayerConfig, RouterConfig)
from .choices import (Field, as_float, as_int, as_str, at_least, choices, join, mapping,
                      one_of, reject_unknown, short)
from .errors import ConfigError
from .plain import DecisionSpace, parse_decision_space
from .suggest import Decision, Suggester


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)


def _top_p_check(v: float) -> str | None:
    return None if 0.0 < v <= 1.0 else f"must be in (0, 1], got {v}"


_POSITIVE = at_least(1)
FIELDS: dict[str, Field] = {
    "heads": Field(as_int, _POSITIVE),
    "window": Field(as_int, _POSITIVE),
    "max_span": Field(as_int, _POSITIVE),
    "experts": Field(as_int, _POSITIVE),
    "top_k": Field(as_int, _POSITIVE, _default(RouterConfig, "top_k")),
    "router": Field(as_str, one_of(*ROUTER_KINDS), _default(RouterConfig, "kind")),
    "top_p": Field(as_float, _top_p_check, _default(RouterConfig, "top_p")),
    "shared_experts": Field(as_int, at_least(0), _default(FFNConfig, "shared_experts")),
    "capacity_factor": Field(as_float, at_least(0), _default(FFNConfig, "capacity_factor")),
    "balance": Field(as_str, one_of(*BALANCE_KINDS), _default(FFNConfig, "balance")),
    "expansion": Field(as_int, _POSITIVE, _default(FFNConfig, "expansion")),
}
# The fields each kind accepts, in the order sampling asks them.
KIND_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "attention": {
        "full": ("heads",),
        "sliding_window": ("heads", "window"),
        "dynamic_span": ("heads", "max_span"),
        "linear": ("heads",),
    },
    "ffn": {
        "dense": ("expansion",),
        "moe": ("experts", "top_k", "router", "top_p", "shared_experts", "capacity_factor",
                "balance", "expansion"),
    },
}
# top_p only shapes the dynamic router; a topk arch stores the default so that equal
# models share an arch_id whatever top_p list the file declared.
CANONICAL_TOP_P = _default(RouterConfig, "top_p")
ARCH_KEYS = ("layers", "d_model", "layer")
MAX_LAYERS = 1024  # a typo like 10000 would otherwise hang describe and sampling


def _layer_count(v: int) -> str | None:
    return _POSITIVE(v) or (None if v <= MAX_LAYERS else f"must be <= {MAX_LAYERS}, got {v}")


@dataclass(frozen=True)
class Option:
    """One entry of ``layer.attention`` or ``layer.ffn``: a kind and its field choices.

    ``label`` names it in decisions: the kind, or ``kind#i`` (its list index) when two
    options share a kind.
    """

    kind: str
    label: str
    key: str
    values: tuple[tuple[str, tuple], ...]

    def __getitem__(self, name: str) -> tuple:
        return dict(self.values)[name]


@dataclass(frozen=True)
class ArchSpace:
    """Heterogeneous transformers: ``layers`` x ``d_model`` x per-layer options."""

    layers: tuple[int, ...]
    d_model: tuple[int, ...]
    attention: tuple[Option, ...]
    ffn: tuple[Option, ...]

    # --- sampling ------------------------------------------------------------------
    def sample(self, suggester: Suggester) -> ArchConfig:
        n = _ask(suggester, "layers", self.layers)
        d_model = _ask(suggester, "d_model", self.d_model)
        return ArchConfig(d_model, tuple(self._sample_layer(suggester, i) for i in range(n)))

    def _sample_layer(self, s: Suggester, i: int) -> LayerConfig:
        att = self._pick(s, f"layer{i}.attention", self.attention)
        a = _values(s, f"layer{i}.attention.{att.label}", att)
        ffn = self._pick(s, f"layer{i}.ffn", self.ffn)
        return LayerConfig(AttentionConfig(att.kind, **a),
                           _build_ffn(ffn.kind, _values(s, f"layer{i}.ffn.{ffn.label}", ffn)))

    @staticmethod
    def _pick(s: Suggester, name: str, options: tuple[Option, ...]) -> Option:
        label = _ask(s, name, tuple(o.label for o in options))
        return next(o for o in options if o.label == label)

    # --- what policies see ---------------------------------------------------------
    def decisions(self) -> list[Decision]:
        """Every decision in sampling order; ``condition`` says when it is asked."""
        out: list[Decision] = []
        _add(out, "layers", self.layers, [])
        _add(out, "d_model", self.d_model, [])
        for i in range(max(self.layers)):
            exists = [f"layers > {i}"] if i >= min(self.layers) else []
            for part in ("attention", "ffn"):
                name, options = f"layer{i}.{part}", getattr(self, part)
                _add(out, name, tuple(o.label for o in options), exists)
                for opt in options:
                    picked = exists + ([f"{name} == {opt.label}"] if len(options) > 1 else [])
                    prefix = f"{name}.{opt.label}"
                    for field, values in opt.values:
                        cond = picked
                        if field == "top_p":
                            if "dynamic" not in opt["router"]:
                                continue
                            if len(opt["router"]) > 1:
                                cond = picked + [f"{prefix}.router == dynamic"]
                        _add(out, f"{prefix}.{field}", values, cond)
        return out

    def size(self) -> int:
        """Distinct architectures, exactly: options that overlap are counted once."""
        per_layer = _union_size([_attention_box(o) for o in self.attention]) * _union_size(
            [box for o in self.ffn for box in _ffn_boxes(o)])
        return len(self.d_model) * sum(per_layer ** n for n in self.layers)


def _ask(s: Suggester, name: str, options: tuple) -> Any:
    """Fixed values are not decisions: only a real choice is put to the suggester."""
    return options[0] if len(options) == 1 else s.suggest_categorical(name, list(options))


def _values(s: Suggester, prefix: str, opt: Option) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, values in opt.values:
        if field == "top_p" and out["router"] != "dynamic":
            out[field] = CANONICAL_TOP_P
        else:
            out[field] = _ask(s, f"{prefix}.{field}", values)
    return out


def _build_ffn(kind: str, v: dict[str, Any]) -> FFNConfig:
    if kind == "dense":
        return FFNConfig("dense", expansion=v["expansion"])
    return FFNConfig(
        "moe", expansion=v["expansion"], experts=v["experts"],
        router=RouterConfig(v["router"], v["top_k"], v["top_p"]),
        shared_experts=v["shared_experts"], capacity_factor=v["capacity_factor"],
        balance=v["balance"])


def _add(out: list[Decision], name: str, options: tuple, conds: list[str]) -> None:
    if len(options) > 1:
        out.append(Decision(name, tuple(options), " and ".join(conds) or None))


def condition_holds(condition: str | None, params: Mapping[str, Any]) -> bool:
    """Evaluate a decision's ``condition`` (clauses ``a > 2``, ``a == x``, ``a != x``
    joined by `` and ``) against the values asked so far; an unasked name fails."""
    if not condition:
        return True
    for clause in condition.split(" and "):
        for op in (" > ", " != ", " == "):
            if op in clause:
                name, value = clause.split(op, 1)
                break
        else:
            raise ValueError(f"cannot read condition clause {clause!r}")
        if name not in params:
            return False
        actual = params[name]
        if op == " > " and not actual > int(value):
            return False
        if op != " > " and (str(actual) == value) != (op == " == "):
            return False
    return True


# --- exact counting: each option is a union of boxes (a product of value sets) -------
_FFN_AXES = ("kind",) + KIND_FIELDS["ffn"]["moe"]


def _attention_box(opt: Option) -> tuple[frozenset, ...]:
    # Axes are the AttentionConfig fields; unused ones hold the config's default.
    return (frozenset([opt.kind]), frozenset(opt["heads"]),
            frozenset(opt["window"]) if opt.kind == "sliding_window" else frozenset([0]),
            frozenset(opt["max_span"]) if opt.kind == "dynamic_span" else frozenset([0]))


def _ffn_boxes(opt: Option) -> list[tuple[frozenset, ...]]:
    v = dict(opt.values)
    if opt.kind == "dense":
        return [tuple(frozenset([opt.kind]) if a == "kind" else frozenset(v.get(a, [None]))
                      for a in _FFN_AXES)]
    boxes = []
    for router in v["router"]:  # the top_p axis depends on the router: one box each
        w = dict(v, kind=(opt.kind,), router=(router,),
                 top_p=v["top_p"] if router == "dynamic" else (CANONICAL_TOP_P,))
        boxes.append(tuple(frozenset(w[a]) for a in _FFN_AXES))
    return boxes


def _union_size(boxes: list[tuple[frozenset, ...]]) -> int:
    """|union of boxes| by inclusion-exclusion, pruned at empty intersections (options
    of different kinds never meet, so this stays linear-ish in practice)."""

    def rec(start: int, inter: tuple[frozenset, ...], sign: int) -> int:
        total = 0
        for j in range(start, len(boxes)):
            nxt = tuple(a & b for a, b in zip(inter, boxes[j]))
            if all(nxt):
                total += sign * _volume(nxt) + rec(j + 1, nxt, -sign)
        return total

    return sum(_volume(b) + rec(i + 1, b, -1) for i, b in enumerate(boxes))


def _volume(box: tuple[frozenset, ...]) -> int:
    out = 1
    for axis in box:
        out *= len(axis)
    return out


# --- parsing -------------------------------------------------------------------------
def parse_space(data: Any, key: str = "space") -> ArchSpace | DecisionSpace:
    """The ``space`` section -> a validated space. ``decisions:`` makes a plain space."""
    data = mapping(data, key)
    if "decisions" in data:
        return parse_decision_space(data, key)
    reject_unknown(data, ARCH_KEYS, key, " (a plain space has only 'decisions')")
    for name in ARCH_KEYS:
        if name not in data:
            raise ConfigError(join(key, name), "missing required key")
    layers = choices(data["layers"], join(key, "layers"), as_int, _layer_count)
    d_model = choices(data["d_model"], join(key, "d_model"), as_int, _POSITIVE)
    lkey = join(key, "layer")
    layer = mapping(data["layer"], lkey, "a mapping with attention and ffn")
    reject_unknown(layer, ("attention", "ffn"), lkey)
    parsed = {}
    for part in ("attention", "ffn"):
        if part not in layer:
            raise ConfigError(f"{lkey}.{part}", "missing required key")
        parsed[part] = _options(layer[part], f"{lkey}.{part}", KIND_FIELDS[part])
    _check_combinations(parsed["attention"], parsed["ffn"], d_model)
    return ArchSpace(layers, d_model, parsed["attention"], parsed["ffn"])


def _options(value: Any, key: str, kinds: dict[str, tuple[str, ...]]) -> tuple[Option, ...]:
    """A list of option mappings (choose one) or a single mapping (fixed)."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigError(key, "empty list; give at least one option")
        items = [(f"{key}[{i}]", v) for i, v in enumerate(value)]
    else:
        items = [(key, value)]
    parsed = [_option(k, v, kinds) for k, v in items]
    counts = {kind: sum(p[0] == kind for p in parsed) for kind in kinds}
    options = []
    for i, (kind, k, values) in enumerate(parsed):
        label = kind if counts[kind] == 1 else f"{kind}#{i}"
        options.append(Option(kind, label, k, values))
    return tuple(options)


def _option(key: str, value: Any, kinds: dict[str, tuple[str, ...]]) -> tuple:
    known = ", ".join(kinds)
    data = mapping(value, key, f"a mapping with a kind ({known})")
    if "kind" not in data:
        raise ConfigError(f"{key}.kind", f"missing required key; known kinds: {known}")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise ConfigError(f"{key}.kind", f"expected one kind name (list options separately), got {short(kind)}")
    if kind not in kinds:
        raise ConfigError(f"{key}.kind", f"unknown kind {kind!r}; known kinds: {known}")
    allowed = ("kind",) + kinds[kind]
    reject_unknown(data, allowed, key, f" for kind {kind}")
    values = []
    for name in kinds[kind]:
        spec = FIELDS[name]
        if name not in data:
            if spec.required:
                raise ConfigError(f"{key}.{name}", f"missing required key for kind {kind}")
            values.append((name, (spec.default,)))
        else:
            values.append((name, choices(data[name], f"{key}.{name}", spec.coerce, spec.check)))
    return kind, key, tuple(values)


def _check_combinations(attention: tuple[Option, ...], ffn: tuple[Option, ...],
                        d_model: tuple[int, ...]) -> None:
    """Every combination of declared choices must build; name the first that cannot."""
    for opt in attention:
        for heads, d in itertools.product(opt["heads"], d_model):
            if d % heads:
                raise ConfigError(f"{opt.key}.heads", f"{heads} does not divide d_model={d}")
    for opt in ffn:
        if opt.kind != "moe":
            continue
        top_k, experts = max(opt["top_k"]), min(opt["experts"])
        if top_k > experts:
            raise ConfigError(f"{opt.key}.top_k", f"{top_k} exceeds experts={experts}")
        if "dynamic" not in opt["router"] and len(opt["top_p"]) > 1:
            raise ConfigError(f"{opt.key}.top_p", "choices are only used by router dynamic, "
                              "which this option never picks")

