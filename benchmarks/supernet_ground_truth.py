"""The stand-alone ground truth a supernet's ranking is judged against, cached to a file.

    nice -n 19 python -m benchmarks.supernet_ground_truth [--config examples/quickstart.yaml]
        [--archs 24] [--seeds 2] [--budget 4] [--seed 0] [--skip 0] [--out docs/supernet_ground_truth_4x.json]

``--archs`` distinct feasible architectures drawn uniformly (``supernet_ranking.draw``,
``RandomSuggester(--seed)``), each trained stand-alone with ``trainers.fit`` at
``--budget`` x the training section's steps per experience with training seeds
0 .. ``--seeds``-1 (the ground truth and its noise ceiling), and once at the file's own
budget with seed 0 (what a search at that budget would rank by). A search deploys the
longer-trained model, so that is the ranking a supernet must reproduce.

Trainings are expensive (minutes each on one thread), so the file is written after
every one and a rerun with the same arguments trains only what is missing; the order is
architecture by architecture (every seed of one before the next), so a run cut short
still holds whole architectures. ``benchmarks.supernet_ranking --truth FILE`` reads it.
A calibration run (``dynas calibrate``) measures the same draw through the search's
executors and is the truth to use (``--truth RUN_DIR``): this script stays only to read
and extend the files measured with it (``docs/supernet_ground_truth_4x*.json``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynas.search_space import names  # noqa: E402
from dynas.search_space.experiment import load_experiment  # noqa: E402
from dynas.trainers.fitting import fit  # noqa: E402
from dynas.trainers.tasks import build_task  # noqa: E402

ACC, TEST_ACC, FLOPS = names.FINAL_AVG_ACCURACY, names.as_test(names.FINAL_AVG_ACCURACY), names.FLOPS


def draw(space, shape, n: int, seed: int) -> list:
    from benchmarks.supernet_ranking import draw as _draw

    return _draw(space, shape, n, seed)


def plan(args) -> dict:
    """What the file is a measurement of (a rerun must match it to continue it)."""
    return {"config": args.config, "arch_seed": args.seed, "budget": args.budget, "seeds": list(range(args.seeds)),
            "command": "nice -n 19 python -m benchmarks.supernet_ground_truth " + " ".join(sys.argv[1:])}


def load(path: Path, wanted: dict) -> dict:
    if not path.is_file():
        return {**wanted, "archs": []}
    data = json.loads(path.read_text())
    for key in ("config", "arch_seed", "budget"):
        if data.get(key) != wanted[key]:
            raise SystemExit(f"{path}: measured with {key} {data.get(key)!r}, not {wanted[key]!r}; "
                             "write another --out")
    data["seeds"] = sorted(set(data["seeds"]) | set(wanted["seeds"]))
    return data


def save(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def measured(m) -> dict:
    return {"val": m.values[ACC], "test": m.values[TEST_ACC], "flops": m.values[FLOPS],
            "wall_s": round(m.wall_time_s, 2)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="examples/quickstart.yaml")
    p.add_argument("--archs", type=int, default=24)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--budget", type=int, default=4, help="multiple of training.steps_per_experience")
    p.add_argument("--seed", type=int, default=0, help="of the architecture draw")
    p.add_argument("--skip", type=int, default=0,
                   help="start at this index of the draw (a second process measures another part, "
                        "into another --out; supernet_ranking --truth reads both)")
    p.add_argument("--out", type=Path, default=Path("docs/supernet_ground_truth_4x.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    exp = load_experiment(args.config)
    long = dataclasses.replace(exp.training, steps_per_experience=args.budget * exp.training.steps_per_experience)
    task = build_task(exp.task, seed=exp.training.seed)
    archs = draw(exp.space, task.shape, args.archs, args.seed)
    data = load(args.out, plan(args))
    data["steps_per_experience"] = {"x1": exp.training.steps_per_experience, f"x{args.budget}": long.steps_per_experience}
    have = {a["arch_id"]: a for a in data["archs"]}
    t0 = time.perf_counter()
    for arch in archs[args.skip:]:
        entry = have.get(arch.arch_id)
        if entry is None:
            entry = have[arch.arch_id] = {"arch_id": arch.arch_id, "summary": arch.summary(),
                                          "arch": arch.to_dict(), "x1": {}, f"x{args.budget}": {}}
            data["archs"].append(entry)
        jobs = [(f"x{args.budget}", long, s) for s in range(args.seeds)] + [("x1", exp.training, 0)]
        for budget, cfg, s in jobs:
            if str(s) in entry[budget]:
                continue
            entry[budget][str(s)] = measured(fit(arch, task, cfg, seed=s))
            save(args.out, data)
            print(f"[{time.perf_counter() - t0:6.0f}s] {arch.summary()} {budget} seed {s}: "
                  f"val {entry[budget][str(s)]['val']:.3f} ({entry[budget][str(s)]['wall_s']:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
