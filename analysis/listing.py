"""``dynas list tasks|kinds|strategies|metrics|evaluators``: what is registered now.

Built-ins and whatever the ``--plugin`` modules registered, from the registries
themselves (nothing is listed by hand): tasks (``trainers.tasks.TASKS``), attention /
FFN / router kinds (``search_space.kinds``, with whether ``trainers`` has a builder),
strategies (``controllers.policies.POLICIES``), metrics (``search_space.names`` plus
``trainers.metrics.METRICS``, plus what evaluators declare) and evaluators
(``search_space.evaluators.EVALUATORS``).
"""
from __future__ import annotations

import argparse
from typing import Callable

WHAT = ("tasks", "kinds", "strategies", "metrics", "evaluators")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list registered tasks, kinds, strategies, metrics or evaluators",
                       description="List what is registered: the built-ins and what --plugin "
                       "modules registered.")
    p.add_argument("what", choices=WHAT, help="which registry")
    p.add_argument("--options", action="store_true",
                   help="with tasks: each task's task.options keys and their defaults")
    p.set_defaults(handler=_list)


def _list(args: argparse.Namespace) -> int:
    if args.options and args.what != "tasks":
        from dynas.search_space.errors import ConfigError

        raise ConfigError("--options", f"lists task options: use it with `dynas list tasks`, not {args.what}")
    lines = tasks(options=True) if args.what == "tasks" and args.options else LISTERS[args.what]()
    for line in lines:
        print(line.rstrip())
    return 0


def tasks(options: bool = False) -> list[str]:
    """One line per task; with ``options`` each followed by its ``task.options`` keys."""
    from dynas.trainers.tasks import TASKS

    width = max(map(len, TASKS), default=0)
    out = []
    for name, spec in sorted(TASKS.items()):
        out.append(f"{name:<{width}}  {spec.description}")
        if options:
            defaults = spec.option_defaults()
            out += [f"    task.options.{key}: {value!r}" for key, value in defaults.items()] or \
                   ["    (no options)"]
    return out


def kinds() -> list[str]:
    from dynas.search_space.kinds import REGISTRIES
    from dynas.trainers.modules import BUILDERS      # importing the package registers every builder

    rows = []
    for family, registry in REGISTRIES.items():
        for name in registry:
            spec = registry.get(name)
            fields = ", ".join(n for n, _ in spec.fields) or "-"
            built = "" if name in BUILDERS[family].names() else "  (no builder in trainers)"
            rows.append((family, name, fields + built))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return [f"{f:<{width[0]}}  {n:<{width[1]}}  {rest}" for f, n, rest in rows]


def strategies() -> list[str]:
    from dynas.controllers.policies import POLICIES

    width = max(map(len, POLICIES), default=0)
    return [f"{name:<{width}}  {e.description or '(no description)'}"
            + (f"  (settings: search.{name})" if e.settings_cls else "") for name, e in POLICIES.items()]


def metrics() -> list[str]:
    from dynas.search_space import names
    from dynas.search_space.evaluators import EVALUATORS, load_builtin_evaluators
    from dynas.trainers.metrics import METRICS

    load_builtin_evaluators()
    rows = [(m, names.DESCRIPTIONS.get(m, "built-in")) for m in names.ALL_METRICS]
    rows += [(name, f"plugin: {entry.description}" if entry.description else "plugin")
             for name, entry in METRICS.items()]
    rows += [(m, f"evaluator {e.name}") for e in EVALUATORS.values() for m in e.metrics]
    width = max(len(r[0]) for r in rows)
    return [f"{m:<{width}}  {what}" for m, what in rows]


def evaluators() -> list[str]:
    from dynas.search_space.evaluators import EVALUATORS, load_builtin_evaluators

    load_builtin_evaluators()
    if not EVALUATORS:
        return ["(none registered; a plugin registers one with search_space.evaluators.register_evaluator)"]
    width = max(map(len, EVALUATORS))
    return [f"{name:<{width}}  {e.description}"
            + (f"  [metrics: {', '.join(e.metrics)}]" if e.metrics else "") for name, e in EVALUATORS.items()]


LISTERS: dict[str, Callable[[], list[str]]] = {
    "tasks": tasks, "kinds": kinds, "strategies": strategies, "metrics": metrics, "evaluators": evaluators}
