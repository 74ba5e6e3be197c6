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
from dataclasses import dataclass
from typing import Any, Mapping

from .arch import MAX_LAYERS, MODEL_KINDS, ArchConfig, LayerConfig, TrainingChoices
from .choices import as_int, at_least, choices, join, mapping, reject_unknown, short
from .errors import ConfigError
from .instances import option_configs
from .kinds import REGISTRIES, KindSpec, Registry
from .plain import DecisionSpace, parse_decision_space
from .suggest import Decision, Suggester

_POSITIVE = at_least(1)
ARCH_KEYS = ("layers", "d_model", "layer") + MODEL_KINDS


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
    """Heterogeneous transformers: ``layers`` x ``d_model`` x the whole-model kinds
    (``model``: tokens, stem, norm, head -> their kind names) x per-layer options."""

    layers: tuple[int, ...]
    d_model: tuple[int, ...]
    attention: tuple[Option, ...]
    ffn: tuple[Option, ...]
    model: tuple[tuple[str, tuple[str, ...]], ...] = ()
    training: tuple[tuple[str, tuple], ...] = ()       # from the experiment's training lists

    # --- sampling ------------------------------------------------------------------
    def sample(self, suggester: Suggester) -> ArchConfig:
        n = _ask(suggester, "layers", self.layers)
        d_model = _ask(suggester, "d_model", self.d_model)
        kinds = {family: _ask(suggester, family, options) for family, options in self.model}
        training = {name: _ask(suggester, f"training.{name}", options) for name, options in self.training}
        return ArchConfig(d_model, tuple(self._sample_layer(suggester, i) for i in range(n)),
                          **kinds, training=TrainingChoices(**training) if training else None)

    def _sample_layer(self, s: Suggester, i: int) -> LayerConfig:
        parts = {}
        for part in ("attention", "ffn"):
            opt = self._pick(s, f"layer{i}.{part}", getattr(self, part))
            spec = REGISTRIES[part].get(opt.kind)
            parts[part] = spec.make(_values(s, f"layer{i}.{part}.{opt.label}", opt, spec))
        return LayerConfig(parts["attention"], parts["ffn"])

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
        for family, options in self.model:
            _add(out, family, options, [])
        for name, options in self.training:
            _add(out, f"training.{name}", options, [])
        for i in range(max(self.layers)):
            exists = [f"layers > {i}"] if i >= min(self.layers) else []
            for part in ("attention", "ffn"):
                name, options = f"layer{i}.{part}", getattr(self, part)
                _add(out, name, tuple(o.label for o in options), exists)
                for opt in options:
                    picked = exists + ([f"{name} == {opt.label}"] if len(options) > 1 else [])
                    _add_option(out, f"{name}.{opt.label}", opt,
                                REGISTRIES[part].get(opt.kind), picked)
        return out

    def size(self) -> int:
        """Distinct architectures, exactly: options that overlap are counted once."""
        per_layer = 1
        for part in ("attention", "ffn"):
            options = getattr(self, part)
            axes = tuple(dict.fromkeys(f for o in options for f, _ in o.values))
            per_layer *= _union_size([box for o in options
                                      for box in _boxes(o, REGISTRIES[part].get(o.kind), axes)])
        whole = len(self.d_model)
        for _, options in self.model + self.training:
            whole *= len(options)
        return whole * sum(per_layer ** n for n in self.layers)


def _ask(s: Suggester, name: str, options: tuple) -> Any:
    """Fixed values are not decisions: only a real choice is put to the suggester."""
    return options[0] if len(options) == 1 else s.suggest_categorical(name, list(options))


def _values(s: Suggester, prefix: str, opt: Option, spec: KindSpec) -> dict[str, Any]:
    """One value per field; a field inactive for the values picked so far (``top_p``
    under router ``topk``) holds its default, so equal models share an arch_id."""
    out: dict[str, Any] = {}
    for field, values in opt.values:
        if spec.active(field, out):
            out[field] = _ask(s, f"{prefix}.{field}", values)
        else:
            out[field] = spec.get_field(field).default
    return out


def _active_when(opt: Option, spec: KindSpec, field: str) -> tuple[str, list, list]:
    """(selector, its declared values that activate ``field``, those that do not)."""
    selector, active = spec.conditions[field]
    on = [v for v in opt[selector] if active(v)]
    return selector, on, [v for v in opt[selector] if not active(v)]


