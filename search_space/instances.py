"""One instance of everything a space allows, built before a search starts.

A space's options are checked when it is parsed: every combination of one option's
declared choices is made into its config and validated (``option_configs``), so a
plugin kind whose ``make`` or checks cannot take its own choices fails in one line
naming the option, not halfway through ``space sample`` with a ``TypeError``. With a
task shape (``dynas space validate``), ``check_every_instance`` also runs the cost
model on one architecture per kind combination (every attention option x every FFN
option x every whole-model kind choice, at every ``d_model``) and on one per field
combination of each option: a plugin's cost function that breaks on some choice
is named there too.

The per-option product is capped at ``MAX_COMBINATIONS`` (a space that lists more for
one option is checked on the first ones); real spaces hold a few dozen.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

from .arch import ArchConfig, LayerConfig, TaskShape
from .errors import ConfigError
from .kinds import REGISTRIES, KindSpec

# ``Option`` and ``ArchSpace`` (``space.py``, which imports this module) are named in
# quotes only: importing them here would be a cycle.

MAX_COMBINATIONS = 4096


def option_values(opt: "Option", spec: KindSpec) -> Iterator[dict[str, Any]]:
    """Every combination of ``opt``'s field choices, as sampling would hand it to
    ``spec.make``: a field inactive under the values before it holds its default."""
    names = [name for name, _ in opt.values]
    seen = set()
    combos = itertools.product(*(values for _, values in opt.values))
    for combo in itertools.islice(combos, MAX_COMBINATIONS):
        out: dict[str, Any] = {}
        for name, value in zip(names, combo):
            out[name] = value if spec.active(name, out) else spec.get_field(name).default
        frozen = tuple(out.items())
        if frozen not in seen:
            seen.add(frozen)
            yield out


def _guarded(key: str, kind: str, what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``; anything but a ``ConfigError`` becomes one line naming ``key``."""
    try:
        return fn()
    except ConfigError:
        raise
    except Exception as err:  # a plugin's code: any error must reach the user as one line
        raise ConfigError(key, f"kind {kind} {what}: {type(err).__name__}: {err}") from None


def option_configs(opt: "Option", part: str) -> list[Any]:
    """The config of every combination of ``opt``'s choices, each made and validated."""
    spec = REGISTRIES[part].get(opt.kind, f"{opt.key}.kind")
    configs = []
    for values in option_values(opt, spec):
        cfg = _guarded(opt.key, opt.kind, f"cannot be made from {values}", lambda: spec.make(values))
        cfg.validate(opt.key)
        configs.append(cfg)
    return configs


def instances(space: "ArchSpace") -> Iterator[tuple[str, ArchConfig]]:
    """(the key to blame, a one-layer architecture) for every kind combination and for
    every field combination of each option, at every ``d_model``."""
    att = {o.key: option_configs(o, "attention") for o in space.attention}
    ffn = {o.key: option_configs(o, "ffn") for o in space.ffn}
    first_att, first_ffn = next(iter(att.values()))[0], next(iter(ffn.values()))[0]
    model = [dict(zip([f for f, _ in space.model], combo))
             for combo in itertools.product(*(kinds for _, kinds in space.model))]
    for d in space.d_model:
        for (ka, a), (kf, f), kinds in itertools.product(att.items(), ffn.items(), model):
            yield f"{ka} with {kf}", ArchConfig(d, (LayerConfig(a[0], f[0]),), **kinds)
        for key, configs in att.items():
            for cfg in configs[1:]:
                yield key, ArchConfig(d, (LayerConfig(cfg, first_ffn),))
        for key, configs in ffn.items():
            for cfg in configs[1:]:
                yield key, ArchConfig(d, (LayerConfig(first_att, cfg),))


def check_every_instance(space: "ArchSpace", shape: TaskShape) -> int:
    """Cost every instance of ``instances``; return how many were costed. One that is
    structurally infeasible (a ``cls`` head over ``identity`` layers only) is skipped:
    sampling rejects it as it would in a search."""
    from .constraints import structural_problem
    from .cost import estimate_cost

    count = 0
    for key, arch in instances(space):
        kinds = "+".join(layer.attention.kind + "+" + layer.ffn.kind for layer in arch.layers)
        if structural_problem(arch):
            continue
        _guarded(key, kinds, f"fails its cost at d_model={arch.d_model}",
                 lambda: estimate_cost(arch, shape))
        count += 1
    return count
