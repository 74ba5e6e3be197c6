"""Settings of an experiment overridden by dotted key paths: ``training.lr`` -> 0.001.

One override form for every entry point: ``dynas.search(..., settings={...})`` in
Python and ``--set key.path=value`` on the command line. An override only edits the
experiment's mapping (``apply_overrides``); the result is parsed again by
``parse_experiment``, so an overridden value is checked exactly like the same value
written in the file, and a bad key is the same one-line ``ConfigError``.

Key paths are the ones errors print: dot-separated mapping keys, ``[i]`` for a list
item (``space.layer.ffn[1].top_k``). Missing mappings on the way are created
(``task.options.patch`` on a file without ``task.options``); a list index must exist.
"""
from __future__ import annotations

import copy
import re
from typing import Any, Mapping

from .choices import short
from .errors import ConfigError

_SEGMENT = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
_INDEX = re.compile(r"\[(\d+)\]")
SOURCE = "settings"


def key_path(key: str) -> list[str | int]:
    """``space.layer.ffn[1].top_k`` -> ``["space", "layer", "ffn", 1, "top_k"]``."""
    if not isinstance(key, str) or not key.strip():
        raise ConfigError("", f"expected a dotted key path such as training.lr, got {key!r}", SOURCE)
    steps: list[str | int] = []
    for part in key.strip().split("."):
        match = _SEGMENT.fullmatch(part)
        if match is None:
            raise ConfigError(key, "not a key path: use keys joined by '.', and [i] for a list "
                              "item (space.layer.ffn[1].top_k)", SOURCE)
        steps.append(match.group(1))
        steps.extend(int(i) for i in _INDEX.findall(match.group(2)))
    return steps


def apply_overrides(data: Mapping[str, Any] | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key path -> value`` of ``settings`` set, in order.

    Only the path is checked here (it must lead through mappings and existing list
    items); whether the key is known and the value valid is the parser's to say.
    """
    out = copy.deepcopy(dict(data or {}))
    if not isinstance(settings, Mapping):
        raise ConfigError("", f"expected a mapping of key path -> value, got {type(settings).__name__}",
                          SOURCE)
    for key, value in settings.items():
        steps = key_path(key)
        node: Any = out
        for depth, step in enumerate(steps[:-1]):
            node = _child(node, step, steps[depth + 1], key)
        _set(node, steps[-1], copy.deepcopy(value), key)
    return out


def _child(node: Any, step: str | int, following: str | int, key: str) -> Any:
    """The container at ``node[step]``, a new mapping when a key is missing."""
    if isinstance(step, int):
        _check_index(node, step, key)
        child = node[step]
    else:
        _check_mapping(node, step, key)
        if node.get(step) is None and not isinstance(following, int):
            node[step] = {}
        child = node.get(step)
    if child is None:
        raise ConfigError(key, f"{step!r} is not set: there is no list to index", SOURCE)
    if not isinstance(child, (dict, list)):
        raise ConfigError(key, f"{step!r} is {short(child)}, not a mapping or a list", SOURCE)
    return child


def _set(node: Any, step: str | int, value: Any, key: str) -> None:
    if isinstance(step, int):
        _check_index(node, step, key)
    else:
        _check_mapping(node, step, key)
    node[step] = value


def _check_mapping(node: Any, step: str, key: str) -> None:
    if not isinstance(node, dict):
        raise ConfigError(key, f"cannot set key {step!r} in a list (use [i] for a list item)", SOURCE)


def _check_index(node: Any, index: int, key: str) -> None:
    if not isinstance(node, list):
        raise ConfigError(key, f"[{index}]: not a list", SOURCE)
    if index >= len(node):
        raise ConfigError(key, f"[{index}]: the list has {len(node)} item(s)", SOURCE)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``key.path=value`` (one ``--set``) -> ``(key path, value)``; the value is read
    with YAML's scalar rules, as it would be in the file (``3`` an int, ``0.5`` a
    float, ``true`` a bool, ``[2, 4]`` a list, ``null`` None, anything else a string)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"expected key.path=value, got {text!r}")
    key_path(key)                                   # a bad path fails before the value
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        problem = " ".join(str(getattr(err, "problem", None) or "invalid YAML").split())
        raise ConfigError(key.strip(), f"--set value {raw!r}: {problem}") from None
    return key.strip(), value
