"""Everything a run checks and builds before its first trial, whichever executor
runs it (``controllers.run.session``).

``prepare_search`` applies command-line overrides, validates the search section
(strategy against the policy registry, the strategies' own settings, GPUs), and checks
that the task builds and that something in the space fits the budget, or, for a plain
decision space, that its evaluator is registered: a bad file fails here, naming the
file and key, before Ray starts or a run directory exists.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from dynas.search_space.boundary import json_file
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.experiment import Experiment
from dynas.search_space.settings import SearchSettings

from ..driver import Feasibility, SearchDriver
from ..kept_weights import WeightKeeper
from ..policies import POLICIES, check_search, make_policy
from ..records import EXPERIMENT_COPY, OPTUNA_DB, POLICY_STATE_FILE, TrialRecord, base_run_info, iter_records
from .baselines import resolve_baselines, train_baselines
from .in_process import fit_evaluator, run_in_process


def prepare_search(experiment: Experiment, strategy: str | None = None, trials: int | None = None,
                   concurrent: int | None = None, seed: int | None = None) -> SearchSettings:
    """The experiment's search settings with the overrides, checked (module docstring)."""
    from dynas.search_space.space import ArchSpace

    if strategy is not None:            # the flag, not the file, is wrong
        POLICIES.get(strategy, "--strategy")
    search = dataclasses.replace(
        experiment.search, strategy=strategy or experiment.search.strategy,
        trials=experiment.search.trials if trials is None else int(trials),
        concurrent=experiment.search.concurrent if concurrent is None else int(concurrent),
        seed=experiment.search.seed if seed is None else int(seed))
    with experiment.attribute_errors():
        check_search(search)
        search.validate("search")
    if search.evaluation == "supernet":
        with experiment.attribute_errors():
            check_supernet(experiment, search)
    with experiment.attribute_errors():
        check_fidelity(experiment, search)
    if experiment.training.device == "cuda" and search.gpus_per_trial <= 0:
        raise ConfigError("search.gpus_per_trial", "training.device is cuda: give each trial a GPU (> 0)")
    if isinstance(experiment.space, ArchSpace):
        with experiment.attribute_errors():
            check_metrics(search)
        check_buildable(experiment, search)
        search_baselines(experiment, search)
    else:
        with experiment.attribute_errors():
            check_evaluator(experiment, search)
            if search.baselines:
                raise ConfigError("search.baselines", "reference baselines are trained models: "
                                  "they need an architecture space, not a plain decision space")
    return search


def check_supernet(experiment: Experiment, search: SearchSettings) -> None:
    """``search.evaluation: supernet`` on a space one supernet can share
    (``search_space.sharing``), with settings that mean something for inherited scores."""
    from dynas.search_space.sharing import check_shareable, split

    check_shareable(experiment.space)
    split(experiment.space, search.supernet.shots)      # a few-shot split with parts to split into
    if search.scheduler != "fifo":
        raise ConfigError("search.scheduler", f"{search.scheduler} stops trainings between experiences; "
                          "a supernet search trains no candidate (use fifo)")
    if search.remeasure:
        raise ConfigError("search.remeasure", "an inherited score has no training seed to vary; "
                          "use search.confirm to re-train the best candidates stand-alone")


def check_fidelity(experiment: Any, search: Any) -> None:
    """``search.fidelity`` (``controllers.run.fidelity``): rungs retrain architectures
    stand-alone at a budget of steps: an evaluator (a plain space), an inherited
    supernet score or ASHA's own stops have none to grow."""
    from dynas.search_space.space import ArchSpace

    if not search.fidelity.enabled:
        return
    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("search.fidelity", "rungs grow the training budget; a plain decision space's "
                                             "evaluator has none")
    if search.evaluation == "supernet":
        raise ConfigError("search.fidelity", "rungs retrain candidates stand-alone; a supernet search "
                                             "scores inherited weights (use standalone)")
    if search.scheduler != "fifo":
        raise ConfigError("search.scheduler", f"{search.scheduler} stops trainings between experiences; "
                                              "with search.fidelity the rungs are the schedule (use fifo)")


