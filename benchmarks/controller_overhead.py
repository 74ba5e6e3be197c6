"""What the Ray Tune controller costs per trial: scheduling, searcher, records.

    python -m benchmarks.controller_overhead [--trials 24] [--concurrent 2] [--work 1.0]

The real ``PolicySearcher`` (random policy over a plain space large enough that it
never repeats) runs under ``ConcurrencyLimiter`` with the same ``tune_search`` that
``dynas search`` uses, records written durably to a temporary run directory. Two
trainables: a no-op (pure overhead) and one that sleeps ``--work`` seconds (to see
how busy the slots stay). Each trial times its own busy span.

- overhead s/trial = (wall - ideal) / trials, ideal = trials * work / concurrent;
  target <= 0.5 s.
- utilisation = sum of busy spans / (concurrent * wall); target >= 90% for the
  sleeping trainable. "steady" uses the span from the first trial start to the last
  record written, i.e. without Tune's start-up and the first worker's launch.
Ray's own start-up (``ray.init``) is shown apart: a search pays it once.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dynas.trainers.results import TrialMetrics
from dynas.controllers.policies import make_policy
from dynas.controllers.records import iter_records
from dynas.controllers.tune.executor import tune_search
from dynas.controllers.driver import SearchDriver
from dynas.controllers.results import tune_result
from dynas.controllers.tune.searcher import PolicySearcher
from dynas.search_space import names
from dynas.search_space.plain import parse_decision_space
from dynas.search_space.settings import Objective

OVERHEAD_TARGET_S = 0.5
UTILISATION_TARGET = 0.90
OBJECTIVES = (Objective(names.FINAL_AVG_ACCURACY, "max"),)
SPACE = {"decisions": {"a": {"low": 0, "high": 99}, "b": {"low": 0, "high": 99}, "c": [0, 1, 2, 3]}}


def sleeper(config: dict, work: float) -> None:
    """One report after ``work`` seconds; the busy span travels in the result."""
    from ray import tune

    start = time.time()
    if work > 0:
        time.sleep(work)
    tune.report(tune_result(TrialMetrics(values={names.FINAL_AVG_ACCURACY: config["arch"]["a"] / 100}, wall_time_s=time.time() - start), 1, 1))


def measure(trials: int, concurrent: int, work: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dynas-overhead-") as tmp:
        run_dir = Path(tmp)
        policy = make_policy("random", parse_decision_space(SPACE), OBJECTIVES, seed=0)
        searcher = PolicySearcher(SearchDriver(policy, run_dir, budget=trials))
        started = time.perf_counter()
        tune_search(searcher, sleeper, run_dir=run_dir, name="bench", concurrent=concurrent,
                    resources={"cpu": 1}, verbose=0, work=work)
        wall = time.perf_counter() - started
        records = [r for r in iter_records(run_dir) if r.cached_from is None]
    assert len(records) == trials and all(r.state == "complete" for r in records), \
        json.dumps([r.reason for r in records])
    busy = sum(r.wall_time_s for r in records)
    # the record is written when the driver processes the report: a (late) trial end
    steady = max(r.finished_at for r in records) - min(r.finished_at - r.wall_time_s for r in records)
    ideal = trials * work / concurrent
    return {"wall": wall, "ideal": ideal, "overhead": (wall - ideal) / trials,
            "util": busy / (concurrent * wall), "steady_util": busy / (concurrent * steady),
            "steady_overhead": (steady - ideal) / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--concurrent", type=int, default=2)
    parser.add_argument("--work", type=float, default=1.0, help="seconds each sleeping trial works")
    args = parser.parse_args()

    import ray

    from benchmarks._timing import print_table

    started = time.perf_counter()
    ray.init(address="local", num_cpus=args.concurrent, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    init_s = time.perf_counter() - started
    try:
        rows = []
        for label, work in (("no-op", 0.0), (f"sleep {args.work:g} s", args.work)):
            m = measure(args.trials, args.concurrent, work)
            rows.append((label, args.trials, args.concurrent, m["wall"], m["ideal"], m["overhead"],
                         m["steady_overhead"], f"{100 * m['util']:.1f}%", f"{100 * m['steady_util']:.1f}%"))
    finally:
        ray.shutdown()
    print_table(f"Ray Tune controller overhead (ray.init took {init_s:.1f} s, paid once per search)",
                ("trainable", "trials", "slots", "wall s", "ideal s", "overhead s/trial",
                 "steady s/trial", "utilisation", "steady util"), rows)
    print(f"targets: overhead <= {OVERHEAD_TARGET_S} s/trial, utilisation >= {UTILISATION_TARGET:.0%} "
          f"(sleeping trainable)")


if __name__ == "__main__":
    main()
