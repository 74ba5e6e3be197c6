"""The Python API behind ``import dynas``: search, load, pick and use a run from code.

    import dynas

    run = dynas.search("examples/quickstart.yaml", trials=4,
                       settings={"training.steps_per_experience": 20})
    run.records                          # one row per trial, as `dynas report` loads them
    run.front()                          # the Pareto front (validation values)
    knee = run.pick("knee")              # a Pick: trial, arch_id, arch, values
    run.report()                         # report.md, as `dynas report RUN` writes it
    model = run.load_model("knee")       # a Predictor: model.predict(raw_inputs)
    run = dynas.resume(run, extra_trials=2)

Each function is the command line's own code path: ``search``/``resume``/``confirm``
call ``controllers.run_search``/``resume_search``/``confirm_run`` (so a run started
here resumes with ``dynas resume`` and the other way round), picks are
``analysis.picks.resolve`` (what ``dynas export --pick`` writes), reports
``analysis.report.write_report``, models ``trainers.predict.load_model``.

Science rule: a pick sees validation values only. ``Pick.test_values`` are the held-out
test numbers of the chosen trial, shown and never used to choose.

Torch, Ray and Optuna load only inside the functions that need them.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import pandas as pd

from dynas.search_space import names
from dynas.search_space.errors import DynasError
from dynas.search_space.settings import Objective

from .load import is_promotion, load_runs, metric_columns, read_run_meta, run_objectives, searched, short_arch
from .pareto import pareto_front

if TYPE_CHECKING:                        # only for annotations: importing them needs torch
    from dynas.search_space.experiment import Experiment
    from dynas.trainers.predict import Predictor

__all__ = ["search", "load_run", "resume", "confirm", "load_model", "Run", "Pick"]


@dataclass(frozen=True)
class Pick:
    """One trial of a run, chosen by ``rule`` (``knee``, ``best-accuracy``, ``max-flops=X``,
    ``trial id`` or ``arch_id``).

    ``values`` are what the search measured on validation splits (and the cost model's
    numbers): the only values a pick is made on. ``test_values`` are the same metrics
    on the held-out test splits (``test.`` prefix dropped), for reading only.
    ``weights`` is the trial's kept model folder, None when the run did not keep it.
    """

    run_dir: Path
    rule: str
    trial: int
    arch_id: str
    arch: Any
    values: dict[str, float]
    test_values: dict[str, float] = field(default_factory=dict)
    weights: Path | None = None
    on_front: bool = False

    def load_model(self, device: str = "cpu") -> "Predictor":
        """The trial's kept model, ready to ``predict``; one line naming the run and
        the trial when its weights were not kept (``search.keep_weights``)."""
        from dynas.controllers.kept_weights import read_index

        from .export import kept_model_dir

        folder = kept_model_dir(self.run_dir, {"proposal_id": self.trial, "arch_id": self.arch_id},
                                read_index(self.run_dir))
        return load_model(folder, device)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in self.values.items() if k in _SHOWN)
        test = ", ".join(f"{k}={_fmt(v)}" for k, v in self.test_values.items() if k in _SHOWN)
        return (f"Pick(trial {self.trial} by {self.rule}, arch {self.arch_id} [{short_arch(self.arch)}]; "
                f"validation {shown or '-'}; test {test or '-'} (shown, never used to pick); "
                f"{'on the front' if self.on_front else 'off the front'}; "
                f"weights {'kept' if self.weights else 'not kept'})")


_SHOWN = (names.FINAL_AVG_ACCURACY, names.FLOPS, names.PARAMS)


class Run:
    """A run directory made by ``dynas search`` or ``dynas.search``.

    ``records`` is read afresh on each access, so a run still going, resumed or
    confirmed since shows its latest trials.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.dir = Path(run_dir).resolve()
        read_run_meta(self.dir)                     # one line when it is no run directory

    @property
    def meta(self) -> dict[str, Any]:
        """``run.json``: what the run was asked (strategy, trials, seed, objectives...)."""
        return read_run_meta(self.dir)

    @property
    def objectives(self) -> tuple[Objective, ...]:
        """The objectives the run optimised (``Objective(metric, direction)``)."""
        return run_objectives([self.dir])

    @property
    def records(self) -> pd.DataFrame:
        """One row per trial record (``analysis.load``: metrics, ``param.*``, ``arch.*``)."""
        return load_runs([self.dir])

    def front(self) -> pd.DataFrame:
        """The Pareto front of the complete trials on the run's objectives (validation
        values), best first on the first objective."""
        return pareto_front(self.records, self.objectives)

    def pick(self, which: str | int = "knee") -> Pick:
        """One trial: ``"knee"``, ``"knee-means"`` (the knee of the seed means after
        ``confirm``), ``"best-accuracy"``, ``"max-flops=X"``, ``"trial=N"``,
        ``"arch_id=HEX"`` (as ``dynas export --pick``), a trial (proposal) id, or an
        ``arch_id`` of this run (``analysis.picks``); ``Pick.rule`` is the pick as read."""
        from .picks import resolve

        df, objectives = self.records, self.objectives
        if isinstance(which, numbers.Integral) and not isinstance(which, bool):
            which = int(which)
        elif not isinstance(which, str):
            raise DynasError(f"{self.dir}: unknown pick rule {which!r}; use a rule, a trial id (int) "
                             "or an arch_id of this run")
        row, rule = resolve(self.dir, which, df, objectives)
        front = pareto_front(df, objectives)
        return _as_pick(self.dir, rule, row, metric_columns(df), bool((front.index == row.name).any()))

    def report(self, out: str | os.PathLike | None = None, *, cost: str | None = None,
               compare: Sequence["Run | str | os.PathLike"] = (), mixed_budgets: bool = False) -> Path:
        """Write the run's report (``dynas report``), beside the ``compare`` runs if any,
        into ``out`` (default ``RUN/report``); returns the path of ``report.md``.
        ``mixed_budgets``: compare hypervolumes of runs trained at different budgets."""
        from .report import write_report

        return write_report([self.dir] + [_dir_of(r) for r in compare], out, cost=cost,
                            mixed_budgets=mixed_budgets)

    def load_model(self, pick: str | int | Pick = "knee", device: str = "cpu") -> "Predictor":
        """The kept model of ``pick`` (a rule, trial id, arch_id or a ``Pick``)."""
        chosen = pick if isinstance(pick, Pick) else self.pick(pick)
        return chosen.load_model(device)

    def __repr__(self) -> str:
        try:
            df = self.records
        except DynasError as err:                   # a broken records file: still a repr
            return f"Run({str(self.dir)!r}: {err})"
        trained = searched(df)
        trained = trained[trained["cached_from"].isna() & trained["repeat_of"].isna() & ~is_promotion(trained)]
        states = trained["state"].value_counts()
        meta = self.meta
        objectives = ", ".join(f"{o.metric} {o.direction}" for o in self.objectives)
        return (f"Run({str(self.dir)!r}, strategy={meta.get('strategy')!r}, "
                f"trials {len(trained)} of {meta.get('trials')} ({states.get('complete', 0)} complete, "
                f"{states.get('failed', 0)} failed, {states.get('pruned', 0)} pruned), "
                f"front {len(pareto_front(df, self.objectives))}, objectives: {objectives})")


