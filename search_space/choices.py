"""Reading "a list means choose one, a scalar is fixed" values, with key paths.

Shared by both spaces: every value is coerced to its type and checked here, so a bad
file fails at load time with the offending key, never halfway through a search.
"""
from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import ConfigError

MAX_SHOWN = 60
_REPR = reprlib.Repr()  # keyword arguments need Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxset = 3, 6, 6, 4, 4
_REPR.maxstring = _REPR.maxother = 40


def short(value: Any) -> str:
    """A bounded ``repr`` on one short line: YAML aliases can nest a value enormously
    (billion laughs), and a message must neither flood the terminal nor hang."""
    text = _REPR.repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def as_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"expected an integer, got {short(value)}")
    return value


def as_float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"expected a finite number, got {short(value)}")
    return float(value)


def as_str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {short(value)}")
    return value


def as_choice_value(value: Any, key: str) -> Any:
    """A value an Optuna categorical can hold: None, bool, int, finite float, str."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return as_float(value, key)
    raise ConfigError(key, f"expected a number, string, boolean or null, got {short(value)}")


@dataclass(frozen=True)
class Field:
    """How one option field is read: its type, its bounds, its default (None = required)."""

    coerce: Callable[[Any, str], Any]
    check: Callable[[Any], str | None] = lambda v: None
    default: Any = None

    @property
    def required(self) -> bool:
        return self.default is None


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}, got {v}"


def one_of(*allowed: str) -> Callable[[Any], str | None]:
    names = ", ".join(allowed)
    return lambda v: None if v in allowed else f"{v!r} is not one of {names}"


def choices(value: Any, key: str, coerce: Callable[[Any, str], Any],
            check: Callable[[Any], str | None] = lambda v: None) -> tuple:
    """A list -> its coerced choices; a scalar -> one fixed choice. Empty and duplicate
    lists are errors: both are almost always typos."""
    items = list(value) if isinstance(value, (list, tuple)) else None
    if items is None:
        out = (coerce(value, key),)
        keys = [key]
    elif not items:
        raise ConfigError(key, "empty list; give at least one choice")
    else:
        keys = [f"{key}[{i}]" for i in range(len(items))]
        out = tuple(coerce(v, k) for v, k in zip(items, keys))
    for v, k in zip(out, keys):
        problem = check(v)
        if problem:
            raise ConfigError(k, problem)
    seen: set = set()
    for v in out:
        if v in seen:  # 1, 1.0 and true are one choice for Optuna too
            raise ConfigError(key, f"duplicate choice {short(v)}")
        seen.add(v)
    return out


def mapping(value: Any, key: str, what: str = "a mapping") -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected {what}, got {short(value)}")
    for k in value:
        if not isinstance(k, str):
            raise ConfigError(key, f"keys must be strings, got {short(k)}")
    return value


def reject_unknown(data: Mapping, known: tuple[str, ...], key: str, what: str = "") -> None:
    for k in data:
        if k not in known:
            raise ConfigError(join(key, k), f"unknown key{what}; known keys: {', '.join(known)}")


def join(prefix: str, name: str) -> str:
    """``prefix.name``; a name a terminal would mangle (newlines, control characters,
    hundreds of characters) is shown quoted and cut, so messages stay one short line."""
    if not (isinstance(name, str) and name.isprintable() and 0 < len(name) <= 40):
        name = short(name)
    return f"{prefix}.{name}" if prefix else name