def check_metrics(search: SearchSettings) -> None:
    """Every objective names a metric that training reports (built-in or a plugin's)."""
    from dynas.trainers.metrics import known_metrics

    known = known_metrics()
    for i, obj in enumerate(search.objectives):
        if obj.metric not in known:
            raise ConfigError(f"search.objectives[{i}].metric",
                              f"unknown metric {obj.metric!r}; known: {', '.join(known)}")


def check_evaluator(experiment: Experiment, search: SearchSettings) -> None:
    """A plain space names a registered evaluator; what it declares covers the objectives."""
    from dynas.search_space.evaluators import check_options, get_evaluator

    if not experiment.evaluator.name:
        raise ConfigError("evaluator", "a plain decision space needs an evaluator: name one "
                          "registered with search_space.evaluators.register_evaluator (in a plugin)")
    entry = get_evaluator(experiment.evaluator.name)
    check_options(entry.name, experiment.evaluator.options)
    if search.scheduler != "fifo":
        raise ConfigError("search.scheduler", f"{search.scheduler} stops trials between experiences; "
                          "an evaluator scores a plain decision space in one call (use fifo)")
    for i, obj in enumerate(search.objectives):
        if entry.metrics and obj.metric not in entry.metrics:
            raise ConfigError(f"search.objectives[{i}].metric", f"evaluator {entry.name!r} returns "
                              f"{', '.join(entry.metrics)}, not {obj.metric!r}")


def search_baselines(experiment: Experiment, search: SearchSettings) -> list[tuple[str, Any]]:
    """``search.baselines`` resolved to ``(name, model)`` and checked against the task
    (``controllers.run.baselines``); a bad entry names the file and key."""
    from dynas.trainers.tasks import task_shape

    if not search.baselines:
        return []
    with experiment.attribute_errors():
        return resolve_baselines(search.baselines, task_shape(experiment.task), experiment.source)


def train_search_baselines(experiment: Experiment, search: SearchSettings, run_dir: Path) -> list[TrialRecord]:
    """Train the baselines ``run_dir`` lacks, in this process (whichever executor ran the
    trials: they are few, and need no scheduler), with the trials' ``trainers.fit``."""
    baselines = search_baselines(experiment, search)
    if not baselines:
        return []
    evaluate = fit_evaluator(experiment)
    return train_baselines(baselines, lambda model: run_in_process(evaluate, model), run_dir,
                           list(iter_records(run_dir)), seed=experiment.training.seed,
                           budget=training_budget(experiment))


def check_buildable(experiment: Experiment, search: SearchSettings) -> None:
    """The task builds and some architecture meets the budget, or a ConfigError."""
    from dynas.search_space.constraints import require_feasible
    from dynas.trainers.tasks import task_shape

    with experiment.attribute_errors():
        shape = task_shape(experiment.task)
    require_feasible(experiment.space, shape, search.budget, seed=search.seed,
                     source=str(experiment.source) if experiment.source else None)


def feasibility(experiment: Experiment, concurrent: int = 1) -> Feasibility | None:
    """``arch -> (ok, why)`` against the task's shape, the budget and the memory each of
    ``concurrent`` trials may use (None for plain spaces)."""
    from dynas.search_space.constraints import MemoryLimit, is_feasible
    from dynas.search_space.space import ArchSpace

    if not isinstance(experiment.space, ArchSpace):
        return None
    from dynas.trainers.tasks import task_shape

    shape, budget = task_shape(experiment.task), experiment.search.budget
    memory = MemoryLimit.per_trial(experiment.training.batch_size, concurrent)
    return lambda arch: is_feasible(arch, shape, budget, memory)


