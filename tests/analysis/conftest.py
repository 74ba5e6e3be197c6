"""Run directories written the way the search writes them (run.json + trials.jsonl via
``append_record``), with synthetic but plausible trials: analysis reads only records.

Tests reach the helpers through the ``runs`` fixture (works in any pytest import mode).
"""
from __future__ import annotations

import random
import time
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import pytest

from dynas.trainers.results import TrialMetrics
from dynas.controllers.records import RUN_FILE, TrialRecord, append_record, write_json_atomic
from dynas.search_space import names
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig

DEFAULT_OBJECTIVES = [{"metric": names.FINAL_AVG_ACCURACY, "direction": "max"},
                      {"metric": names.FLOPS, "direction": "min"}]


def write_run(run_dir: Path, records: list[TrialRecord], *, name: str | None = None,
              strategy: str = "random", objectives: list[dict] | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / RUN_FILE, {
        "name": name or run_dir.name, "strategy": strategy, "trials": len(records), "seed": 0,
        "experiment": "experiment.yaml", "dynas_version": "0.1.0", "created": time.time(),
        "objectives": objectives or DEFAULT_OBJECTIVES})
    for record in records:
        append_record(run_dir, record)
    return run_dir


def tiny_arch(d_model: int = 32, kinds: tuple[tuple[str, str], ...] = (("full", "dense"),)) -> ArchConfig:
    layers = []
    for attn, ffn in kinds:
        attention = AttentionConfig(attn, heads=2, window=8 if attn == "sliding_window" else 0,
                                    max_span=32 if attn == "dynamic_span" else 0)
        if ffn == "moe":
            f = FFNConfig("moe", expansion=2, experts=4, router=RouterConfig("topk", 2))
        else:
            f = FFNConfig("dense", expansion=2)
        layers.append(LayerConfig(attention, f))
    return ArchConfig(d_model, tuple(layers))


def record(pid: int, arch: ArchConfig | dict, acc: float | None, flops: float | None, *,
           state: str = "complete", reason: str | None = None, **metrics: float) -> TrialRecord:
    """One record with the two default objectives (``None`` leaves a metric out)."""
    arch_dict = arch.to_dict() if isinstance(arch, ArchConfig) else arch
    arch_id = arch.arch_id if isinstance(arch, ArchConfig) else f"a{pid:011d}"
    m = dict(metrics)
    if acc is not None:
        m[names.FINAL_AVG_ACCURACY] = acc
    if flops is not None:
        m[names.FLOPS] = flops
    return TrialRecord(proposal_id=pid, arch_id=arch_id, arch=arch_dict, params={"pid": pid}, state=state,
                       measured=TrialMetrics(values=m, wall_time_s=1.5), reason=reason, policy="random",
                       seed=pid)


def synthetic_records(n: int, seed: int = 0, fail_every: int = 7) -> list[TrialRecord]:
    """A search's worth of transformer trials: accuracy rises with log-FLOPs plus noise,
    every ``fail_every``-th trial fails, some are pruned; MoE trials log expert load."""
    rng = random.Random(seed)
    out = []
    for pid in range(n):
        d_model = rng.choice([32, 64, 128])
        kinds = tuple((rng.choice(["full", "sliding_window", "dynamic_span", "linear"]),
                       rng.choice(["dense", "moe"])) for _ in range(rng.randint(1, 4)))
        arch = tiny_arch(d_model, kinds)
        flops = sum(2 * 64 * d_model * d_model * (8 if f == "dense" else 6) for _, f in kinds)
        acc = min(0.98, 0.25 + 0.06 * (len(kinds) + d_model / 32) + rng.gauss(0, 0.06))
        params = {"layers": len(kinds), "d_model": d_model, "attention.0": kinds[0][0]}
        if fail_every and pid % fail_every == fail_every - 1:
            reason = rng.choice(["NonFiniteLoss: loss became nan at step 12",
                                 "CUDA out of memory", "NonFiniteLoss: loss became nan at step 12"])
            out.append(TrialRecord(pid, arch.arch_id, arch.to_dict(), params, "failed",
                                   TrialMetrics(wall_time_s=0.4), reason=reason, policy="random", seed=pid))
            continue
        state = "pruned" if pid % 11 == 5 else "complete"
        tasks = 3 if state == "complete" else 1
        matrix = [[max(0.0, min(1.0, acc + 0.1 - 0.08 * (i - j) + rng.gauss(0, 0.02))) if j <= i
                   else rng.uniform(0.0, 0.2) for j in range(3)] for i in range(3)]
        load = {f"layers.{i}.ffn": [rng.uniform(0.2, 1.0) * 100 for _ in range(4)]
                for i, (_, f) in enumerate(kinds) if f == "moe"}
        measured = TrialMetrics(values={names.FINAL_AVG_ACCURACY: acc, names.FLOPS: float(flops),
                                        names.PARAMS: float(flops / 128),
                                        names.FORGETTING_LAST: rng.uniform(0, 0.3)},
                                acc_matrix=matrix[:tasks], expert_load=load, wall_time_s=rng.uniform(2, 20))
        out.append(TrialRecord(pid, arch.arch_id, arch.to_dict(), params, state, measured,
                               objectives=[acc, float(flops)],
                               reason="pruned by ASHA at experience 1" if state == "pruned" else None,
                               policy="random", seed=pid, experiences_done=tasks))
    return out


@pytest.fixture
def runs(tmp_path):
    """``runs.make(folder, records, name=..., strategy=..., objectives=...)`` -> a run dir under
    tmp_path; ``runs.record``, ``runs.tiny_arch``, ``runs.synthetic`` build records."""
    def make(folder: str, records: list[TrialRecord], **kw: Any) -> Path:
        return write_run(tmp_path / folder, records, **kw)
    return SimpleNamespace(make=make, record=record, tiny_arch=tiny_arch,
                           synthetic=synthetic_records, tmp=tmp_path)
