"""Typed parsing of nested frozen dataclasses from plain mappings, with key paths.

One small mechanism serves the settings sections, the arch JSON and the records, so
every message names the offending key the same way and nothing is ever executed.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Mapping

from .choices import join, short
from .errors import ConfigError

_SCALARS = (bool, int, float, str)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(err.message)
        raise ConfigError(key, errors[0] if errors else f"unexpected value {short(value)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, f"{short(value)} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {short(value)}")
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {short(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {short(value)}")
        if not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {short(value)}")
        return value
    raise ConfigError(key, f"unsupported field type {_type_name(tp)}")


def from_mapping(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys name the known ones."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"expected a mapping, got {short(data)}")
    hints = typing.get_type_hints(cls)
    open_field = getattr(cls, "OPEN_SECTIONS", None)   # collects unknown keys holding mappings
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name != open_field}
    sections = {}
    for k in data:
        if k in fields:
            continue
        if open_field and isinstance(k, str) and isinstance(data[k], Mapping):
            sections[k] = dict(data[k])
            continue
        also = ", or a settings section (a mapping)" if open_field else ""
        raise ConfigError(join(key, str(k)), f"unknown key; known keys: {', '.join(fields)}{also}")
    kwargs = {open_field: sections} if open_field else {}
    for name, field in fields.items():
        sub = join(key, name)
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(sub, "missing required key")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        check(key)
    return obj


def to_mapping(obj: Any) -> Any:
    """Inverse of ``from_mapping``: plain dicts, lists and scalars (JSON-ready)."""
    if dataclasses.is_dataclass(obj):  # a field marked omit_default is left out at its default
        open_field = getattr(obj, "OPEN_SECTIONS", None)   # its sections go back to the top
        out = {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)
               if f.name != open_field
               and not (f.metadata.get("omit_default") and getattr(obj, f.name) == f.default)}
        return {**out, **to_mapping(getattr(obj, open_field))} if open_field else out
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    return obj
