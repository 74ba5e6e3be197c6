"""Our Lightning system vs a plain PyTorch loop: same model, data, optimiser, steps.

    python -m benchmarks.lightning_overhead [--threads 1] [--steps 100 300] [--repeats 5]

The Lightning side is what ``fit`` runs for one experience: ``make_trainer`` +
``Trainer.fit(ContinualSystem)`` (Trainer construction included, no replay, no
curriculum). The plain side is the textbook loop over the same batch sampler:
forward, cross-entropy, backward, AdamW step. Runs alternate so machine load hits
both alike; times are process CPU seconds by default (``--wall`` for wall clock),
which a shared machine disturbs far less. The table shows medians and the overhead
(target <= 10%).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import TaskSettings, TrainingSettings, settings_dict
from dynas.trainers.curriculum import CurriculumBatchSampler
from dynas.trainers.evaluation import cross_entropy
from dynas.trainers.loop import make_trainer, quiet_lightning
from dynas.trainers.model import build_model
from dynas.trainers.system import ContinualSystem
from dynas.trainers.tasks import build_task

TARGET = 0.10
CLOCK = time.process_time    # CPU seconds: robust to other jobs on a shared machine


def arch_of(d_model: int, layers: int) -> ArchConfig:
    layer = LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2))
    return ArchConfig(d_model, (layer,) * layers)


def run_lightning(arch, task, cfg: TrainingSettings, steps: int) -> float:
    torch.manual_seed(0)
    system = ContinualSystem(arch.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                             [list(e.classes) for e in task.experiences], task.scenario)
    system.begin_experience(0, task.experiences[0], steps, 1, seed=1)
    start = CLOCK()
    with quiet_lightning():
        trainer = make_trainer(cfg, steps)
        trainer.fit(system)
    return CLOCK() - start


def run_plain(arch, task, cfg: TrainingSettings, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model(arch, task.shape)
    train = task.experiences[0].train
    x_all, y_all = train.tensors
    start = CLOCK()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for idx in CurriculumBatchSampler(len(train), cfg.batch_size, steps, seed=2):
        idx = torch.as_tensor(idx)
        x, y = x_all[idx], y_all[idx]
        loss = cross_entropy(model(x).logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return CLOCK() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, nargs="+", default=[100, 300])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--wall", action="store_true", help="time wall-clock instead of process CPU time")
    args = p.parse_args(argv)
    global CLOCK
    if args.wall:
        CLOCK = time.perf_counter
    torch.set_num_threads(args.threads)
    arch = arch_of(args.d_model, args.layers)
    task = build_task(TaskSettings("split_digits"), seed=0)
    cfg = TrainingSettings(batch_size=args.batch, device="cpu")
    rows = []
    for steps in args.steps:
        run_lightning(arch, task, cfg, steps)                    # warm-up both paths
        run_plain(arch, task, cfg, steps)
        light, plain = [], []
        for _ in range(args.repeats):
            light.append(run_lightning(arch, task, cfg, steps))
            plain.append(run_plain(arch, task, cfg, steps))
        lm, pm = statistics.median(light), statistics.median(plain)
        rows.append((steps, pm, lm, 1e3 * pm / steps, 1e3 * lm / steps, lm / pm - 1.0))
    print(f"\nLightning system vs plain loop: split_digits, d_model={args.d_model}, "
          f"layers={args.layers}, batch={args.batch}, threads={args.threads}, "
          f"median of {args.repeats}, {'wall' if args.wall else 'process CPU'} time\n")
    print("| steps | plain (s) | Lightning (s) | plain ms/step | Lightning ms/step | overhead |")
    print("|---:|---:|---:|---:|---:|---:|")
    for steps, pm, lm, pms, lms, over in rows:
        flag = "" if over <= TARGET else " (above target)"
        print(f"| {steps} | {pm:.3f} | {lm:.3f} | {pms:.2f} | {lms:.2f} | {100 * over:+.1f}%{flag} |")
    print(f"\ntarget: overhead <= {100 * TARGET:.0f}%")


if __name__ == "__main__":
    main()
