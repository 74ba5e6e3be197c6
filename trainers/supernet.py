"""Weight sharing: one supernet over an ``ArchSpace`` scores candidates without training them.

Once-for-All and AutoFormer style. ``SuperNet`` holds one tensor per *sharing key* at
the widest shape any candidate of the space needs; a candidate's every parameter is
the leading slice of its key's tensor (``d_model``, hidden widths, expert counts,
per-head spans shrink by slicing; depth is the first L layers). Keys keep apart what
must not be shared and share what may:

- per layer and per kind: ``layers.0.attn[full].proj.qkv.weight`` and
  ``layers.0.attn[sliding_window]....`` are different tensors; two options of one kind
  (``heads: [2, 4]``, ``window: [4, 8]``) share one. A MoE is keyed by its expert kind
  (``ffn[moe/dense]``); its router kinds share the gate.
- the block's own norms per layer (``layers.0.norm_ffn``), the ends per kind that shapes
  them: the stem by (tokens, stem), positions by (tokens, head), the head by
  (head, tokens), the final norm once.

Two layouts are not plain leading blocks: a fused qkv projection is sliced per q, k
and v (``(3, D, D)[:, :d, :d]``), and a ``flatten`` head per token (``(C, T, D)[..., :d]``).

Training (SPOS, Guo et al. 2020): ``train_supernet`` runs the task stream through the
same ``ContinualSystem`` as a stand-alone trial (curriculum, replay, aux losses, one
fresh optimiser per experience), and every step trains one path drawn uniformly per
decision (``RandomSuggester``), resampled until feasible. A path's module is a
skeleton built on the ``meta`` device (no memory) whose parameters are bound, each
forward, to fresh slices of the shared tensors, so gradients land in them and only the
sampled path's slices move. After each experience the shared tensors are snapshotted.

Scoring (``evaluate_inherited``): candidate i's model after experience k is a real
``build_model`` loaded with its slices of snapshot k, so the inherited R_val / R_test
are full accuracy matrices and every continual metric means what it means for a
stand-alone trial; cost, effective cost, bits and plugin metrics are measured the same
way. ``finetune_steps`` > 0 instead trains the inherited final weights briefly
through the stream (``fit`` with ``init``).

Which kinds may be shared: ``search_space.sharing`` (``KindSpec.slices``). A
parameter wider than its key's tensor (a kind that said it slices but does not) is a
``ConfigError`` naming it, never a silent truncation.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from dynas.search_space.arch import ArchConfig, LayerConfig, TaskShape
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.kinds import REGISTRIES
from dynas.search_space.settings import SupernetSettings, TrainingSettings, settings_dict
from dynas.search_space.sharing import check_shareable
from dynas.search_space.space import ArchSpace, Option
from dynas.search_space.suggest import RandomSuggester

from .model import build_model
from .modules import MoE
from .results import TrialMetrics

SUPERNET_FILE = "supernet.pt"        # the trained supernet: snapshots after each experience
STATE_FILE = "supernet-resume.pt"    # resumable training state, per experience
FORMAT = 1
MAX_RESAMPLE = 200                   # draws before giving up on a feasible path
SKELETON_CACHE = 256                 # path skeletons kept (they hold no weights)

Feasible = Callable[[ArchConfig], "tuple[bool, str]"]


# --- keys and slices ----------------------------------------------------------------
def ffn_tag(ffn) -> str:
    """What keys an FFN's weights: its kind, and a MoE's expert kind."""
    return f"moe/{ffn.expert}" if ffn.kind == "moe" else ffn.kind


def share_key(name: str, arch: ArchConfig) -> str:
    """The shared tensor a parameter (or buffer) ``name`` of ``arch``'s model slices."""
    head, _, rest = name.partition(".")
    if head == "layers":
        index, part, tail = (rest.split(".", 2) + ["", ""])[:3]
        layer = arch.layers[int(index)]
        tag = {"attn": lambda: layer.attention.kind, "ffn": lambda: ffn_tag(layer.ffn)}.get(part)
        return f"layers.{index}.{part}[{tag()}].{tail}" if tag else name
    if head == "embed":
        return f"embed[{arch.tokens},{arch.stem}].{rest}"
    if head == "pos":
        return f"pos[{arch.tokens},{arch.head}]"
    if head == "head":
        return f"head[{arch.head},{arch.tokens}].{rest}"
    return name


