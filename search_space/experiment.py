"""An experiment file: the space, the task, the training budget and the search settings.

Loading is ``yaml.safe_load`` (plain data, never code; bounded, duplicate keys refused:
``search_space.yaml_load``) followed by full validation, so
a file that loads is one a search can run to the end. Every error names the file and
the key (or the line, for YAML syntax errors).

The one exception to "never code" is the user's own: the ``plugins:`` list names
modules the user asks to import (``search_space.plugins``). They are imported first,
before anything else is validated, so a plugin's kinds, tasks and strategies are
known to the rest of the file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from .arch import TUNABLE_TRAINING
from .choices import as_float, as_int, choices, mapping, reject_unknown, short
from .errors import ConfigError
from .overrides import apply_overrides
from .plain import DecisionSpace
from .plugins import Plugin, load_plugins
from .schema import from_mapping
from .settings import EvaluatorSettings, SearchSettings, TaskSettings, TrainingSettings
from .space import ArchSpace, parse_space
from . import yaml_load

SECTIONS = ("space", "task", "training", "search", "evaluator", "plugins")


@dataclass(frozen=True)
class Experiment:
    """A validated experiment. ``raw`` is the file's mapping as loaded (copied into run
    directories so a run records exactly what it was asked to do). ``space`` is None
    only for a file loaded with ``need_space=False`` that has none (``dynas train``)."""

    space: ArchSpace | DecisionSpace | None
    task: TaskSettings = field(default_factory=TaskSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    source: Path | None = None
    raw: dict = field(default_factory=dict, compare=False)
    evaluator: EvaluatorSettings = field(default_factory=EvaluatorSettings)
    plugins: tuple[Plugin, ...] = ()      # the file's plugins, loaded (search_space.plugins)

    @property
    def plugin_specs(self) -> list[str]:
        """The plugins as resolved (module names, absolute paths): what a resume reloads."""
        return [p.spec for p in self.plugins]

    @contextlib.contextmanager
    def attribute_errors(self) -> Iterator[None]:
        """Name this file in ``ConfigError``s raised inside that name none: the task
        factories and the device check (in trainers) read these settings without
        knowing where they came from, and only the experiment knows its file."""
        try:
            yield
        except ConfigError as err:
            if err.source is None and self.source is not None:
                raise err.with_source(str(self.source)) from None
            raise


def load_experiment(path: str | os.PathLike, plugins: list[str] | None = None, *,
                    need_space: bool = True, recorded_in: str | None = None) -> Experiment:
    """Read and validate an experiment file; user errors raise ``ConfigError``.

    ``plugins`` (resolved specs, as ``Experiment.plugin_specs``) replaces the file's own
    list: a run directory's copy of the file is loaded with the plugins the run used,
    since its relative paths were relative to the original file. ``need_space=False``:
    the ``space`` section may be left out (training one given architecture needs only
    the task and training sections). ``recorded_in``: the run directory's file that
    named the plugins; they are imported only with consent (``search_space.plugins``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", "no such experiment file", str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError("", f"cannot read ({type(err).__name__})", str(path)) from None
    data = _load_yaml(text, path)
    if plugins is not None and isinstance(data, dict):
        data = {**data, "plugins": list(plugins)}
    return parse_experiment(data, source=path, need_space=need_space, recorded_in=recorded_in)


def parse_experiment(data: Any, source: Path | None = None, *, need_space: bool = True,
                     recorded_in: str | None = None) -> Experiment:
    """Validate an already loaded mapping (what ``load_experiment`` does after YAML)."""
    try:
        return _parse(data, source, need_space, recorded_in)
    except ConfigError as err:
        raise err.with_source(str(source)) if source else err


def override_experiment(experiment: Experiment, settings: Mapping[str, Any] | None) -> Experiment:
    """``experiment`` with ``settings`` (dotted key path -> value, ``search_space.overrides``)
    set in its mapping and parsed again: an overridden value is checked exactly as if
    the file held it, and an error names the file and the key. ``source`` stays the
    file's (its relative plugin paths resolve as before); ``raw`` is the new mapping."""
    if not settings:
        return experiment
    data = apply_overrides(experiment.raw, settings)
    return parse_experiment(data, source=experiment.source, need_space=experiment.space is not None)


def _load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml_load.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(err.problem or err.context or "syntax error").split())
        raise ConfigError("", f"invalid YAML{where}: {problem}", str(path)) from None
    except yaml.YAMLError as err:
        problem = " ".join(str(err).split())
        raise ConfigError("", f"invalid YAML: {problem}", str(path)) from None
    except RecursionError:
        raise ConfigError("", "invalid YAML: nested too deeply", str(path)) from None


