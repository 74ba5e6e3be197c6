"""The schema of ``run.json``, checked on every read (``records.read_run``).

A run directory is input: copied, downloaded or hand-edited, its ``run.json`` may hold
``trials: "many"``, ``seed: {}``, ``plugins: 5``, an ``experiment`` naming
``/etc/passwd``, or come from a newer dynas. ``run_problem`` says, for the first key
that is wrong, what it must be; the reader turns that into one line naming the file and
the key (the CLI exits 2), before anything is built or started.
"""
from __future__ import annotations

from typing import Any, Callable

from dynas.search_space.settings import RANGES, SearchSettings

RUN_SCHEMA_VERSION = 1          # run.json's own layout (absent: written before versioning)
EXPERIMENT_COPY = "experiment.yaml"
_SEARCH = RANGES[SearchSettings]


def _span(name: str) -> str:
    return f"from {int(_SEARCH[name].low)} to {int(_SEARCH[name].high)}"


def _int_in(name: str) -> Callable[[Any], bool]:
    allowed = _SEARCH[name]
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and allowed.problem(v) is None


def _objective(v: Any) -> bool:
    return isinstance(v, dict) and isinstance(v.get("metric"), str) and v.get("direction") in ("min", "max")


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


# key -> (check, what it must be); every key is optional except REQUIRED
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "schema_version": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "runner": (lambda v: isinstance(v, str), "a string"),
    "strategy": (lambda v: isinstance(v, str) and bool(v), "a strategy name"),
    # 0: a run made for reading only (analysis tests, an empty run); a resume asks for more
    "trials": (lambda v: _int_in("trials")(v) or v == 0, f"an integer from 0 to {int(_SEARCH['trials'].high)}"),
    "seed": (_int_in("seed"), f"an integer {_span('seed')}"),
    "concurrent": (lambda v: v is None or _int_in("concurrent")(v),
                   f"an integer {_span('concurrent')} or null"),
    "objectives": (lambda v: isinstance(v, list) and bool(v) and all(_objective(o) for o in v),
                   "a non-empty list of {metric, direction: min|max} mappings"),
    "plugins": (lambda v: v is None or _strings(v), "a list of module names or paths, or null"),
    "experiment": (lambda v: v == EXPERIMENT_COPY, f"{EXPERIMENT_COPY!r} (the run's own copy of its experiment)"),
    "scheduler": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "extensions": (lambda v: isinstance(v, list) and all(isinstance(e, dict) for e in v), "a list of mappings"),
    "evaluator": (lambda v: v is None or isinstance(v, dict), "a mapping or null"),
}
REQUIRED = ("trials", "strategy", "seed")


def run_problem(info: Any) -> tuple[str, str] | None:
    """``(key, what is wrong)`` for the first bad key of a decoded run.json, or None."""
    if not isinstance(info, dict):
        return "", f"expected a JSON object, got {type(info).__name__}"
    version = info.get("schema_version", 1)
    if FIELDS["schema_version"][0](version) and version > RUN_SCHEMA_VERSION:
        return "schema_version", (f"{version} was written by a newer dynas (this one reads up to "
                                  f"{RUN_SCHEMA_VERSION}); upgrade dynas to use this run")
    for key, (check, what) in FIELDS.items():
        if key in info and not check(info[key]):
            return key, f"must be {what}, got {_short(info[key])}"
    return None


def missing_keys(info: dict) -> list[str]:
    return [k for k in REQUIRED if k not in info]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