def _layout(name: str, arch: ArchConfig, shape: tuple[int, ...]) -> tuple[str, int]:
    if name.endswith("proj.qkv.weight") or name.endswith("proj.qkv.bias"):
        return "chunks", 3
    if name == "head.weight" and arch.head == "flatten":
        return "tokens", shape[1] // arch.d_model
    return "", 0


def take(full: Tensor, shape: tuple[int, ...], layout: tuple[str, int] = ("", 0), name: str = "") -> Tensor:
    """The leading ``shape`` slice of ``full`` in ``layout`` (a differentiable view or copy)."""
    kind, n = layout
    if kind == "chunks":                     # (3A, ...) as (3, A, ...): each of q, k, v sliced
        inner = (shape[0] // n,) + tuple(shape[1:])
        return _lead(full.reshape(n, full.shape[0] // n, *full.shape[1:]), (n,) + inner, name).reshape(shape)
    if kind == "tokens":                     # (C, T*D) as (C, T, D): each token's features sliced
        c, width = full.shape
        return _lead(full.reshape(c, n, width // n), (shape[0], n, shape[1] // n), name).reshape(shape)
    return _lead(full, shape, name)


def _lead(full: Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    if len(shape) != full.dim() or any(s > f for s, f in zip(shape, full.shape)):
        raise ConfigError(name or "supernet", f"needs shape {tuple(shape)}, wider than the supernet's "
                          f"{tuple(full.shape)}: its kind does not slice as it declares")
    return full[tuple(slice(0, s) for s in shape)]


def _tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, bool, Tensor]]:
    """(name, owning module, attribute, is_parameter, tensor) of every parameter and buffer."""
    for mod_name, module in model.named_modules():
        for attr, t in list(module._parameters.items()):
            if t is not None:
                yield (f"{mod_name}.{attr}" if mod_name else attr), module, attr, True, t
        for attr, t in list(module._buffers.items()):
            if t is not None:
                yield (f"{mod_name}.{attr}" if mod_name else attr), module, attr, False, t


def inherit(shared: Mapping[str, Tensor], arch: ArchConfig, shape: TaskShape) -> nn.Module:
    """``arch``'s model holding its slices of ``shared`` (copies: a model of its own)."""
    model = build_model(arch, shape)
    with torch.no_grad():
        for name, module, attr, is_param, t in _tensors(model):
            if not is_param and attr in module._non_persistent_buffers_set:
                continue                     # running state (a MoE's pending load): starts at zero
            key = share_key(name, arch)
            if key not in shared:
                raise ConfigError(name, f"the supernet has no weights for {key} (a kind or option "
                                  "this space did not declare)")
            t.copy_(take(shared[key], tuple(t.shape), _layout(name, arch, tuple(t.shape)), name))
    return model


# --- the widest architectures a space holds ------------------------------------------
def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _widest_configs(part: str, options: tuple[Option, ...]) -> list:
    """One config per sharing tag of ``part``: every numeric field at its largest
    declared value over the options of that tag (the widest shapes), the categorical
    ones as first declared."""
    registry = REGISTRIES[part]
    merged: dict[str, tuple[Any, dict]] = {}
    for opt in options:
        spec = registry.get(opt.kind)
        cats = [(f, vals) for f, vals in opt.values if not all(_numeric(v) for v in vals)]
        for combo in itertools.product(*(vals for _, vals in cats)):
            values = dict(zip((f for f, _ in cats), combo))
            values.update({f: max(vals) for f, vals in opt.values if f not in values})
            cfg = spec.make(values)
            tag = cfg.kind if part == "attention" else ffn_tag(cfg)
            if tag in merged:
                _, old = merged[tag]
                for f, v in values.items():
                    if _numeric(v):
                        old[f] = max(old[f], v)
            else:
                merged[tag] = (spec, values)
    out = []
    for tag, (spec, values) in merged.items():
        for f in spec.field_names:             # a conditional field off: its default
            if not spec.active(f, values):
                values[f] = spec.get_field(f).default
        out.append(spec.make(values))
    return out


def spanning_archs(space: ArchSpace, shape: TaskShape) -> list[ArchConfig]:
    """Architectures that together hold every sharing key at its widest: the layer
    kinds cycled over the deepest model, and every combination of the model kinds."""
    attention = _widest_configs("attention", space.attention)
    ffn = _widest_configs("ffn", space.ffn)
    d, depth = max(space.d_model), max(space.layers)
    model = dict(space.model)
    ends = [dict(zip(model, combo)) for combo in itertools.product(*model.values())] or [{}]
    mixer = next((a for a in attention if a.kind != "identity"), attention[0])
    wanted = [[LayerConfig(attention[k % len(attention)], ffn[k % len(ffn)])] * depth
              for k in range(max(len(attention), len(ffn)))]
    archs = []
    for layers in wanted:                    # the layer kinds, under the first ends that build
        for kinds in ends:
            arch = ArchConfig(d, tuple(layers), **kinds)
            if _builds(arch, shape):
                archs.append(arch)
                break
    for kinds in ends:                       # every ends combination, under a mixing layer
        arch = ArchConfig(d, (LayerConfig(mixer, ffn[0]),) * depth, **kinds)
        if _builds(arch, shape):
            archs.append(arch)
    if not archs:
        raise ConfigError("space", "no architecture of this space builds for the task; "
                          "the supernet has nothing to hold")
    return archs


def _builds(arch: ArchConfig, shape: TaskShape) -> bool:
    try:
        with torch.device("meta"):
            build_model(arch, shape)
        return True
    except (ConfigError, ValueError):
        return False


# --- the supernet -------------------------------------------------------------------
def _safe(key: str) -> str:
    return key.replace(".", "/")             # nn.Module names cannot hold dots


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
                 feasible: Feasible | None = None, dropout: float = 0.0):
        super().__init__()
        check_shareable(space)
        self.space, self.shape, self.dropout = space, shape, dropout
        self.feasible = feasible
        self.uses_bias = any("bias" in dict(o.values).get("balance", ()) for o in space.ffn)
        self.rng = random.Random(seed)
        self.path: ArchConfig | None = None
        self._paths: dict[str, _Path] = {}   # not submodules: skeletons hold no weights
        self._last: _Path | None = None
        self.params = nn.ParameterDict()
        self.state = nn.Module()             # the shared buffers (router biases, loads)
        archs = spanning_archs(space, shape)
        self.widest = archs[0]               # a buildable architecture of the space (hparams)
        self._init_shared(archs)
        self.sampled = 0                     # paths drawn for training

    def _init_shared(self, archs: list[ArchConfig]) -> None:
        widest: dict[str, tuple[tuple[int, ...], bool, bool]] = {}
        for arch in archs:                   # pass 1, on meta: the widest shape per key
            with torch.device("meta"):
                model = build_model(arch, self.shape)
            for name, module, attr, is_param, t in _tensors(model):
                key = share_key(name, arch)
                size = tuple(t.shape)
                old = widest.get(key, (size, is_param, True))[0]
                persistent = is_param or attr not in module._non_persistent_buffers_set
                widest[key] = (tuple(max(a, b) for a, b in zip(old, size)), is_param, persistent)
        first: dict[str, tuple[Tensor, bool]] = {}
        for arch in archs:                   # pass 2: values from a real model of that width
            for name, _, _, is_param, t in _tensors(build_model(arch, self.shape)):
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
        with torch.no_grad():
            for key, value in state.items():
                self.shared(key).copy_(value)

    # --- paths --------------------------------------------------------------------
    def reseed(self, seed: int) -> None:
        self.rng.seed(seed)

    def sample(self) -> ArchConfig:
        """A feasible architecture, every decision uniform (SPOS's uniform sampling)."""
        why = ""
        for _ in range(MAX_RESAMPLE):
            arch = self.space.sample(RandomSuggester(rng=self.rng))
            try:
                arch.validate()
            except ConfigError as err:
                why = str(err)
                continue
            ok, why = self.feasible(arch) if self.feasible else (True, "")
            if ok:
                return arch
        raise DynasError(f"the supernet drew {MAX_RESAMPLE} infeasible paths in a row (last: {why})")

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
        path = self._paths.get(arch.arch_id)
        if path is None:
            path = self._paths[arch.arch_id] = self._skeleton(arch)
            if len(self._paths) > SKELETON_CACHE:
                self._paths.pop(next(iter(self._paths)))
        for module, attr, is_param, key, size, layout, name in path.slots:
            t = take(self.shared(key), size, layout, name)
            (module._parameters if is_param else module._buffers)[attr] = t
        path.model.train(self.training)
        self._last = path
        return path

    def _skeleton(self, arch: ArchConfig) -> _Path:
        with torch.device("meta"):
            model = build_model(arch, self.shape)
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = self.dropout
        slots = []
        for name, module, attr, is_param, t in _tensors(model):
            key = share_key(name, arch)
            if _safe(key) not in self.params and not hasattr(self.state, _safe(key)):
                raise ConfigError(name, f"the supernet has no weights for {key}")
            slots.append((module, attr, is_param, key, tuple(t.shape),
                          _layout(name, arch, tuple(t.shape)), name))
        return _Path(arch, model, slots)

    def update_router_biases(self, rate: float) -> None:
        """The DeepSeek-V3 bias step on the last path's MoE layers (their bias and load
        buffers are views of the shared ones, so the step lands there)."""
        if self._last is not None:
            for module in self._last.model.modules():
                if isinstance(module, MoE):
                    module.update_router_bias(rate)


def _grow(t: Tensor, size: tuple[int, ...]) -> Tensor:
    """``t`` if it already has the widest ``size``; otherwise ``t`` as the leading block
    of a tensor of ``size`` whose rest is drawn from t's own spread."""
    if tuple(t.shape) == size:
        return t
    std = float(t.float().std()) if t.numel() > 1 else 0.02
    out = torch.randn(size, dtype=t.dtype) * std + (float(t.float().mean()) if t.numel() else 0.0)
    out[tuple(slice(0, s) for s in t.shape)] = t
    return out


# --- training -----------------------------------------------------------------------
@dataclass
class TrainedSupernet:
    """What a candidate is scored with: the shared tensors after each experience."""

    snapshots: list[dict[str, Tensor]]
    fingerprint: dict
    steps: int = 0
    paths: int = 0                       # paths drawn for training
    wall_time_s: float = 0.0

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"format": FORMAT, "snapshots": self.snapshots, "fingerprint": self.fingerprint,
                    "steps": self.steps, "paths": self.paths, "wall_time_s": self.wall_time_s}, tmp)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrainedSupernet":
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise DynasError(f"{path}: unreadable supernet ({type(err).__name__}: {err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DynasError(f"{path}: not a dynas supernet of format {FORMAT}")
        return cls(list(data["snapshots"]), dict(data["fingerprint"]), int(data["steps"]),
                   int(data["paths"]), float(data["wall_time_s"]))


def fingerprint(space: ArchSpace, task, cfg: TrainingSettings, settings: SupernetSettings) -> dict:
    """What a resumed (or reused) supernet must share with the one asked for."""
    return {"space": repr(space), "task": task.name, "experiences": task.num_experiences,
            "training": settings_dict(cfg), "supernet": settings_dict(settings)}


def train_supernet(space: ArchSpace, task, cfg: TrainingSettings, settings: SupernetSettings, *,
                   feasible: Feasible | None = None, checkpoint_dir: str | os.PathLike | None = None,
                   log_dir: str | os.PathLike | None = None,
                   on_experience: Callable[[int, Path | None], None] | None = None) -> TrainedSupernet:
    """SPOS training of one supernet through ``task``'s stream (module docstring).

    ``cfg`` is the experiment's training section; the supernet takes
    ``settings.steps(cfg.steps_per_experience)`` steps per experience with seed
    ``settings.seed``. With ``checkpoint_dir`` the state after each experience is saved
    there and a rerun continues from it; ``on_experience(k, checkpoint_dir)`` hears of
    each finished experience (a Ray trial reports its checkpoint there).
    """
    import lightning as L

    from .curves import CurveLogger
    from .fitting import make_trainer, plan, quiet_lightning
    from .system import ContinualSystem

    steps = settings.steps(cfg.steps_per_experience)
    cfg = dataclasses.replace(cfg, steps_per_experience=steps, seed=settings.seed)
    cfg.validate("training")
    started = time.perf_counter()
    L.seed_everything(cfg.seed, verbose=False)
    net = SuperNet(space, task.shape, seed=cfg.seed, feasible=feasible, dropout=cfg.dropout)
    system = ContinualSystem(net.widest.to_dict(), dataclasses.asdict(task.shape), settings_dict(cfg),
                             [list(e.classes) for e in task.experiences], task.scenario, model=net)
    wanted = fingerprint(space, task, cfg, settings)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    snapshots: list[dict[str, Tensor]] = []
    done, total_steps, past = 0, 0, 0.0
    if ckpt is not None and (ckpt / STATE_FILE).is_file():
        done, total_steps, past, snapshots = _restore(ckpt / STATE_FILE, wanted, system, net)
    curves = CurveLogger(log_dir) if log_dir is not None else None
    stints = plan(task, cfg)
    for k in range(done, len(stints)):
        stint = stints[k]
        seed = cfg.seed * 1_000_003 + 7919 * (k + 1)
        system.begin_experience(stint.index, stint.experience, stint.steps, stint.seen, seed=seed)
        net.reseed(seed)
        net.use(None)
        if curves is not None:
            curves.offset = total_steps
        with quiet_lightning():
            trainer = make_trainer(cfg, stint.steps, [], curves)
            trainer.fit(system)
        total_steps += trainer.global_step
        snapshots.append(net.shared_state())
        if ckpt is not None:
            _save(ckpt / STATE_FILE, wanted, k + 1, system, net, snapshots, total_steps,
                  past + time.perf_counter() - started)
        if on_experience is not None:
            on_experience(k, ckpt)
    if cfg.joint:                            # one evaluation stands for every row (as in fit)
        snapshots = [snapshots[-1]] * task.num_experiences
    return TrainedSupernet(snapshots, wanted, total_steps, net.sampled,
                           past + time.perf_counter() - started)


def _save(path: Path, wanted: dict, done: int, system, net: SuperNet, snapshots: list, steps: int,
          wall: float) -> None:
    state = {"format": FORMAT, "fingerprint": wanted, "done": done, "snapshots": snapshots,
             "model": net.state_dict(), "replay": system.replay.state_dict() if system.replay else None,
             "steps": steps, "wall_time_s": wall, "paths": net.sampled,
             "rng": torch.get_rng_state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _restore(path: Path, wanted: dict, system, net: SuperNet) -> tuple[int, int, float, list]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DynasError(f"{path}: unreadable supernet state ({type(err).__name__}: {err})") from None
    if state.get("format") != FORMAT or state.get("fingerprint") != wanted:
        raise DynasError(f"{path}: cannot resume, the saved supernet was trained for another "
                         "space, task or training section")
    net.load_state_dict(state["model"])
    net.sampled = int(state["paths"])
    if system.replay is not None and state["replay"] is not None:
        system.replay.load_state_dict(state["replay"])
    torch.set_rng_state(state["rng"])
    return int(state["done"]), int(state["steps"]), float(state["wall_time_s"]), list(state["snapshots"])


# --- scoring ------------------------------------------------------------------------
def evaluate_inherited(supernet: TrainedSupernet, arch: ArchConfig, task, cfg: TrainingSettings,
                       *, finetune_steps: int = 0, weights_dir: str | os.PathLike | None = None) -> TrialMetrics:
    """Score ``arch`` with its slices of ``supernet`` (module docstring): the same
    metrics a stand-alone ``fit`` reports, from R_val / R_test over the snapshots."""
    from .bundle import save_bundle
    from .dynamics import measure
    from .evaluation import evaluate_row, expert_fractions
    from .fitting import fit, resolve_accelerator, trial_values

    arch.validate()
    if len(supernet.snapshots) != task.num_experiences:
        raise DynasError(f"the supernet holds {len(supernet.snapshots)} snapshots for a task of "
                         f"{task.num_experiences} experiences")
    if finetune_steps > 0:
        final = inherit(supernet.snapshots[-1], arch, task.shape).state_dict()
        tuned = dataclasses.replace(cfg, steps_per_experience=finetune_steps)
        return fit(arch, task, tuned, init=lambda model: model.load_state_dict(final),
                   weights_dir=weights_dir)
    started = time.perf_counter()
    device = torch.device(resolve_accelerator(cfg.device))
    common = dict(scenario=task.scenario, num_classes=task.shape.num_classes,
                  batch_size=cfg.eval_batch_size, device=device)
    rows, test_rows, bits_rows, history, counts = [], [], [], [], {}
    model = None
    for k, snapshot in enumerate(supernet.snapshots):
        model = inherit(snapshot, arch, task.shape).to(device).eval()
        row, counts = evaluate_row(model, task.experiences, split="val", **common)
        test_row, _ = evaluate_row(model, task.experiences, split="test", **common)
        bits, entry = measure(model, [e.val for e in task.experiences], batch_size=cfg.eval_batch_size,
                              device=device)
        rows.append(row)
        test_rows.append(test_row)
        bits_rows.append(bits)
        history.append({"experience": k, **entry})
    values = trial_values(arch, task, model, rows, test_rows, bits_rows, history, device.type)
    if weights_dir is not None:
        save_bundle(weights_dir, model.cpu(), task, values)
    return TrialMetrics(values=values, acc_matrix=rows, test_acc_matrix=test_rows,
                        expert_load=expert_fractions(counts), bits_matrix=bits_rows, dynamics=history,
                        curriculum_log=[], steps=0, wall_time_s=time.perf_counter() - started,
                        chance_accuracy=task.chance_accuracy)
