"""Suite-wide settings: one thread per process, so timings and determinism hold on a
shared 2-core machine, and nothing touches a Ray cluster the user may be running."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

try:  # torch is a trainers dependency; search_space tests run without importing it
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
