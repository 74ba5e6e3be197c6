"""``SuperNet``: every option of a space in one set of shared tensors, trained one
sampled path at a time (SPOS, Guo et al. 2020).

A path's module is a skeleton built on the ``meta`` device (no memory) whose
parameters are bound, each forward, to fresh slices of the shared tensors
(``supernet.sharing``), so gradients land in them and only the sampled path's slices
move. Which paths a step trains is its ``PathSampler``'s (``supernet.sampling``):
uniform by default; a training forward without a fixed path draws one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from dynas.search_space.arch import ArchConfig, TaskShape
from dynas.search_space.errors import ConfigError
from dynas.search_space.sharing import check_shareable
from dynas.search_space.space import ArchSpace

from ..model import build_model
from ..modules import MoE
from .sampling import Feasible, PathSampler
from .sharing import layout, named_tensors, share_key, spanning_archs, take

SKELETON_CACHE = 256                 # path skeletons kept (they hold no weights)


def _safe(key: str) -> str:
    """A sharing key as a module attribute name (``nn.Module`` names cannot hold dots)."""
    return key.replace(".", "/")


@dataclass
class _Path:
    """One sampled architecture's skeleton and where each of its tensors comes from."""

    arch: ArchConfig
    model: nn.Module
    slots: list[tuple[nn.Module, str, bool, str, tuple[int, ...], tuple[str, int], str]]


