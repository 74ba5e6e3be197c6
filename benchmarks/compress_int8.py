"""``dynas compress --int8`` on models of the example configs: fp32 vs int8, as users load them.

    python -m benchmarks.compress_int8 [--quick] [--configs quickstart text_search] [--repeats 15]

Per config (``examples/<name>.yaml``: its task and training settings): one architecture
of its space (``ARCHS``; the largest choices, an MoE layer among them) is trained with
``train_arch``; ``compress`` writes the int8 folder and times the folder as loaded back
(its table: fp32 vs int8, batch 1 and 64). Then, in the same process on the same
threads, the int8 variants considered are timed round-robin against fp32:

- ``int8 (dynas)``: the shipped one (``trainers.quantisation``), loaded from the folder;
- ``torchao dyn-act int8 (eager)``: ``quantize_(Int8DynamicActivationInt8WeightConfig())``;
- ``torchao weight-only int8 (eager)``: ``quantize_(Int8WeightOnlyConfig())``.

Latency: median of ``--repeats`` round-robin passes after 3 warm-up rounds, threads fixed
(``--threads``, default 1); accuracy: test accuracy, mean over experiences. The
contention probe (``benchmarks._timing``) is printed before and after: ~1 on a quiet
machine. Targets: int8 >= 1.3x faster at batch 64, <= 1 point accuracy lost, >= 2x smaller.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
from pathlib import Path

import torch

from benchmarks._timing import contention_probe, print_table, setup
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig
from dynas.search_space.experiment import load_experiment
from dynas.trainers.compress import accuracy, compress, table
from dynas.trainers.downstream import train_arch
from dynas.trainers.latency import example_input, interleaved_latency_ms
from dynas.trainers.predict import load_model
from dynas.trainers.pruning import PruneSpec
from dynas.trainers.quantisation import torchao
from dynas.trainers.recovery_settings import RecoverySettings
from dynas.trainers.tasks import build_task

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARCHS = {   # the largest choices of each config's space, one MoE layer
    "quickstart": ArchConfig(64, (
        LayerConfig(AttentionConfig("full", 4), FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2),
                                                          shared_experts=1)),
        LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2)))),
    "text_search": ArchConfig(64, (
        LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2)),
        LayerConfig(AttentionConfig("sliding_window", 4, window=64),
                    FFNConfig("moe", expansion=1, experts=4, router=RouterConfig("topk", 2)))))}
BATCHES = (1, 64)


def torchao_variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    ao = torchao()
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    out = {}
    for name, config in (("torchao dyn-act int8 (eager)", Int8DynamicActivationInt8WeightConfig()),
                         ("torchao weight-only int8 (eager)", Int8WeightOnlyConfig())):
        out[name] = copy.deepcopy(model)
        ao.quantize_(out[name], config)
    return out


def run(name: str, steps: int | None, repeats: int, tmp: Path) -> None:
    experiment = load_experiment(EXAMPLES / f"{name}.yaml", need_space=False)
    training = dataclasses.replace(experiment.training, device="cpu")
    if steps is not None:
        training = dataclasses.replace(training, steps_per_experience=steps)
    model_dir, out = tmp / name, tmp / f"{name}-int8"
    metrics = train_arch(ARCHS[name], experiment.task, training, out_dir=model_dir)
    task = build_task(experiment.task, seed=training.seed)
    print(f"\n## {name}: {ARCHS[name].arch_id}, {training.steps_per_experience} steps x "
          f"{task.num_experiences} experiences, final_avg_accuracy {metrics.values['final_avg_accuracy']:.4f}")
    rows = compress(model_dir, task, out, PruneSpec(), True, RecoverySettings(steps=0), repeats,
                    latency_batches=BATCHES)
    print(f"\n### dynas compress --int8 (the table it prints)\n{table(rows)}")
    fp32, scenario = load_model(model_dir).model, load_model(model_dir).bundle.scenario
    models = {"fp32": fp32, "int8 (dynas)": load_model(out).model, **torchao_variants(fp32)}
    times = {b: interleaved_latency_ms(models, example_input(task.shape, b), repeats) for b in BATCHES}
    acc = {k: accuracy(m, task, scenario, task.shape.num_classes) for k, m in models.items()}
    rows_out = [(k, *(v for b in BATCHES for v in (times[b][k], times[b]["fp32"] / times[b][k])),
                 100 * acc[k], 100 * (acc[k] - acc["fp32"])) for k in models]
    header = ("variant", *(h for b in BATCHES for h in (f"b{b} ms", f"b{b} x")), "acc %", "d acc")
    print_table(f"### {name}: variants, threads={torch.get_num_threads()}, median of {repeats}", header, rows_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 training steps, 3 repeats (a smoke run)")
    parser.add_argument("--configs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    parser.add_argument("--steps", type=int, default=None, help="training steps per experience (default: the config's)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    setup(args.threads)
    steps, repeats = (5, 3) if args.quick else (args.steps, args.repeats)
    print(f"contention probe before: {contention_probe():.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            run(name, steps, repeats, Path(tmp))
    print(f"\ncontention probe after: {contention_probe():.2f}")


if __name__ == "__main__":
    main()
