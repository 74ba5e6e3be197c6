"""Tasks: a stream of experiences for continual learning, and their registry.

A task factory is registered by name with a cheap ``shape`` function (no data loaded)
so the cost model and ``dynas space describe`` know the sequence length up front.
"""
from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Literal

from torch.utils.data import Dataset

from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError
from dynas.search_space.registry import Registry
from dynas.search_space.settings import TaskSettings


@dataclass
class Experience:
    """One step of the stream.

    Each split yields ``(x, y)``: x is (T, input_dim) float or (T,) long tokens; y is a
    long class index, or (T,) per-token labels with -100 where no loss applies.
    ``levels``: a difficulty level per train sample when the task defines one
    (synthetic tasks), else None and the curriculum scores difficulty itself.
    ``raw_test``: the test split's inputs before the task's preprocessing (what a
    ``Predictor`` takes), in the test split's order; None when the task has no raw form.
    """

    index: int
    classes: tuple[int, ...]          # labels this experience introduces / uses
    train: Dataset
    val: Dataset
    test: Dataset
    levels: Any = None                # LongTensor (len(train),) or None
    raw_test: Any = None


@dataclass
class Task:
    """``preprocessing``: the fitted transformation from raw inputs to model inputs
    (``tasks.preprocessing``), saved with exported weights and applied by ``Predictor``.
    ``options`` and ``seed``: what ``build_task`` built it from (None for a task made
    by other means), saved in a model folder so the same data can be rebuilt
    (``dynas inspect --example``)."""

    name: str
    shape: TaskShape
    experiences: list[Experience]
    scenario: Literal["class_il", "task_il", "domain_il"] = "class_il"
    preprocessing: Any = None
    options: dict[str, Any] | None = None
    seed: int | None = None

    @property
    def num_experiences(self) -> int:
        return len(self.experiences)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of a uniform guess, the floor a result must clear: 1/classes when
        predictions range over every class (class- and domain-incremental), the mean
        of 1/classes-per-experience when each experience is scored on its own classes
        (task-incremental)."""
        if self.scenario == "task_il":
            return sum(1.0 / max(1, len(e.classes)) for e in self.experiences) / max(1, len(self.experiences))
        return 1.0 / max(1, self.shape.num_classes)


@dataclass(frozen=True)
class TaskSpec:
    factory: Callable[..., Task]          # factory(seed=..., **options) -> Task
    shape: Callable[..., TaskShape]       # shape(**options) -> TaskShape, no data loaded
    description: str = ""
    options: type | None = None           # the options dataclass (its fields: task.options keys)

    def option_defaults(self) -> dict[str, Any]:
        """``task.options`` keys -> defaults: the options dataclass's fields, else the
        shape function's named keyword parameters (a plugin without a class)."""
        if self.options is not None and dataclasses.is_dataclass(self.options):
            return {f.name: (f.default if f.default is not dataclasses.MISSING else
                             f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
                    for f in dataclasses.fields(self.options) if f.init}
        params = inspect.signature(self.shape).parameters.values()
        return {p.name: (None if p.default is p.empty else p.default) for p in params
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


TASKS: Registry[TaskSpec] = Registry(
    "task", key="task.name", contract="factory(seed=..., **options) -> Task; shape(**options) -> TaskShape")


def register_task(name: str, shape: Callable[..., TaskShape], description: str = "",
                  options: type | None = None):
    """Decorator: ``@register_task("my_task", shape=my_shape, options=MyOptions)`` on a
    factory; a name that is already registered is refused (a plugin cannot silently
    replace a task). ``options``: the dataclass of its ``task.options`` (listed by
    ``dynas list tasks --options`` and in an unknown option's error)."""

    def wrap(factory: Callable[..., Task]) -> Callable[..., Task]:
        TASKS.register(name, TaskSpec(factory, shape, description, options))
        return factory

    return wrap


def unregister_task(name: str) -> None:
    TASKS.unregister(name)


def _call(fn: Callable[..., Any], settings: TaskSettings, **extra: Any) -> Any:
    try:
        return fn(**settings.options, **extra)
    except TypeError as err:  # unknown keyword -> name it as a config key
        msg = str(err)
        if "unexpected keyword argument" in msg:
            bad = msg.split("'")[-2]
            known = ", ".join(TASKS.get(settings.name).option_defaults()) or "none"
            raise ConfigError(f"task.options.{bad}", f"unknown option for task {settings.name!r}; "
                              f"known: {known}") from None
        raise


def task_shape(settings: TaskSettings) -> TaskShape:
    return _call(TASKS.get(settings.name).shape, settings)


def build_task(settings: TaskSettings, seed: int = 0) -> Task:
    task = _call(TASKS.get(settings.name).factory, settings, seed=seed)
    task.options, task.seed = dict(settings.options), seed
    return task
