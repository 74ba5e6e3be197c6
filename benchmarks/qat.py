"""Quantisation-aware training vs post-training int8 at equal fine-tune steps.

    python -m benchmarks.qat [--seeds 3] [--steps 100] [--quick]

Per seed: the quickstart's architecture (``benchmarks.compress_int8.ARCHS``) trained on
its config (``examples/quickstart.yaml``) with that training seed; then four arms, all
measured on the test splits (mean over experiences of the final row of R):

- ``fp32``: the trained model;
- ``PTQ``: ``quantise`` of it, no fine-tune;
- ``float FT + PTQ``: ``--steps`` distillation steps in float (``recovery.recover`` on a
  class-balanced replay sample of every experience, as ``dynas compress`` uses), then
  ``quantise``;
- ``QAT + int8``: the same steps with fake quantisation (``prepare_qat``), converted,
  then ``quantise`` (``dynas compress --qat``).

Both fine-tuned arms draw the same batches (``recover``'s seed is the run's). The table:
mean ± std over seeds, and QAT minus float FT + PTQ per seed.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
from pathlib import Path

from benchmarks._timing import contention_probe, print_table, setup
from benchmarks.compress_int8 import ARCHS, EXAMPLES
from dynas.search_space.experiment import load_experiment
from dynas.trainers.compress import accuracy
from dynas.trainers.downstream import train_arch
from dynas.trainers.predict import load_model
from dynas.trainers.quantisation import convert_qat, prepare_qat, quantise
from dynas.trainers.recovery import recover, replay_sample
from dynas.trainers.recovery_settings import RecoverySettings
from dynas.trainers.tasks import build_task

ARMS = ("fp32", "PTQ", "float FT + PTQ", "QAT + int8")


def arms(seed: int, steps: int, train_steps: int | None, tmp: Path) -> dict[str, float]:
    experiment = load_experiment(EXAMPLES / "quickstart.yaml", need_space=False)
    training = dataclasses.replace(experiment.training, device="cpu")
    if train_steps is not None:
        training = dataclasses.replace(training, steps_per_experience=train_steps)
    train_arch(ARCHS["quickstart"], experiment.task, training, out_dir=tmp / f"seed{seed}", seed=seed)
    loaded = load_model(tmp / f"seed{seed}")
    model, scenario = loaded.model, loaded.bundle.scenario
    task = build_task(experiment.task, seed=training.seed)

    def acc(m) -> float:
        return 100 * accuracy(m, task, scenario, task.shape.num_classes)

    sample, settings = replay_sample(task, RecoverySettings.per_class), RecoverySettings(steps=steps)
    float_ft = copy.deepcopy(model)
    recover(float_ft, model, sample, settings, seed=seed)
    qat = prepare_qat(copy.deepcopy(model))
    recover(qat, model, sample, settings, seed=seed)
    return {"fp32": acc(model), "PTQ": acc(quantise(model)), "float FT + PTQ": acc(quantise(float_ft)),
            "QAT + int8": acc(quantise(convert_qat(qat)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="fine-tune steps of both fine-tuned arms")
    parser.add_argument("--train-steps", type=int, default=None, help="training steps per experience "
                        "(default: the config's)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 5 steps, 5 training steps (a smoke run)")
    args = parser.parse_args()
    setup(1)
    seeds, steps, train_steps = (2, 5, 5) if args.quick else (args.seeds, args.steps, args.train_steps)
    print(f"contention probe before: {contention_probe():.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [arms(seed, steps, train_steps, Path(tmp)) for seed in range(seeds)]
    rows = [(arm, statistics.mean(r[arm] for r in runs), statistics.stdev(r[arm] for r in runs),
             " ".join(f"{r[arm]:.2f}" for r in runs)) for arm in ARMS]
    print_table(f"quickstart, {steps} fine-tune steps, test accuracy % over {seeds} seeds",
                ("arm", "mean", "std", "per seed"), rows)
    print("QAT minus float FT + PTQ per seed:",
          " ".join(f"{r['QAT + int8'] - r['float FT + PTQ']:+.2f}" for r in runs))
    print(f"contention probe after: {contention_probe():.2f}")


if __name__ == "__main__":
    main()
