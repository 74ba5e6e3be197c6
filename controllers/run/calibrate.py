"""``dynas calibrate``: does the ranking a search optimises survive more training?

A search ranks architectures after a short training; a user then trains the winner
longer. That is only sound if the short ranking predicts the long one, and if seeds
disagree less than architectures differ. A calibration measures both on the space of
an experiment file: ``archs`` architectures drawn uniformly (the random policy, seeded,
feasible only) are each trained at every budget (a multiple of
``training.steps_per_experience``) with every training seed (``training.seed + k``,
k < ``seeds``; the data split stays ``training.seed``'s, so seeds differ only in
initialisation, data order and replay draws). The analysis (tau between seeds, tau
between budgets, the recommendation, the figure) is ``dynas.analysis.calibration``.

A calibration is a run directory like a search's (``kind: calibrate`` in run.json,
the drawn architectures in ``calibration.json``), trained through the same executors
(Ray Tune or in-process): one driver per budget, holding the missing (architecture,
seed) trainings as queued confirmations (``SearchDriver.queue_confirmations``), told to
no policy. Each record says its ``budget`` (training steps per experience) and
``train_seed``; rerunning ``dynas calibrate RUN_DIR`` trains only what is missing, so a
killed calibration resumes. The cheapest budget goes first, and within a budget the
first seed of every architecture before the next seed: a calibration cut short still
ranks every architecture it reached at each budget. Nothing from a test split is
used: the analysis ranks on the search's first objective measured on validation.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from dynas.search_space.errors import ConfigError, DynasError, InfrastructureError
from dynas.search_space.experiment import Experiment, load_experiment, override_experiment

from ..driver import SearchDriver
from ..lock import run_lock
from ..policies import make_policy
from ..policy import Proposal
from ..records import (EXPERIMENT_COPY, RUN_FILE, TrialRecord, create_run_dir, iter_records, read_run,
                       require_run_dir)
from ..tracking import NORMAL
from .executor import Executor
from .prepare import experiment_text, feasibility, prepare_search, run_info

__all__ = ["CALIBRATION_FILE", "KIND", "check_plan", "start_calibration", "resume_calibration",
           "draw_architectures", "missing_trainings", "budget_steps"]

KIND = "calibrate"
CALIBRATION_FILE = "calibration.json"
MAX_ARCHS = 1000
MAX_SEEDS = 20
MAX_BUDGET = 256              # a multiple of steps_per_experience
MAX_TRAININGS = 20000
DRAWS_PER_ARCH = 50           # random draws allowed per distinct feasible architecture


def check_plan(archs: int, seeds: int, budgets: Sequence[int]) -> tuple[int, ...]:
    """The budgets as a tuple, or a ``ConfigError`` naming the option (before any work)."""
    if archs < 3 or archs > MAX_ARCHS:
        raise ConfigError("--archs", f"must be 3..{MAX_ARCHS} (a rank correlation needs 3 points), got {archs}")
    if seeds < 1 or seeds > MAX_SEEDS:
        raise ConfigError("--seeds", f"must be 1..{MAX_SEEDS}, got {seeds}")
    budgets = tuple(int(b) for b in budgets)
    if not budgets:
        raise ConfigError("--budgets", "give at least one budget (multiples of steps_per_experience)")
    bad = [b for b in budgets if b < 1 or b > MAX_BUDGET]
    if bad:
        raise ConfigError("--budgets", f"each budget is a multiple of steps_per_experience in 1..{MAX_BUDGET}, "
                                       f"got {bad[0]}")
    if any(b >= a for a, b in zip(budgets[1:], budgets)):
        raise ConfigError("--budgets", f"must be strictly increasing, got {' '.join(map(str, budgets))}")
    trainings = archs * seeds * len(budgets)
    if trainings > MAX_TRAININGS:
        raise ConfigError("--archs", f"{archs} archs x {seeds} seeds x {len(budgets)} budgets = {trainings} "
                                     f"trainings; at most {MAX_TRAININGS}")
    return budgets


def budget_steps(experiment: Experiment, budget: int) -> int:
    """Training steps per experience at ``budget`` (a multiple of the file's)."""
    return int(experiment.training.steps_per_experience) * int(budget)


def at_budget(experiment: Experiment, budget: int) -> Experiment:
    """``experiment`` with its training ``budget`` times longer (everything else equal)."""
    training = dataclasses.replace(experiment.training, steps_per_experience=budget_steps(experiment, budget))
    return dataclasses.replace(experiment, training=training)


def draw_architectures(experiment: Experiment, search: Any, archs: int, seed: int) -> list[Proposal]:
    """``archs`` distinct feasible architectures drawn uniformly by the random policy
    with ``seed``, numbered 0..archs-1; fewer when the space has fewer."""
    policy = make_policy("random", experiment.space, search.objectives, seed, search)
    feasible = feasibility(experiment)
    drawn: dict[str, Proposal] = {}
    for _ in range(archs * DRAWS_PER_ARCH):
        if len(drawn) == archs:
            break
        proposal = policy.ask()
        if proposal.arch.arch_id in drawn or (feasible is not None and not feasible(proposal.arch)[0]):
            continue
        drawn[proposal.arch.arch_id] = Proposal(len(drawn), proposal.arch, proposal.params)
    return list(drawn.values())


def missing_trainings(plan: dict[str, Any], records: Sequence[TrialRecord], steps: int) -> list[Proposal]:
    """The (architecture, seed) trainings at ``steps`` per experience not yet recorded
    (failed ones count as done: a failure is a measurement of that architecture), the
    first seed for every architecture before the next seed: a budget cut short still
    ranks as many architectures as it can."""
    from dynas.search_space.arch import ArchConfig

    done = {(r.arch_id, r.train_seed) for r in records if r.budget == steps}
    archs = [ArchConfig.from_dict(entry["arch"]) for entry in plan["archs"]]
    return [Proposal(i, arch, dict(plan["archs"][i]["params"]), seed=seed, repeat_of=i)
            for seed in plan["seeds"] for i, arch in enumerate(archs) if (arch.arch_id, seed) not in done]


def start_calibration(experiment: Experiment, run_dir: Path, executor: Executor, *, archs: int, seeds: int,
                      budgets: Sequence[int], seed: int | None = None, verbose: int = NORMAL) -> Path:
    """A new calibration of ``experiment``'s space in ``run_dir`` (missing or empty)."""
    from dynas.search_space.space import ArchSpace

    budgets = check_plan(archs, seeds, budgets)
    if not isinstance(experiment.space, ArchSpace):
        raise ConfigError("space", "a calibration trains architectures; a plain decision space has "
                                   "no training budget")
    search = _calibration_search(experiment, archs, seed)
    drawn = draw_architectures(experiment, search, archs, search.seed)
    if len(drawn) < 3:
        raise DynasError(f"{experiment.source}: only {len(drawn)} feasible architectures drawn; "
                         "a calibration needs 3")
    if len(drawn) < archs:
        print(f"dynas: the space holds only {len(drawn)} feasible architectures; calibrating those")
    first = int(experiment.training.seed)
    plan = {"budgets": list(budgets), "seeds": [first + k for k in range(seeds)],
            "steps_per_experience": int(experiment.training.steps_per_experience),
            "metric": search.objectives[0].metric, "direction": search.objectives[0].direction,
            "draw_seed": int(search.seed),
            "archs": [{"arch": p.arch.to_dict(), "params": p.params} for p in drawn]}
    info = run_info(experiment, search, run_dir.name, executor.name, kind=KIND,
                    calibration={k: v for k, v in plan.items() if k != "archs"})
    create_run_dir(run_dir, info, {EXPERIMENT_COPY: experiment_text(experiment),
                                   CALIBRATION_FILE: json.dumps(plan, indent=1, sort_keys=True)})
    with run_lock(run_dir):
        _train(experiment, search, run_dir, executor, plan, verbose)
    return run_dir


def resume_calibration(run_dir: str | Path, executor: Executor, *, verbose: int = NORMAL) -> Path:
    """Train what a killed calibration left missing (nothing, when it finished)."""
    run_dir = require_run_dir(run_dir).resolve()
    with run_lock(run_dir):
        run = read_run(run_dir)
        if run.get("kind") != KIND:
            raise DynasError(f"{run_dir / RUN_FILE}: not a calibration (kind {run.get('kind')!r})")
        plan = read_plan(run_dir)
        experiment = load_experiment(run_dir / run.get("experiment", EXPERIMENT_COPY), plugins=run.get("plugins"))
        search = _calibration_search(experiment, len(plan["archs"]), run.get("seed"))
        _train(experiment, search, run_dir, executor, plan, verbose)
    return run_dir


def read_plan(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / CALIBRATION_FILE
    try:
        plan = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DynasError(f"{path}: cannot read the calibration plan ({type(err).__name__}: {err})") from None
    if not isinstance(plan, dict) or not {"archs", "seeds", "budgets", "steps_per_experience"} <= set(plan):
        raise DynasError(f"{path}: not a calibration plan (archs, seeds, budgets, steps_per_experience)")
    return plan


def _calibration_search(experiment: Experiment, archs: int, seed: int | None) -> Any:
    """The file's search settings for whole trainings: the random policy, no scheduler
    (every training runs to its budget), no supernet, no kept weights."""
    search = prepare_search(experiment, "random", archs, None, seed)
    return dataclasses.replace(search, scheduler="fifo", evaluation="standalone", keep_weights="none")


def _train(experiment: Experiment, search: Any, run_dir: Path, executor: Executor, plan: dict[str, Any],
           verbose: int) -> None:
    """The missing trainings through ``executor``, the cheapest budget first: a
    calibration cut short holds its cheap budgets whole."""
    from .session import _stopping        # a signal ends the training under way, then stops

    records = list(iter_records(run_dir))
    todo = {b: missing_trainings(plan, records, int(plan["steps_per_experience"]) * int(b))
            for b in plan["budgets"]}
    total = sum(map(len, todo.values()))
    if not total:
        print(f"{run_dir}: calibration complete, nothing to train")
        return
    print(f"calibrating {len(plan['archs'])} architectures x {len(plan['seeds'])} seeds at budgets "
          f"{plan['budgets']} (x{plan['steps_per_experience']} steps per experience): {total} trainings to run")
    with _stopping(run_dir, "calibrate") as stop, executor.session(search, verbose):
        stop.install()                      # ray.init set a SIGTERM handler of its own
        for budget, missing in todo.items():
            if missing:
                steps = int(plan["steps_per_experience"]) * int(budget)
                _drive(experiment, search, run_dir, executor, budget, steps, missing, records, verbose, stop)
            stop.check()


def _drive(experiment: Experiment, search: Any, run_dir: Path, executor: Executor, budget: int, steps: int,
           missing: list[Proposal], records: Sequence[TrialRecord], verbose: int, stop: Any) -> None:
    if verbose:
        print(f"budget x{budget} ({steps} steps per experience): {len(missing)} trainings")
    policy = make_policy("random", experiment.space, search.objectives, search.seed, search)
    driver = SearchDriver(policy, run_dir, budget=0, seed=search.seed, records=records,
                          train_seed=experiment.training.seed, trained_at=steps)   # stamps each record
    driver.queue_confirmations(missing)
    stop.on_stop[:] = [driver.stop]
    executor.drive(driver, at_budget(experiment, budget), search, run_dir, KIND, verbose=verbose, stop=stop)
    if driver.fault:
        raise InfrastructureError(f"{run_dir}: {driver.fault}; nothing was charged to a training; "
                                  f"fix that, then: dynas calibrate {run_dir}")


def run_calibration(config: str | Path, *, archs: int = 24, seeds: int = 2, budgets: Sequence[int] = (1, 4),
                    runner: str = "ray", address: str | None = None, storage: str | Path | None = None,
                    name: str | None = None, seed: int | None = None, verbose: int = NORMAL,
                    settings: dict | None = None) -> Path:
    """``dynas calibrate``: a new calibration of the experiment file ``config`` in
    ``storage/name`` (default ``search.storage/<stem>-calibrate-<UTC time>``), with
    ``settings`` (``--set``) applied, or, when ``config`` is a calibration's run
    directory, the trainings it still misses (``settings`` refused: they would change
    what its trainings measure)."""
    from ..runs import make_executor
    from .session import new_run_dir

    if Path(config).is_dir():
        if settings:
            raise DynasError(f"{config}: --set applies to a new calibration, not to finishing one")
        return resume_calibration(config, make_executor(runner, address), verbose=verbose)
    check_plan(archs, seeds, budgets)
    executor = make_executor(runner, address)
    experiment = load_experiment(config)
    if settings:
        experiment = override_experiment(experiment, settings)
    stem = Path(experiment.source).stem if experiment.source else "experiment"
    run_dir = new_run_dir(Path(storage or experiment.search.storage), name, f"{stem}-{KIND}")
    return start_calibration(experiment, run_dir, executor, archs=archs, seeds=seeds, budgets=budgets,
                             seed=seed, verbose=verbose)
