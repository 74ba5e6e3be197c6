"""Everything a search checks and builds before its first trial, shared by the Ray
runner (``controllers.search``) and the local one (``controllers.local``).

``prepare_search`` applies command-line overrides, validates the search section
(strategy against the policy registry, the strategies' own settings, GPUs), and checks
that the task builds and that something in the space fits the budget: a bad file fails
here, naming the file and key, before Ray starts or a run directory exists.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from search_space.errors import ConfigError, DynasError
from search_space.experiment import Experiment
from search_space.settings import SearchSettings

from .driver import Feasibility, SearchDriver
from .records import POLICY_STATE_FILE, TrialRecord


def prepare_search(experiment: Experiment, strategy: str | None = None, trials: int | None = None,
                   concurrent: int | None = None, seed: int | None = None,
                   runner: str = "controllers.search.tune_search") -> SearchSettings:
    """The experiment's search settings with the overrides, checked (module docstring)."""
    from search_space.space import ArchSpace

    from .policies import check_search

    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("space", "a plain decision space has no trainer; search it with "
                                   f"{runner} and a trainable of your own")
    search = dataclasses.replace(
        experiment.search, strategy=strategy or experiment.search.strategy,
        trials=experiment.search.trials if trials is None else int(trials),
        concurrent=experiment.search.concurrent if concurrent is None else int(concurrent),
        seed=experiment.search.seed if seed is None else int(seed))
    with experiment.attribute_errors():
        check_search(search)
        search.validate("search")
    if experiment.training.device == "cuda" and search.gpus_per_trial <= 0:
        raise ConfigError("search.gpus_per_trial", "training.device is cuda: give each trial a GPU (> 0)")
    check_buildable(experiment, search)
    search_baselines(experiment, search)
    return search


def search_baselines(experiment: Experiment, search: SearchSettings) -> list[tuple[str, Any]]:
    """``search.baselines`` resolved to ``(name, model)`` and checked against the task
    (``controllers.baselines``); a bad entry names the file and key."""
    from trainers.tasks import task_shape

    from .baselines import resolve_baselines

    if not search.baselines:
        return []
    with experiment.attribute_errors():
        return resolve_baselines(search.baselines, task_shape(experiment.task), experiment.source)


def train_search_baselines(experiment: Experiment, search: SearchSettings, run_dir: Path) -> list[TrialRecord]:
    """Train the baselines ``run_dir`` lacks, in this process, as the trials train."""
    from .baselines import train_baselines
    from .local import fit_evaluator, run_in_process
    from .records import iter_records

    baselines = search_baselines(experiment, search)
    if not baselines:
        return []
    evaluate = fit_evaluator(experiment)
    return train_baselines(baselines, lambda model: run_in_process(evaluate, model), run_dir,
                           list(iter_records(run_dir)), seed=experiment.training.seed)


def check_buildable(experiment: Experiment, search: SearchSettings) -> None:
    """The task builds and some architecture meets the budget, or a ConfigError."""
    from search_space.constraints import require_feasible
    from trainers.tasks import task_shape

    with experiment.attribute_errors():
        shape = task_shape(experiment.task)
    require_feasible(experiment.space, shape, search.budget, seed=search.seed,
                     source=str(experiment.source) if experiment.source else None)


def feasibility(experiment: Experiment) -> Feasibility | None:
    """``arch -> (ok, why)`` against the task's shape and the budget (None for plain spaces)."""
    from search_space.constraints import is_feasible
    from search_space.space import ArchSpace

    if not isinstance(experiment.space, ArchSpace):
        return None
    from trainers.tasks import task_shape

    shape, budget = task_shape(experiment.task), experiment.search.budget
    return lambda arch: is_feasible(arch, shape, budget)


def build_driver(experiment: Experiment, search: SearchSettings, run_dir: Path, *, budget: int,
                 records: Sequence[TrialRecord]) -> SearchDriver:
    """The policy (restored from policy_state.json on resume) behind a driver."""
    from .policies import make_policy

    policy = make_policy(search.strategy, experiment.space, search.objectives, search.seed, search)
    state = Path(run_dir) / POLICY_STATE_FILE
    if records and state.is_file():
        try:
            policy.load_state_dict(json.loads(state.read_text()))
        except (ValueError, KeyError, TypeError) as err:   # JSONDecodeError is a ValueError
            raise DynasError(f"{state}: cannot restore the {search.strategy} policy "
                             f"({type(err).__name__}: {err})") from None
    return SearchDriver(policy, run_dir, budget=budget, seed=search.seed, records=records,
                        feasible=feasibility(experiment))


def experiment_text(experiment: Experiment) -> str:
    """The experiment file as given (comments kept), or its mapping when there is none."""
    import yaml

    if experiment.source and Path(experiment.source).is_file():
        return Path(experiment.source).read_text(encoding="utf-8")
    return yaml.safe_dump(experiment.raw, sort_keys=False)


def dynas_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dynas")
    except PackageNotFoundError:
        return "unknown (not installed)"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_info(experiment: Experiment, search: SearchSettings, name: str, runner: str,
             **extra: Any) -> dict[str, Any]:
    """``run.json`` of a new run: what was asked, by whom, when."""
    from .records import EXPERIMENT_COPY

    return {"name": name, "runner": runner, "strategy": search.strategy, "trials": search.trials,
            "concurrent": search.concurrent, "seed": search.seed,
            "objectives": [dataclasses.asdict(o) for o in search.objectives],
            "experiment": EXPERIMENT_COPY,
            "source": str(Path(experiment.source).resolve()) if experiment.source else None,
            "dynas_version": dynas_version(), "created": utc_now(),
            "scheduler": search.scheduler, "space_size": experiment.space.size(), **extra}
