"""``--set`` on a run that already holds trials: ``dynas resume`` and ``dynas confirm``.

A resume trains what the run directory's own experiment copy says
(``session._reopen``), so a setting changed there changes every later trial. Most
settings would make the later trials measure something else than the earlier ones
(another training budget, task, space, objective, seed): a front over both would
compare unlike things. Those keys are refused, in one line that says to start a new
search instead. Only the settings that change how trials are *run*, never what they
measure, may be changed on a run: ``AMENDABLE`` (concurrency and resources, Ray's
retries, trackers, which weights are kept, the end-of-search confirmation).

An accepted change is applied to the copy (so the next resume keeps it), recorded in
``run.json`` under ``amendments`` (command, settings, time) and, for
``search.concurrent``, in run.json's ``concurrent`` too (which a resume reads first).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from dynas.search_space.errors import ConfigError
from dynas.search_space.experiment import Experiment, override_experiment

from ..records import EXPERIMENT_COPY, RUN_FILE, utc_now, write_json_atomic

AMENDABLE = ("search.concurrent", "search.cpus_per_trial", "search.gpus_per_trial", "search.max_failures",
             "search.loggers", "search.keep_weights", "search.confirm")


def check_amendable(settings: Mapping[str, Any], command: str) -> None:
    """One line for the first key that would change what a run's trials measure."""
    for key in settings:
        path = key.strip()
        if not any(path == k or path.startswith(k + ".") for k in AMENDABLE):
            raise ConfigError(f"--set {path}", f"cannot change on `dynas {command}`: the run's trials "
                              "were measured with the value in its experiment copy, and later ones "
                              "would measure something else; start a new search with --set instead "
                              f"(changeable here: {', '.join(AMENDABLE)})")


def amend(experiment: Experiment, settings: Mapping[str, Any] | None, run: dict, run_dir: Path,
          command: str) -> Experiment:
    """``experiment`` with ``settings`` applied, checked (``check_amendable`` and as in
    the file), written to the copy and recorded in run.json; as is without settings."""
    if not settings:
        return experiment
    check_amendable(settings, command)
    amended = override_experiment(experiment, settings)
    from .prepare import experiment_text

    copy = run_dir / run.get("experiment", EXPERIMENT_COPY)
    copy.write_text(experiment_text(amended), encoding="utf-8")
    run.setdefault("amendments", []).append({"command": command, "set": dict(settings), "at": utc_now()})
    if any(k.strip() == "search.concurrent" for k in settings):
        run["concurrent"] = amended.search.concurrent
    write_json_atomic(run_dir / RUN_FILE, run)
    return amended
