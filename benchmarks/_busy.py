"""A busy second core for contention benchmarks: another process looping matmuls."""
from __future__ import annotations

import contextlib
import multiprocessing as mp
from typing import Iterator


def _spin() -> None:
    """Loop 1-thread matmuls until terminated (what another user's job looks like)."""
    import torch
    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while True:
        a = (a @ a).clamp_(-1, 1)


@contextlib.contextmanager
def busy_core(active: bool = True) -> Iterator[None]:
    """While inside, one extra process keeps a core busy (nothing when not ``active``);
    it is terminated (by its own handle) on the way out."""
    if not active:
        yield
        return
    proc = mp.get_context("spawn").Process(target=_spin, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.terminate()
        proc.join()