def _add_option(out: list[Decision], prefix: str, opt: Option, spec: KindSpec,
                picked: list[str]) -> None:
    """An option's field decisions; a conditional field is asked only under the
    selector values that use it (``top_p`` when ``router == dynamic``)."""
    for field, values in opt.values:
        cond = picked
        if field in spec.conditions:
            selector, on, off = _active_when(opt, spec, field)
            if not on:
                continue
            if off and len(on) == 1:
                cond = picked + [f"{prefix}.{selector} == {on[0]}"]
            elif off:
                cond = picked + [f"{prefix}.{selector} != {v}" for v in off]
        _add(out, f"{prefix}.{field}", values, cond)


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
def _boxes(opt: Option, spec: KindSpec, axes: tuple[str, ...]) -> list[tuple[frozenset, ...]]:
    """The option's boxes over ``axes`` (every field of the part's options; a field
    the kind lacks holds None). A conditional field splits the option into one box per
    selector value, holding its default where the selector does not use it."""
    v = dict(opt.values, kind=(opt.kind,))
    selectors = tuple(dict.fromkeys(sel for sel, _ in spec.conditions.values()))
    boxes = []
    for combo in itertools.product(*(v[sel] for sel in selectors)):
        w = dict(v, **{sel: (c,) for sel, c in zip(selectors, combo)})
        for field, (sel, active) in spec.conditions.items():
            if field in w and not active(w[sel][0]):
                w[field] = (spec.get_field(field).default,)
        boxes.append(tuple(frozenset(w.get(a, (None,))) for a in ("kind",) + axes))
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
    for name in ARCH_KEYS[:3]:      # the whole-model kinds are optional
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
        parsed[part] = _options(layer[part], f"{lkey}.{part}", REGISTRIES[part])
    _check_combinations(parsed["attention"], parsed["ffn"], d_model)
    model = tuple((family, choices(data[family], join(key, family), _as_str,
                                   REGISTRIES[family].one_of()))
                  for family in MODEL_KINDS if family in data)
    return ArchSpace(layers, d_model, parsed["attention"], parsed["ffn"], model)


def _as_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a kind name, got {short(value)}")
    return value


def _options(value: Any, key: str, kinds: Registry) -> tuple[Option, ...]:
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


def _option(key: str, value: Any, kinds: Registry) -> tuple:
    known = ", ".join(kinds)
    data = mapping(value, key, f"a mapping with a kind ({known})")
    if "kind" not in data:
        raise ConfigError(f"{key}.kind", f"missing required key; known kinds: {known}")
    kind = data["kind"]
    if not isinstance(kind, str):
        raise ConfigError(f"{key}.kind", f"expected one kind name (list options separately), got {short(kind)}")
    spec = kinds.get(kind, f"{key}.kind")
    reject_unknown(data, ("kind",) + spec.field_names, key, f" for kind {kind}")
    values = []
    for name, field in spec.fields:
        if name not in data:
            if field.required:
                raise ConfigError(f"{key}.{name}", f"missing required key for kind {kind}")
            values.append((name, (field.default,)))
        else:
            values.append((name, choices(data[name], f"{key}.{name}", field.coerce, field.check)))
    return kind, key, tuple(values)


def _check_combinations(attention: tuple[Option, ...], ffn: tuple[Option, ...],
                        d_model: tuple[int, ...]) -> None:
    """Every combination of declared choices must build; name the first that cannot.
    Each option's every combination is made into its config and validated
    (``instances.option_configs``)."""
    for part, options in (("attention", attention), ("ffn", ffn)):
        for opt in options:
            option_configs(opt, part)
    for opt in attention:
        for heads, d in itertools.product(dict(opt.values).get("heads", ()), d_model):
            if d % heads:
                raise ConfigError(f"{opt.key}.heads", f"{heads} does not divide d_model={d}")
    for part, options in (("attention", attention), ("ffn", ffn)):
        for opt in options:
            spec = REGISTRIES[part].get(opt.kind)
            spec.check_option(dict(opt.values), opt.key)
            for field in spec.conditions:
                selector, on, _ = _active_when(opt, spec, field)
                if not on and len(opt[field]) > 1:
                    users = [k for k in REGISTRIES.get(selector, ()) if spec.conditions[field][1](k)]
                    raise ConfigError(f"{opt.key}.{field}", f"choices are only used by {selector} "
                                      f"{', '.join(users)}, which this option never picks")
