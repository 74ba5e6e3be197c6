"""trainers: turning an ``ArchConfig`` into numbers (torch + Lightning; no Ray).

Names are imported on first use (PEP 562), so ``trainers.commands`` -- and with it
``dynas --help`` -- loads without torch or Lightning::

    from trainers import ArchConfig, TaskSettings, TrainingSettings, build_task, fit
    metrics = fit(ArchConfig.load("arch.json"), build_task(TaskSettings("split_digits")), TrainingSettings())

(the three config types are re-exported from ``search_space`` for that purpose).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "fit": "trainers.fitting",
    "evaluate_checkpoint": "trainers.downstream",
    "train_arch": "trainers.downstream",
    "build_model": "trainers.model",
    "load_model": "trainers.predict",
    "Predictor": "trainers.predict",
    "builder": "trainers.modules.registry",
    "ModelOutput": "trainers.model",
    "ContinualSystem": "trainers.system",
    "build_task": "trainers.tasks",
    "task_shape": "trainers.tasks",
    "register_task": "trainers.tasks",
    "ReplayBuffer": "trainers.replay",
    "continual_metrics": "trainers.continual",
    "ArchConfig": "search_space.arch",
    "TaskSettings": "search_space.settings",
    "TrainingSettings": "search_space.settings",
    "TrialMetrics": "trainers.results",
    "ExperienceProgress": "trainers.results",
    "FitCallback": "trainers.results",
    "NonFiniteLoss": "trainers.results",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
