"""Shared timing helpers for the benchmark scripts (plain scripts, not tests)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def setup(threads: int, seed: int = 0) -> None:
    """Fix the thread count and seed so figures are comparable within a run."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)


def synchronizer(device: torch.device | str) -> Callable[[], None]:
    """What waits for ``device`` to finish its queued work (CUDA runs asynchronously:
    without it a timer measures only the kernel launches)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def where(device: torch.device | str, threads: int | None) -> str:
    """The part of a table's title that says what ran it."""
    return f"threads={threads}" if torch.device(device).type == "cpu" else f"device={device}"


def median_seconds(fns: dict[str, Callable[[], object]], warmup: int = 2,
                   repeats: int = 5, sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median wall time of each ``fn()``, timed round-robin after ``warmup`` rounds;
    ``sync`` (``synchronizer(device)``) runs before the clock starts and stops.

    Interleaving the candidates spreads the load of a shared machine evenly over them,
    so their ratio is fairer than that of back-to-back blocks of runs.
    """
    return median_wall_and_cpu(fns, warmup, repeats, sync)[0]


def median_wall_and_cpu(fns: dict[str, Callable[[], object]], warmup: int = 2, repeats: int = 5,
                        sync: Callable[[], None] = lambda: None
                        ) -> tuple[dict[str, float], dict[str, float]]:
    """(median wall seconds, median process CPU seconds) of each ``fn()``, round-robin
    as in ``median_seconds``. On an oversubscribed machine the wall clock also counts
    the time spent waiting for a core; the CPU clock counts only the work done (all
    threads together), so it is the steadier ratio of the two."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return ({name: statistics.median(ts) for name, ts in wall.items()},
            {name: statistics.median(ts) for name, ts in cpu.items()})


def forward_backward(module: torch.nn.Module, x: torch.Tensor,
                     output: Callable[[object], torch.Tensor] = lambda out: out):
    """A closure running one forward and backward of ``module`` on ``x``."""
    def step() -> None:
        module.zero_grad(set_to_none=True)
        output(module(x)).float().square().mean().backward()
    return step


def print_table(title: str, header: tuple[str, ...], rows: list[tuple]) -> None:
    """A fixed-width table; floats get 4 significant digits."""
    cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def contention_probe(pieces: int = 16) -> float:
    """Time of ``pieces`` small matmuls over that of one matmul with the same FLOPs.

    About 1 on a quiet machine. On an oversubscribed one, every small op waits for
    its OpenMP team to be scheduled, and layers made of many ops (an MoE's expert
    loop) slow down far more than layers of few big ones; print this beside figures.
    """
    a, w = torch.randn(pieces * 512, 256), torch.randn(256, 512)
    parts = a.split(512)
    times = median_seconds({"one": lambda: a @ w, "many": lambda: [p @ w for p in parts]},
                           warmup=1, repeats=9)
    return times["many"] / times["one"]
