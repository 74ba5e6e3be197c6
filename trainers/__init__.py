"""trainers: turning an ``ArchConfig`` into numbers (torch + Lightning; no Ray).

Names are imported on first use (PEP 562), so ``trainers.commands`` -- and with it
``dynas --help`` -- loads without torch or Lightning::

    from dynas.trainers import ArchConfig, TaskSettings, TrainingSettings, build_task, fit
    metrics = fit(ArchConfig.load("arch.json"), build_task(TaskSettings("split_digits")), TrainingSettings())

(the three config types are re-exported from ``search_space`` for that purpose).
"""
from __future__ import annotations

import importlib

_LAZY = {
    "fit": "dynas.trainers.fitting",
    "evaluate_checkpoint": "dynas.trainers.downstream",
    "train_arch": "dynas.trainers.downstream",
    "build_model": "dynas.trainers.model",
    "load_model": "dynas.trainers.predict",
    "Predictor": "dynas.trainers.predict",
    "builder": "dynas.trainers.modules.registry",
    "ModelOutput": "dynas.trainers.output",
    "ContinualSystem": "dynas.trainers.system",
    "build_task": "dynas.trainers.tasks",
    "task_shape": "dynas.trainers.tasks",
    "register_task": "dynas.trainers.tasks",
    "ReplayBuffer": "dynas.trainers.replay",
    "continual_metrics": "dynas.trainers.continual",
    "ArchConfig": "dynas.search_space.arch",
    "TaskSettings": "dynas.search_space.settings",
    "TrainingSettings": "dynas.search_space.settings",
    "TrialMetrics": "dynas.trainers.results",
    "ExperienceProgress": "dynas.trainers.results",
    "FitCallback": "dynas.trainers.results",
    "NonFiniteLoss": "dynas.trainers.results",
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