def build_driver(experiment: Experiment, search: SearchSettings, run_dir: Path, *, budget: int,
                 records: Sequence[TrialRecord], listeners: Sequence = ()) -> SearchDriver:
    """The policy (restored from policy_state.json on resume) behind a driver: built
    here only, for every phase and executor."""
    policy = make_policy(search.strategy, experiment.space, search.objectives, search.seed, search)
    if hasattr(policy, "mirror_to"):         # Optuna policies: RUN_DIR/optuna.db for the dashboard
        policy.mirror_to(Path(run_dir) / OPTUNA_DB)
    if records:
        restore_policy(policy, search, run_dir)
    return SearchDriver(policy, run_dir, budget=budget, seed=search.seed, records=records,
                        feasible=feasibility(experiment, search.concurrent), keeper=weight_keeper(search, run_dir),
                        remeasure=search.remeasure, train_seed=experiment.training.seed,
                        listeners=listeners, trained_at=training_budget(experiment),
                        identity=dedup_identity(experiment, search))


def training_budget(experiment: Experiment) -> int | None:
    """The budget every record of ``experiment``'s trials carries: steps per experience
    (None for a plain decision space: its evaluator has no training budget)."""
    from dynas.search_space.space import ArchSpace

    return experiment.training.steps_per_experience if isinstance(experiment.space, ArchSpace) else None


def dedup_identity(experiment: Experiment, search: SearchSettings) -> Callable[[Any], str] | None:
    """What de-duplication keys on: the function id on the task's shape
    (``search_space.canonical``) when every candidate trains from scratch; the arch_id
    under a supernet, where two kinds have their own shared weights (None)."""
    from dynas.search_space.canonical import function_id
    from dynas.search_space.space import ArchSpace

    if search.evaluation != "standalone" or not isinstance(experiment.space, ArchSpace):
        return None
    from dynas.trainers.tasks import task_shape

    shape = task_shape(experiment.task)
    return lambda arch: function_id(arch, shape)


def restore_policy(policy: Any, search: SearchSettings, run_dir: Path) -> None:
    """``policy_state.json`` into ``policy`` (when there is one), or one line naming it."""
    state = Path(run_dir) / POLICY_STATE_FILE
    data = json_file(state, missing=None)
    if data is None:
        return
    try:
        policy.load_state_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as err:
        raise DynasError(f"{state}: cannot restore the {search.strategy} policy "
                         f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None


def check_policy_state(experiment: Experiment, search: SearchSettings, run_dir: Path) -> None:
    """Restore the saved state into a throwaway policy: a corrupt state is refused
    before a resume starts Ray or writes anything."""
    if (Path(run_dir) / POLICY_STATE_FILE).exists():
        restore_policy(make_policy(search.strategy, experiment.space, search.objectives, search.seed, search),
                       search, run_dir)


def weight_keeper(search: SearchSettings, run_dir: Path) -> WeightKeeper | None:
    """The keep rule of ``search.keep_weights`` (None: no weights are saved)."""
    if search.keep_weights == "none":
        return None
    return WeightKeeper(run_dir, search.keep_weights, search.objectives)


def experiment_text(experiment: Experiment) -> str:
    """The experiment as it will run: the file as given (comments kept), or its mapping
    when there is no file or settings were applied on top of it (``dynas.search(...,
    settings=...)``): a resume reads this copy, so it must be what ran."""
    import yaml

    if experiment.source and Path(experiment.source).is_file():
        text = Path(experiment.source).read_text(encoding="utf-8")
        if yaml.safe_load(text) == experiment.raw:
            return text
    return yaml.safe_dump(experiment.raw, sort_keys=False)


def run_info(experiment: Experiment, search: SearchSettings, name: str, runner: str,
             **extra: Any) -> dict[str, Any]:
    """``run.json`` of a new run: what was asked, by whom, when (its one writer is
    ``controllers.run.session``)."""
    return {**base_run_info(name, runner, search.strategy, search.trials, search.seed, search.objectives,
                            experiment.space.size()),
            "concurrent": search.concurrent, "experiment": EXPERIMENT_COPY,
            "source": str(Path(experiment.source).resolve()) if experiment.source else None,
            "scheduler": search.scheduler, "plugins": _plugin_specs(),
            "evaluator": dataclasses.asdict(experiment.evaluator) if experiment.evaluator.name else None,
            **extra}


def _plugin_specs() -> list[str]:
    """Every plugin loaded here (the file's and --plugin's), resolved: a resume reloads them."""
    from dynas.search_space.plugins import loaded_plugins

    return [plugin.spec for plugin in loaded_plugins()]
