"""Resumable state on disk: one atomic write, one safe read, the RNG state they carry.

``fit``'s per-experience state, the supernet's training state and a trained supernet
all go through ``save_checkpoint``: written to a sibling temporary file, flushed to
disk (``fsync``) and moved over the old file with ``os.replace``, so a run killed at
any instant leaves either the previous state or the new one, never a torn file or a
stray temporary. States are plain tensors and containers, so ``load_checkpoint`` reads
them with ``torch.load(weights_only=True)``: loading a state runs no code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Callable

import torch

from dynas.search_space.errors import DynasError


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Replace ``path`` by what ``write(file)`` writes, atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:              # a full disk: leave the old file, not a temp file
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """``torch.save(state)`` to ``path`` through ``write_atomic``."""
    return write_atomic(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike, what: str) -> Any:
    """A saved state (tensors and plain containers only); a torn or foreign file is one
    ``DynasError`` line: ``PATH: unreadable WHAT (...)``."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a torn or foreign file is a user-facing problem
        raise DynasError(f"{path}: unreadable {what} ({type(err).__name__}: {err})") from None


def rng_state() -> dict:
    """The global torch RNG state (CUDA's too, where there is one), for a resumed run to
    draw what the uninterrupted one would have."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict | torch.Tensor) -> None:
    """Set what ``rng_state`` saved (a bare tensor: a supernet state of before CUDA was kept)."""
    if isinstance(state, torch.Tensor):
        state = {"torch": state, "cuda": []}
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