# --- the functions -----------------------------------------------------------------------
def search(experiment: str | os.PathLike | Mapping[str, Any] | Experiment, *,
           settings: Mapping[str, Any] | None = None, strategy: str | None = None,
           trials: int | None = None, concurrent: int | None = None, seed: int | None = None,
           storage: str | os.PathLike | None = None, name: str | None = None,
           address: str | None = None, runner: str | None = None, verbose: int = 1) -> Run:
    """Search an experiment's space (``dynas search``) and return its ``Run``.

    ``experiment``: a YAML file, a mapping of the same sections, or a parsed
    ``Experiment``. ``settings``: experiment settings by dotted key path
    (``{"training.steps_per_experience": 20, "task.options.patch": 4}``), checked as if
    the file held them (``search_space.overrides``). The other keywords are the CLI's
    flags; None keeps the file's value. ``runner``: ``"ray"`` (the default: a private
    local Ray instance, or the cluster at ``address``) or ``"local"`` (in this process,
    no Ray). No report is written; call ``run.report()``. A run in which no trial
    completed is still returned: its repr and ``records`` (``reason``) say why.
    """
    from dynas.controllers import run_search

    given = _experiment(experiment, settings)
    options = {"strategy": strategy, "trials": trials, "concurrent": concurrent, "seed": seed,
               "storage": storage, "name": name, "address": address, "runner": runner}
    return Run(run_search(given, **{k: v for k, v in options.items() if v is not None}, verbose=verbose))


def load_run(run_dir: str | os.PathLike | Run) -> Run:
    """The ``Run`` of a run directory (a one-line ``DynasError`` when it is none)."""
    return Run(_dir_of(run_dir))