def _training(data: Any) -> tuple[TrainingSettings, tuple[tuple[str, tuple], ...]]:
    """The training section, and its lists of tunable settings (``lr: [0.001, 0.003]``)
    as decisions: each choice checked as that setting would be."""
    fixed = dict(mapping(data, "training")) if data is not None else {}
    lists = {k: fixed.pop(k) for k in TUNABLE_TRAINING if isinstance(fixed.get(k), (list, tuple))}
    training = from_mapping(TrainingSettings, fixed, "training")
    tuned = []
    for name, values in lists.items():
        key = f"training.{name}"
        coerce = as_int if name == "batch_size" else as_float
        options = choices(values, key, coerce)
        for i, value in enumerate(options):
            try:
                dataclasses.replace(training, **{name: value}).validate("training")
            except ConfigError as err:
                raise ConfigError(f"{key}[{i}]", err.message) from None
        if len(options) == 1:
            training = dataclasses.replace(training, **{name: options[0]})
        else:
            tuned.append((name, options))
    return training, tuple(tuned)


def _parse(data: Any, source: Path | None, need_space: bool = True, recorded_in: str | None = None) -> Experiment:
    if data is None and not need_space:
        data = {}
    if data is None:
        raise ConfigError("", "empty experiment file; it needs at least a 'space' section")
    if not isinstance(data, dict):
        raise ConfigError("", f"expected a mapping of sections ({', '.join(SECTIONS)}), "
                              f"got {short(data)}")
    mapping(data, "")
    reject_unknown(data, SECTIONS, "")
    plugins = load_plugins(data.get("plugins"), source.parent.resolve() if source else None,
                           recorded_in=recorded_in)
    if "space" not in data and need_space:
        raise ConfigError("space", "missing required section (the search space)")
    space = parse_space(data["space"], "space") if "space" in data else None
    task = from_mapping(TaskSettings, data.get("task"), "task")
    training, tuned = _training(data.get("training"))
    if tuned:
        if not isinstance(space, ArchSpace):
            raise ConfigError(f"training.{tuned[0][0]}", "a list (a per-trial decision) needs an "
                              "architecture space, not a plain decisions space")
        space = dataclasses.replace(space, training=tuned)
    search = from_mapping(SearchSettings, data.get("search"), "search")
    evaluator = _evaluator(data.get("evaluator"))
    budget = search.budget
    if isinstance(space, DecisionSpace) and (budget.max_flops or budget.max_params):
        raise ConfigError("search.budget", "FLOPs/params budgets need an architecture space, "
                          "not a plain decisions space")
    if isinstance(space, ArchSpace) and evaluator.name:
        raise ConfigError("evaluator", "an evaluator scores a plain decision space; an "
                          "architecture space is trained (task, training)")
    return Experiment(space, task, training, search, source, data, evaluator, plugins)


def _evaluator(data: Any) -> EvaluatorSettings:
    """``evaluator: NAME`` or ``evaluator: {name: NAME, options: {...}}``; whether NAME
    is registered is checked where evaluators run (plugins may register it late)."""
    if isinstance(data, str):
        data = {"name": data}
    settings = from_mapping(EvaluatorSettings, data, "evaluator")
    if data is not None and not settings.name:
        raise ConfigError("evaluator.name", "must name a registered evaluator")
    return settings
