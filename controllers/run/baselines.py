"""Reference baselines of a search (``search.baselines``): trained beside it, recorded,
never told to a policy.

Each entry is a named reference model (``mlp:400x2``, ``search_space.reference``) or
an exported architecture file (``arch.json``, a path relative to the experiment
file). Each is trained once per run directory by the in-process executor with the
experiment's task and training settings, the same ``trainers.fit`` the trials use,
and appended to ``trials.jsonl`` as a record with ``baseline`` set to its name and a
negative proposal id. The driver drops such records before it builds its duplicate
cache, ``trained_count`` does not count them, and analysis keeps them off the front,
the picks and the hypervolume: they are reference points only.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.cost import estimate_cost
from dynas.search_space.errors import ConfigError
from dynas.search_space.reference import parse_reference

from ..driver import make_record
from ..policy import Outcome, Proposal
from ..records import TrialRecord, append_record
from ..results import TrialResult

log = logging.getLogger(__name__)
BASELINE_POLICY = "baseline"


def resolve_baselines(entries: Sequence[str], shape: TaskShape | None,
                      source: str | Path | None = None) -> list[tuple[str, Any]]:
    """``(name, model)`` per entry, checked against the task's shape; a bad entry is a
    ConfigError naming ``search.baselines[i]`` (and the arch file when it is one)."""
    base = Path(source).resolve().parent if source else Path.cwd()
    out = []
    for i, entry in enumerate(entries):
        key = f"search.baselines[{i}]"
        if not isinstance(entry, str) or not entry:
            raise ConfigError(key, "expected mlp:WIDTHxDEPTH or the path of an arch.json file")
        if entry.startswith("mlp:") or ":" in entry and not Path(entry).suffix == ".json":
            model = parse_reference(entry, key)
        else:
            path = Path(entry).expanduser()
            path = path if path.is_absolute() else base / path
            if not path.is_file():
                raise ConfigError(key, f"no such architecture file {str(path)!r} (nor a reference "
                                  "model: mlp:WIDTHxDEPTH)")
            model = ArchConfig.load(path)
        if shape is not None:
            try:
                estimate_cost(model, shape)
            except ConfigError as err:
                raise ConfigError(key, f"{entry} does not fit this task ({err})") from None
        out.append((entry, model))
    if len({name for name, _ in out}) < len(out):
        raise ConfigError("search.baselines", "lists one baseline twice")
    return out


def train_baselines(baselines: Sequence[tuple[str, Any]], evaluate: Callable[[Any], TrialResult],
                    run_dir: str | Path, records: Iterable[TrialRecord], seed: int = 0,
                    budget: int | None = None) -> list[TrialRecord]:
    """Train and record every baseline ``run_dir`` does not hold yet (a resumed run
    trains only the missing ones); ``evaluate(model) -> TrialResult``."""
    done = {r.baseline for r in records if r.baseline}
    written = []
    for i, (name, model) in enumerate(baselines):
        if name in done:
            continue
        log.info("training baseline %s", name)
        result = evaluate(model)
        record = baseline_record(i, name, model, result, seed, budget)
        append_record(run_dir, record)
        written.append(record)
    return written


def baseline_record(index: int, name: str, model: Any, result: TrialResult, seed: int,
                    budget: int | None = None) -> TrialRecord:
    """The record of baseline ``index``: proposal id ``-(index + 1)``, no objectives
    (nothing was told), ``policy`` "baseline"."""
    outcome = Outcome(result.state, () if result.state == "complete" else None, result.reason)
    return make_record(Proposal(-(index + 1), model), outcome, result, policy=BASELINE_POLICY, seed=seed,
                       baseline=name, budget=budget)
