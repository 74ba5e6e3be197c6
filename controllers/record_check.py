"""The schema of one ``trials.jsonl`` line, checked on every read.

A record file is input like any other: a hand edit, another tool or a torn write can
put anything on a line (a record without ``arch_id``, ``metrics`` as a string,
``wall_time_s: "fast"``, 200,000 nested brackets). ``record_problem`` says what is
wrong with one decoded line, or None; ``controllers.records.iter_records`` skips a bad
line with one warning naming its line number, so ``report`` and ``resume`` go on with
the good ones. Nothing here trusts the line's shape before checking it.
"""
from __future__ import annotations

import math
from typing import Any, Callable

from dynas.search_space.boundary import relative_path_problem

from .policy import TRIAL_STATES

MAX_DEPTH = 32                  # a real record nests 4 deep (curriculum_log entries)
MAX_LINE_CHARS = 50_000_000     # a sane record is kilobytes; refuse to parse a giant


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _dict_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(_str(k) and check(x) for k, x in v.items())


def _metric(v: Any) -> bool:      # NaN/inf are legal (allow_nan=True writes them)
    return v is None or _number(v)


def _layers_ok(layers: Any) -> bool:
    """An architecture's ``layers`` (absent in a plain decision's dict) as analysis reads them."""
    if layers is None:
        return True
    return isinstance(layers, list) and all(
        isinstance(layer, dict) and all(isinstance(layer.get(part, {}), dict) for part in ("attention", "ffn"))
        for layer in layers)


def _dynamics_entry(v: Any) -> bool:
    """One experience's dynamics (``trainers.dynamics``); its ``expert_load`` is
    optional (records written before it was measured lack it)."""
    return isinstance(v, dict) and _opt(_dict_of(_list_of(_number)))(v.get("expert_load"))


STATES = TRIAL_STATES
# TrialRecord.evaluation: trained from scratch, scored with weights inherited from the
# run's supernet, or inherited and then fine-tuned (search.evaluation: supernet)
EVALUATIONS = ("standalone", "inherited", "finetuned")
# field -> (check, what it must be); REQUIRED fields have no default in TrialRecord.
FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "proposal_id": (_int, "an integer"),
    "arch_id": (lambda v: _str(v) and bool(v), "a non-empty string"),
    "arch": (lambda v: isinstance(v, dict) and _layers_ok(v.get("layers")),
             "a mapping (its layers a list of mappings, each attention and ffn a mapping)"),
    "params": (lambda v: isinstance(v, dict), "a mapping"),
    "state": (lambda v: v in STATES, "one of " + ", ".join(STATES)),
    "metrics": (_dict_of(_metric), "a mapping of names to numbers"),
    "objectives": (_opt(_list_of(_metric)), "a list of numbers or null"),
    "acc_matrix": (_list_of(_list_of(_metric)), "a list of lists of numbers"),
    "test_acc_matrix": (_list_of(_list_of(_metric)), "a list of lists of numbers"),
    "bits_matrix": (_list_of(_list_of(_metric)), "a list of lists of numbers"),
    "dynamics": (_list_of(_dynamics_entry),
                 "a list of mappings (an entry's expert_load, where present, a mapping of names to lists of numbers)"),
    "weights": (_opt(lambda v: isinstance(v, dict) and relative_path_problem(v.get("path")) is None),
                "a mapping whose path lies inside the run directory, or null"),
    "repeat_of": (_opt(_int), "an integer or null"),
    "train_seed": (_opt(_int), "an integer or null"),
    "budget": (_opt(lambda v: _int(v) and v >= 1), "an integer >= 1 or null"),
    "chance_accuracy": (_metric, "a number or null"),
    "steps": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "expert_load": (_dict_of(_list_of(_metric)), "a mapping of names to lists of numbers"),
    "curriculum_log": (_list_of(lambda v: isinstance(v, dict)), "a list of mappings"),
    "reason": (_opt(_str), "a string or null"),
    "policy": (_str, "a string"),
    "seed": (_int, "an integer"),
    "wall_time_s": (lambda v: _number(v) and math.isfinite(v) and v >= 0, "a number >= 0"),
    "experiences_done": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "cached_from": (_opt(_int), "an integer or null"),
    "trial_id": (_str, "a string"),
    "node": (_str, "a string"),
    "asks": (lambda v: _int(v) and v >= 0, "an integer >= 0"),
    "finished_at": (lambda v: _number(v) and math.isfinite(v), "a number"),
    "schema_version": (_int, "an integer"),
    "evaluation": (lambda v: v in EVALUATIONS, "one of " + ", ".join(EVALUATIONS)),
}
REQUIRED = ("proposal_id", "arch_id", "arch", "params", "state")


def depth_exceeds(data: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``data`` nests deeper than ``limit`` (iterative: no recursion to blow)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def record_problem(data: Any) -> str | None:
    """What is wrong with one decoded record line, or None when it is a valid record."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {type(data).__name__}"
    if depth_exceeds(data):
        return f"nested deeper than {MAX_DEPTH} levels"
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        return f"missing {', '.join(missing)}"
    for key, (check, what) in FIELDS.items():
        if key in data and not check(data[key]):
            return f"{key} must be {what}"
    return None
