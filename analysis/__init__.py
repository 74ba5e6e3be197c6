"""What a search learned: load run directories, Pareto fronts and hypervolume, plots,
a Markdown report, and the export of a chosen architecture.

Names resolve lazily (PEP 562): ``analysis.cli`` imports ``analysis.commands`` for
``dynas --help``, which must not pay for pandas and matplotlib. The command line
itself lives in ``analysis.cli`` and is not exported here.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "load_runs": "load", "run_objectives": "load", "as_objectives": "load",
    "non_dominated_sort": "pareto", "pareto_front": "pareto", "hypervolume": "pareto",
    "reference_point": "pareto", "running_hypervolume": "pareto", "knee_index": "pareto",
    "pick": "pareto",
    "plot_pareto": "plots", "plot_progress": "plots", "plot_choice_frequencies": "plots",
    "plot_expert_load": "plots", "plot_accuracy_matrix": "plots", "plot_confirmed": "plots",
    "seed_summary": "seeds",
    "write_report": "report",
    "export_arch": "export",
}

__all__ = [
    "as_objectives", "export_arch", "hypervolume", "knee_index", "load_runs",
    "non_dominated_sort", "pareto_front", "pick", "plot_accuracy_matrix",
    "plot_choice_frequencies", "plot_confirmed", "plot_expert_load", "plot_pareto", "plot_progress",
    "reference_point", "run_objectives", "running_hypervolume", "seed_summary", "write_report",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