def resume(run_dir: str | os.PathLike | Run, extra_trials: int = 0, *, address: str | None = None,
           runner: str | None = None, verbose: int = 1, settings: Mapping[str, Any] | None = None,
           trust_plugins: bool = False) -> Run:
    """Continue a killed search, or extend a finished one by ``extra_trials``
    (``dynas resume``); ``runner`` None: the one the run was made with. ``settings``:
    as ``dynas resume --set``, only those that leave what trials measure unchanged
    (``controllers.run.amend``); ``trust_plugins``: import the plugins run.json names
    (``--trust-plugins``)."""
    from dynas.controllers import resume_search
    from dynas.search_space.plugins import trusted_plugins

    extra = {"runner": runner} if runner is not None else {}
    with trusted_plugins(trust_plugins):
        return Run(resume_search(_dir_of(run_dir), extra_trials, address=address, verbose=verbose,
                                 settings=dict(settings or {}), **extra))


def confirm(run_dir: str | os.PathLike | Run, top: int | None = None, seeds: int = 1, *,
            trials: Sequence[int] | None = None, order: str = "objective", address: str | None = None,
            runner: str | None = None, verbose: int = 1, settings: Mapping[str, Any] | None = None,
            trust_plugins: bool = False) -> Run:
    """Re-train the ``top`` best candidates (front rank, then ``order``: ``objective``
    or ``knee``), or the ``trials`` named, with ``seeds`` fresh seeds each (``dynas
    confirm``); the report then shows means and spreads."""
    from dynas.controllers import confirm_run
    from dynas.search_space.plugins import trusted_plugins

    extra = {"runner": runner} if runner is not None else {}
    with trusted_plugins(trust_plugins):
        return Run(confirm_run(_dir_of(run_dir), top, seeds, address=address, verbose=verbose, trials=trials,
                               order=order, settings=dict(settings or {}), **extra))


def load_model(path: str | os.PathLike, device: str = "cpu", *, trust_plugins: bool = False) -> "Predictor":
    """A model folder (``dynas export --weights``, ``dynas train``) as a ``Predictor``;
    ``trust_plugins``: import the plugins its model.json recorded (``--trust-plugins``)."""
    from dynas.controllers.records import RUN_FILE
    from dynas.search_space.plugins import trusted_plugins
    from dynas.trainers.predict import load_model as load_folder

    if (Path(path) / RUN_FILE).is_file():
        raise DynasError(f"{path}: a run directory, not a model folder; use "
                         f"dynas.load_run({str(path)!r}).load_model('knee') (or a trial id)")
    with trusted_plugins(trust_plugins):
        return load_folder(path, device)


# --- pieces ------------------------------------------------------------------------------
def _experiment(experiment: Any, settings: Mapping[str, Any] | None) -> Any:
    """What ``run_search`` is given: a file as is when nothing overrides it (the run
    keeps its text, comments and all), else the parsed, overridden ``Experiment``."""
    from dynas.search_space.experiment import (Experiment, load_experiment, override_experiment,
                                                parse_experiment)

    if isinstance(experiment, (str, os.PathLike)):
        if not settings:
            return Path(experiment)
        experiment = load_experiment(experiment)
    elif isinstance(experiment, Mapping):
        experiment = parse_experiment(copy.deepcopy(dict(experiment)))
    elif not isinstance(experiment, Experiment):
        raise DynasError(f"experiment: expected a YAML file, a mapping or an Experiment, "
                         f"got {type(experiment).__name__}")
    return override_experiment(experiment, settings)


def _dir_of(run: str | os.PathLike | Run) -> Path:
    return run.dir if isinstance(run, Run) else Path(run)


def _as_pick(run_dir: Path, rule: str, row: pd.Series, metrics: list[str], on_front: bool) -> Pick:
    from dynas.controllers.kept_weights import kept_folder, read_index

    values = {m: float(row[m]) for m in metrics if _number(row.get(m))}
    held_out = {k[len(names.TEST_PREFIX):]: v for k, v in names.held_out_metrics(values).items()}
    entry = read_index(run_dir).get(str(int(row["proposal_id"])))
    return Pick(run_dir=run_dir, rule=rule, trial=int(row["proposal_id"]), arch_id=str(row["arch_id"]),
                arch=row["arch"], values=names.selection_metrics(values), test_values=held_out,
                weights=kept_folder(run_dir, entry) if entry else None, on_front=on_front)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"