class SuperNet(nn.Module):
    """Every option of ``space`` in one set of shared tensors (module docstring).

    In training mode each forward draws a path (``sample``); ``use(arch)`` fixes the
    path for evaluation and for training one chosen architecture. ``shared_state()``
    is the plain key -> tensor mapping ``inherit`` reads.
    """

    def __init__(self, space: ArchSpace, shape: TaskShape, *, seed: int = 0,
                 feasible: Feasible | None = None, dropout: float = 0.0,
                 sampler: PathSampler | None = None):
        super().__init__()
        check_shareable(space)
        self.space, self.shape, self.dropout = space, shape, dropout
        self.sampler = sampler or PathSampler(space, feasible=feasible, seed=seed)
        self.uses_bias = any("bias" in dict(o.values).get("balance", ()) for o in space.ffn)
        self.path: ArchConfig | None = None
        self._paths: dict[str, _Path] = {}   # not submodules: skeletons hold no weights
        self._last: _Path | None = None
        self._trained: dict[str, _Path] = {}  # paths trained since the last router-bias step
        self.params = nn.ParameterDict()
        self.state = nn.Module()             # the shared buffers (router biases, loads)
        archs = spanning_archs(space, shape)
        self.widest = archs[0]               # a buildable architecture of the space (hparams)
        self._init_shared(archs)
        self.sampled = 0                     # paths drawn for training

    def _init_shared(self, archs: list[ArchConfig]) -> None:
        """One tensor per key at its widest shape over ``archs``, its values from a real
        model of that width (so the initialisation is each kind's own)."""
        widest: dict[str, tuple[tuple[int, ...], bool, bool]] = {}
        for arch in archs:                   # pass 1, on meta: the widest shape per key
            with torch.device("meta"):
                model = build_model(arch, self.shape)
            for name, module, attr, is_param, t in named_tensors(model):
                key = share_key(name, arch)
                size = tuple(t.shape)
                old = widest.get(key, (size, is_param, True))[0]
                persistent = is_param or attr not in module._non_persistent_buffers_set
                widest[key] = (tuple(max(a, b) for a, b in zip(old, size)), is_param, persistent)
        first: dict[str, tuple[Tensor, bool]] = {}
        for arch in archs:                   # pass 2: values from a real model of that width
            for name, _, _, is_param, t in named_tensors(build_model(arch, self.shape)):
                key = share_key(name, arch)
                have = first.get(key)
                if have is None or tuple(have[0].shape) != widest[key][0]:   # keep the widest seen
                    first[key] = (t.detach(), is_param)
        for key, (t, is_param) in first.items():  # widest along each axis in different options: grown
            size, _, persistent = widest[key]
            self._register(key, _grow(t, size), is_param, persistent)
        self.keys = sorted(widest)

    def _register(self, key: str, value: Tensor, is_param: bool, persistent: bool) -> None:
        if is_param:
            self.params[_safe(key)] = nn.Parameter(value.clone())
        else:
            self.state.register_buffer(_safe(key), value.clone(), persistent=persistent)

    def shared(self, key: str) -> Tensor:
        """The shared parameter or buffer of ``key``."""
        safe = _safe(key)
        return self.params[safe] if safe in self.params else getattr(self.state, safe)

    def shared_state(self) -> dict[str, Tensor]:
        """key -> a detached copy of every persistent shared tensor (a snapshot)."""
        out = {}
        for key in self.keys:
            safe = _safe(key)
            if safe in self.params or safe not in self.state._non_persistent_buffers_set:
                out[key] = self.shared(key).detach().clone()
        return out

    def load_shared_state(self, state: Mapping[str, Tensor]) -> None:
        """Copy a ``shared_state()`` snapshot back in place."""
        with torch.no_grad():
            for key, value in state.items():
                self.shared(key).copy_(value)

    # --- paths --------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        """Seed the path draws (per experience, from ``loop.experience_seed``)."""
        self.sampler.reseed(seed)

    def sample(self) -> ArchConfig:
        """A feasible path by the sampler's base rule (uniform or fair)."""
        return self.sampler.sample()

    def use(self, arch: ArchConfig | None) -> None:
        """Fix the path (None: draw one per training forward again)."""
        self.path = arch

    def forward(self, x: Tensor):
        arch = self.path
        if arch is None:
            if not self.training and self._last is not None:
                arch = self._last.arch       # curriculum scoring between steps: the last path
            else:
                arch = self.sample()
                self.sampled += 1
        path = self._bind(arch)
        return path.model(x)

    def _bind(self, arch: ArchConfig) -> _Path:
        """``arch``'s skeleton with fresh slices of the shared tensors bound in, so this
        forward's gradients land in the shared tensors."""
        path = self._paths.get(arch.arch_id)
        if path is None:
            path = self._paths[arch.arch_id] = self._skeleton(arch)
            if len(self._paths) > SKELETON_CACHE:
                self._paths.pop(next(iter(self._paths)))
        for module, attr, is_param, key, size, lay, name in path.slots:
            t = take(self.shared(key), size, lay, name)
            (module._parameters if is_param else module._buffers)[attr] = t
        path.model.train(self.training)
        self._last = path
        if self.training:
            self._trained[arch.arch_id] = path
        return path

    def _skeleton(self, arch: ArchConfig) -> _Path:
        """``arch``'s model on meta (no memory) and the key, shape and layout of each slot."""
        with torch.device("meta"):
            model = build_model(arch, self.shape)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = self.dropout
        slots = []
        for name, module, attr, is_param, t in named_tensors(model):
            key = share_key(name, arch)
            if _safe(key) not in self.params and not hasattr(self.state, _safe(key)):
                raise ConfigError(name, f"the supernet has no weights for {key}")
            slots.append((module, attr, is_param, key, tuple(t.shape),
                          layout(name, arch, tuple(t.shape)), name))
        return _Path(arch, model, slots)

    def update_router_biases(self, rate: float) -> None:
        """The DeepSeek-V3 bias step on the MoE layers of the paths trained since the
        last one (their bias and load buffers are views of the shared ones, so the step
        lands there; a load already applied through another path is zero and moves nothing)."""
        for path in self._trained.values():
            for module in path.model.modules():
                if isinstance(module, MoE):
                    module.update_router_bias(rate)
        self._trained.clear()


def _grow(t: Tensor, size: tuple[int, ...]) -> Tensor:
    """``t`` if it already has the widest ``size``; otherwise ``t`` as the leading block
    of a tensor of ``size`` whose rest is drawn from t's own spread."""
    if tuple(t.shape) == size:
        return t
    std = float(t.float().std()) if t.numel() > 1 else 0.02
    out = torch.randn(size, dtype=t.dtype) * std + (float(t.float().mean()) if t.numel() else 0.0)
    out[tuple(slice(0, s) for s in t.shape)] = t
    return out
