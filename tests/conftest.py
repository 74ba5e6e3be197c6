"""Suite-wide settings: one thread per process, so timings and determinism hold on a
shared 2-core machine, and nothing touches a Ray cluster the user may be running.

``--device cuda`` runs the tests that take the ``device`` fixture (marked ``device``
automatically: ``pytest -m device --device cuda`` selects them) on the GPU; where
torch sees no CUDA device they skip, saying so. The default is ``cpu``.
"""
import importlib.abc
import os
import sys

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")

try:  # torch is a trainers dependency; search_space tests run without importing it
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None


class _BareLayerImports(importlib.abc.MetaPathFinder):
    """``import analysis`` (not ``dynas.analysis``) works by accident from the repository
    root, loading a second copy of the layer whose registries are not dynas's: code the
    tests run in-process (plugins written by a test) fails loudly instead."""

    LAYERS = ("search_space", "trainers", "controllers", "analysis")

    def find_spec(self, fullname, path=None, target=None):
        if path is None and fullname in self.LAYERS:
            raise ImportError(f"import dynas.{fullname}, not {fullname}: the layers install under dynas")
        return None


sys.meta_path.insert(0, _BareLayerImports())


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", choices=("cpu", "cuda"),
                     help="where tests taking the `device` fixture run (default: cpu)")


def pytest_configure(config):
    config.addinivalue_line("markers", "device: takes the `device` fixture (--device cpu|cuda)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture
def device(request):
    """The torch device of ``--device``; a cuda run without CUDA skips with the reason."""
    name = request.config.getoption("--device")
    if name == "cuda" and not (torch is not None and torch.cuda.is_available()):
        pytest.skip("--device cuda: torch sees no CUDA device")
    return torch.device(name)
