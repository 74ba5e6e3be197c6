"""Runs by name: the entry points the command line and ``import dynas`` call.

They pick an executor by its run.json name (``EXECUTORS``: ``ray``, Ray Tune on a
private local instance or the cluster at ``address``; ``local``, in this process
without Ray) and hand it to the run session (``controllers.run.session``), which
assembles the phases. ``resume_search`` and ``confirm_run`` default to the executor
that made the run; any other may be named.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.experiment import Experiment, load_experiment

from .records import iter_records, read_run
from .run import session
from .run.executor import Executor
from .run.in_process import InProcess
from .tracking import NORMAL

EXECUTORS = ("ray", "local")


def make_executor(runner: str, address: str | None = None) -> Executor:
    """The executor named ``runner`` (one of ``EXECUTORS``)."""
    if runner == "local":
        if address:
            raise ConfigError("--address", "joins a Ray cluster: use it with the ray runner")
        return InProcess()
    if runner == "ray":
        from .tune.executor import RayTune    # Ray is imported only when it runs trials

        return RayTune(address)
    raise ConfigError("--runner", f"unknown runner {runner!r}; known: {', '.join(EXECUTORS)}")


def run_search(experiment: str | Path | Experiment, strategy: str | None = None, trials: int | None = None,
               concurrent: int | None = None, address: str | None = None, name: str | None = None,
               seed: int | None = None, storage: str | Path | None = None, *, verbose: int = NORMAL,
               runner: str = "ray") -> Path:
    """Search an experiment (a file or a parsed ``Experiment``); returns the run
    directory ``storage/name`` (default ``search.storage/<stem>-<strategy>-<UTC time>``).
    ``verbose``: a ``controllers.tracking`` level (0 quiet ... 3 debug)."""
    executor = make_executor(runner, address)
    if not isinstance(experiment, Experiment):
        experiment = load_experiment(experiment)
    stem = Path(experiment.source).stem if experiment.source else "experiment"
    run_dir = session.new_run_dir(Path(storage or experiment.search.storage), name,
                                  f"{stem}-{strategy or experiment.search.strategy}")
    return session.start_search(experiment, run_dir, executor, strategy=strategy, trials=trials,
                                concurrent=concurrent, seed=seed, verbose=verbose, address=address)


def resume_search(run_dir: str | Path, extra_trials: int = 0, *, address: str | None = None,
                  verbose: int = NORMAL, runner: str | None = None, settings: dict | None = None) -> Path:
    """Continue a killed (or extend a finished) run, with ``runner`` or the run's own;
    ``settings``: ``--set`` overrides a run may take (``controllers.run.amend``)."""
    return session.resume_search(run_dir, _executor_for(run_dir, runner, address), extra_trials,
                                 verbose=verbose, settings=settings)


def confirm_run(run_dir: str | Path, top: int | None, seeds: int, *, address: str | None = None,
                verbose: int = 1, runner: str | None = None, trials: Sequence[int] | None = None,
                order: str = "objective", settings: dict | None = None) -> Path:
    """Seed repeats for the ``top`` best candidates of a run in ``order``, or for the
    ``trials`` named (``controllers.run.confirm``)."""
    return session.confirm_run(run_dir, _executor_for(run_dir, runner, address), top, seeds, verbose=verbose,
                               trials=trials, order=order, settings=settings)


def run_local_experiment(experiment: Experiment, run_dir: str | Path, strategy: str | None = None,
                         trials: int | None = None, seed: int | None = None, *, resume: bool = False,
                         verbose: int = 0) -> list[Any]:
    """The whole run of ``experiment`` in ``run_dir`` in this process (no Ray), or its
    resume to ``trials`` (default: run.json's); returns the records it wrote. The run
    is like any other: ``dynas resume`` and ``dynas confirm`` take it."""
    run_dir = Path(run_dir)
    before = len(list(iter_records(run_dir))) if resume else 0
    if resume:
        recorded = int(read_run(run_dir).get("trials", 0))
        extra = 0 if trials is None else int(trials) - recorded
        if extra < 0:
            raise DynasError(f"{run_dir}: already asked for {recorded} trials; cannot resume to {trials}")
        session.resume_search(run_dir, InProcess(), extra, verbose=verbose)
    else:
        session.start_search(experiment, run_dir, InProcess(), strategy=strategy, trials=trials, seed=seed,
                             verbose=verbose)
    return list(iter_records(run_dir))[before:]


def _executor_for(run_dir: str | Path, runner: str | None, address: str | None) -> Executor:
    if runner is None:
        runner = str(read_run(run_dir).get("runner", "ray"))
        runner = runner if runner in EXECUTORS else "ray"
    return make_executor(runner, address)
