"""An evaluator of your own, for a plain decision space: a function of the decisions.

A made-up model of a training run's accuracy and cost from its hyper-parameters, so a
search strategy can be studied in seconds. Registered on import as ``toy_trainer``.
"""
import math

from dynas.search_space.evaluators import register_evaluator


@register_evaluator("toy_trainer", metrics=("val_accuracy", "cost"))
def toy_trainer(decisions: dict, noise: float = 0.0) -> dict:
    """Accuracy peaks at width 64, depth 3, dropout 0.1; cost grows with width x depth."""
    width, depth, dropout = decisions["width"], decisions["depth"], decisions["dropout"]
    acc = 0.9 - 0.1 * (math.log2(width / 64)) ** 2 - 0.03 * (depth - 3) ** 2 - 0.5 * (dropout - 0.1) ** 2
    acc += {"adam": 0.02, "adamw": 0.03, "sgd": 0.0}[decisions["optimizer"]]
    acc += noise * math.sin(width * 7.0 + depth)           # deterministic "noise"
    return {"val_accuracy": acc, "cost": float(width * depth * decisions["epochs"])}
