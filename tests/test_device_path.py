"""The device path, checked without a GPU (issue 29).

No GPU has run this suite's CPU jobs, so what a GPU would trip over first is checked
here in three ways:

1. A scan of the source (``ast``): every ``torch.load`` / ``load_from_checkpoint``
   names a ``map_location``; every tensor factory on the forward path says where its
   tensor goes (``device=``), makes a parameter or buffer in ``__init__`` (moved by
   ``module.to``), or is in ``CPU_ON_PURPOSE`` with the reason; every host read
   (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool``/``int``/``float`` of
   an expression) in ``trainers/modules/`` is in ``HOST_READS`` with the reason.
2. The ``meta`` device: each attention kind, dense FFN kind, router, expert group and
   model-end kind (tokens, stem, norm, head) runs forward and backward on meta tensors. Meta has no data, so a CPU tensor made
   inside (``Tensor on device cpu is not on the expected device meta``) or a
   data-dependent read (``.item()``, boolean-mask indexing) fails there as it
   would misbehave on a GPU.
3. A dispatch count on CPU: the MoE and whole-model forwards issue none of the ops
   that read a CUDA tensor back on the host (``aten.nonzero``, ``_local_scalar_dense``,
   ``bincount``, ...) beyond the documented ones.

The checks that need a real GPU are in ``benchmarks/gpu_check.py``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import dynas
from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig, TaskShape
from dynas.trainers.model import build_model
from dynas.trainers.modules import BUILDERS, DynamicRouter, ExpertGroup, GLUExpertGroup, TopKRouter
from tests.kind_cases import all_attentions, all_ffns, all_model_kinds

PACKAGE = Path(dynas.__file__).parent
TRAINERS = PACKAGE / "trainers"

FACTORIES = {"zeros", "ones", "empty", "full", "arange", "tensor", "as_tensor", "rand", "randn",
             "randint", "randperm", "eye", "linspace", "logspace"}
HOST_METHODS = {"item", "tolist", "cpu", "numpy"}
HOST_BUILTINS = {"bool", "int", "float"}

# Files on the forward / training-step path: the whole file, or only the named functions.
FORWARD_PATH: dict[str, set[str] | None] = {
    **{f"modules/{p.name}": None for p in sorted((TRAINERS / "modules").glob("*.py"))},
    "model.py": None, "system.py": None, "evaluation.py": None, "replay.py": None,
    "dynamics.py": None, "predict.py": None, "latency.py": None,
    **{f"supernet/{p.name}": None for p in sorted((TRAINERS / "supernet").glob("*.py"))},
    "curriculum.py": {"apply_input_mask", "mask_ratio"},
}

# (file under trainers/, enclosing function, factory) -> why a CPU tensor is right there.
CPU_ON_PURPOSE: dict[tuple[str, str, str], str] = {
    ("system.py", "_Batches.__getitems__", "as_tensor"):
        "indices into the dataset, which lives on the CPU; the batch is moved by Lightning",
    ("system.py", "ContinualSystem.__init__", "zeros"):
        "task-IL class tables, assigned to a name and then registered as buffers "
        "(moved with the module)",
    ("system.py", "ContinualSystem.begin_experience", "as_tensor"):
        "the task's level labels, read on the host (max level)",
    ("system.py", "ContinualSystem._remember", "full"):
        "replay groups: ReplayBuffer._groups reads them on the host anyway",
    ("curriculum.py", "apply_input_mask", "rand"):
        "drawn from the CPU generator (the same masks on every device), then .to(x.device)",
    ("replay.py", "ReplayBuffer._reservoir_slots", "arange"):
        "slot choice is host bookkeeping (CPU generator, read with .tolist())",
    ("replay.py", "ReplayBuffer._reservoir_slots", "rand"):
        "slot choice is host bookkeeping (CPU generator, read with .tolist())",
    ("replay.py", "ReplayBuffer._balanced_slots", "tensor"):
        "slot choice is host bookkeeping (read with .tolist())",
    ("replay.py", "ReplayBuffer._balanced_victim", "rand"): "CPU generator, host decision",
    ("replay.py", "ReplayBuffer._randint", "randint"): "CPU generator, host decision",
    ("replay.py", "ReplayBuffer.sample", "randperm"):
        "CPU generator (resumable state), then .to(self.x.device)",
    ("replay.py", "ReplayBuffer.state_dict", "tensor"): "checkpoint contents are CPU tensors",
    ("evaluation.py", "difficulty_scores", "rand"):
        "the curriculum orders samples on the host (CPU generator)",
    ("evaluation.py", "difficulty_scores", "empty"): "scores are returned on the CPU",
    ("modules/positions.py", "build_learned", "zeros"):
        "a parameter made when the model is built (init-time, like __init__): moved with the module",
    ("predict.py", "Predictor.prepare", "as_tensor"):
        "raw user inputs are prepared on the CPU; predict moves each batch to the device",
    ("predict.py", "Predictor.predict", "empty"): "predictions are returned on the CPU",
    ("dynamics.py", "realised_k", "arange"): "the k histogram was read back to the CPU already",
    ("supernet/net.py", "_grow", "randn"):
        "grows snapshot tensors, which are CPU tensors (a supernet's state is saved and "
        "sliced on the host); use device=t.device if it ever gets device tensors",
}

# (file under trainers/modules/, enclosing function, call) -> why the host waits there.
HOST_READS: dict[tuple[str, str, str], str] = {
    ("modules/moe.py", "MoE.forward", "tolist"):
        "the one sync of an MoE forward: each expert's slot count, as the Python ints "
        "that split the sorted tokens",
    ("modules/span.py", "DynamicSpanAttention.window", "float"):
        "the crop width of the blocks is a Python int: one sync per span layer and "
        "forward (crop=False computes over max_span without it)",
}


# --- the scan -----------------------------------------------------------------------
class _Calls(ast.NodeVisitor):
    """Every call with the qualified name of the function it sits in."""

    def __init__(self):
        self.stack: list[str] = []
        self.calls: list[tuple[str, ast.Call, ast.AST | None]] = []   # (function, call, parent)
        self._parent: ast.AST | None = None

    def _scope(self, node):
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scope

    def generic_visit(self, node):
        parent, self._parent = self._parent, node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Call):
                self.calls.append((".".join(self.stack), child, node))
            self.visit(child)
        self._parent = parent


def _calls(path: Path) -> list[tuple[str, ast.Call, ast.AST]]:
    visitor = _Calls()
    visitor.visit(ast.parse(path.read_text(), str(path)))
    return visitor.calls


def _name(call: ast.Call) -> tuple[str | None, str | None]:
    """(object, attribute) of ``obj.attr(...)``, or (None, name) of ``name(...)``."""
    f = call.func
    if isinstance(f, ast.Attribute):
        return (f.value.id if isinstance(f.value, ast.Name) else "", f.attr)
    if isinstance(f, ast.Name):
        return None, f.id
    return None, None


def _keywords(call: ast.Call) -> set[str]:
    return {k.arg for k in call.keywords if k.arg}


def _registered(call: ast.Call, parent: ast.AST, function: str) -> bool:
    """A factory in ``__init__`` that is a Parameter's data or a registered buffer."""
    if not function.endswith("__init__") or not isinstance(parent, ast.Call):
        return False
    owner, attr = _name(parent)
    return attr in ("Parameter", "register_buffer") and call in parent.args


def _in_scope(rel: str, function: str) -> bool:
    only = FORWARD_PATH[rel]
    return only is None or function.split(".")[-1] in only


def _factories() -> dict[tuple[str, str, str], int]:
    """Factories without ``device=`` on the forward path: (file, function, name) -> count."""
    found: dict[tuple[str, str, str], int] = {}
    for rel in FORWARD_PATH:
        for function, call, parent in _calls(TRAINERS / rel):
            owner, attr = _name(call)
            if owner != "torch" or attr not in FACTORIES or not _in_scope(rel, function):
                continue
            if "device" in _keywords(call) or _registered(call, parent, function):
                continue
            key = (rel, function, attr)
            found[key] = found.get(key, 0) + 1
    return found


def _host_reads() -> set[tuple[str, str, str]]:
    found = set()
    for path in sorted((TRAINERS / "modules").glob("*.py")):
        rel = f"modules/{path.name}"
        for function, call, _ in _calls(path):
            owner, attr = _name(call)
            method = owner is not None and attr in HOST_METHODS
            builtin = (owner is None and attr in HOST_BUILTINS and len(call.args) == 1
                       and isinstance(call.args[0], (ast.Call, ast.Attribute, ast.Subscript)))
            if method or builtin:
                found.add((rel, function, attr))
    return found


def test_every_checkpoint_load_names_its_map_location():
    """A checkpoint saved on a GPU must load on a machine without one."""
    missing, seen = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        if any(part in (".venv", "tests", "build") or part.startswith(".") for part in
               path.relative_to(PACKAGE).parts):
            continue
        for function, call, _ in _calls(path):
            owner, attr = _name(call)
            loads = (owner == "torch" and attr == "load") or attr == "load_from_checkpoint"
            if loads:
                seen.append(path.name)
            if loads and "map_location" not in _keywords(call):
                missing.append(f"{path.relative_to(PACKAGE)}:{call.lineno} {function}")
    assert {"checkpoint.py", "downstream.py"} <= set(seen)    # the scan sees them
    assert not missing, "torch.load without map_location=: " + ", ".join(missing)


def test_forward_path_factories_say_where_their_tensor_goes():
    found = _factories()
    unlisted = sorted(set(found) - set(CPU_ON_PURPOSE))
    assert not unlisted, ("tensor factories without device= on the forward path (create "
                          f"them on the input's device, or list them with the reason): {unlisted}")
    stale = sorted(set(CPU_ON_PURPOSE) - set(found))
    assert not stale, f"CPU_ON_PURPOSE entries that match nothing any more: {stale}"
    assert all(len(why) > 20 for why in CPU_ON_PURPOSE.values())


def test_host_reads_in_the_modules_are_the_documented_ones():
    found = _host_reads()
    assert found == set(HOST_READS), (
        f"undocumented host reads: {sorted(found - set(HOST_READS))}; "
        f"stale entries: {sorted(set(HOST_READS) - found)}")


def test_the_scan_sees_what_it_looks_for(tmp_path, monkeypatch):
    """The scan itself: a factory without device= and a .item() are reported."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "bad.py").write_text(
        "import torch\n"
        "class Bad(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.w = torch.nn.Parameter(torch.zeros(3))\n"
        "        self.cache = torch.zeros(3)\n"
        "    def forward(self, x):\n"
        "        n = int(x.sum())\n"
        "        return x + torch.arange(3) + x.new_ones(3) + torch.ones(3, device=x.device) + n\n")
    monkeypatch.setitem(globals(), "TRAINERS", tmp_path)
    monkeypatch.setitem(globals(), "FORWARD_PATH", {"modules/bad.py": None})
    assert _factories() == {("modules/bad.py", "Bad.__init__", "zeros"): 1,
                            ("modules/bad.py", "Bad.forward", "arange"): 1}
    assert _host_reads() == {("modules/bad.py", "Bad.forward", "int")}


# --- the meta device ------------------------------------------------------------------
D = 16
META = torch.device("meta")


def _meta_forward_backward(module: torch.nn.Module, *inputs, output=lambda o: o) -> torch.Tensor:
    module = module.to(META)
    out = output(module(*inputs))
    assert out.device == META
    out.sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.device == META, name
    return out


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cfg", all_attentions(), ids=str)
def test_every_attention_kind_runs_on_meta(cfg, causal):
    attn = BUILDERS["attention"].get(cfg.kind)(cfg, D, causal)
    if attn is None:
        return                                    # identity: no module at all
    if cfg.kind == "dynamic_span":
        attn.crop = False      # the crop width is the documented host read (HOST_READS)
    x = torch.randn(2, 37, D, device=META, requires_grad=True)
    _meta_forward_backward(attn, x, output=lambda o: o[0] + sum(o[1].values(), 0.0))


@pytest.mark.parametrize("cfg", [c for c in all_ffns() if c.kind != "moe"], ids=str)
def test_every_dense_ffn_kind_runs_on_meta(cfg):
    ffn = BUILDERS["ffn"].get(cfg.kind)(cfg, D)
    _meta_forward_backward(ffn, torch.randn(2, 9, D, device=META))


@pytest.mark.parametrize("router", [TopKRouter(D, 4, 2, aux_losses=("balance", "z_loss")),
                                    DynamicRouter(D, 4, 3, 0.5, bias_balance=True)],
                         ids=["topk", "dynamic"])
def test_routers_run_on_meta(router):
    _meta_forward_backward(router, torch.randn(18, D, device=META),
                           output=lambda r: r.weights.sum() + sum(r.aux_losses.values(), 0.0))


@pytest.mark.parametrize("group", [ExpertGroup, GLUExpertGroup])
def test_expert_groups_run_on_meta(group):
    """The MoE's experts, given the split sizes the dispatch reads on the host."""
    _meta_forward_backward(group(4, D, 8), torch.randn(10, D, device=META), [3, 0, 5, 2])


@pytest.mark.parametrize("family,kind", all_model_kinds())
def test_every_model_end_kind_runs_on_meta(family, kind):
    """Tokens, stem, norm and head kinds, in a whole model on an image-patch task."""
    layers = (LayerConfig(AttentionConfig("full", 2), FFNConfig("dense", 2)),
              LayerConfig(AttentionConfig("identity", 1), FFNConfig("glu", 2)))
    model = build_model(ArchConfig(D, layers, **{family: kind}),
                        TaskShape(seq_len=16, num_classes=5, input_dim=4, image_side=8))
    _meta_forward_backward(model, torch.randn(3, 16, 4, device=META), output=lambda o: o.logits)


def test_a_cpu_tensor_inside_a_meta_forward_is_caught():
    """What the meta checks rest on: mixing a CPU tensor in fails loudly."""
    x = torch.randn(2, 3, device=META)
    with pytest.raises(RuntimeError, match="device"):
        x + torch.zeros(2, 3)


# --- host reads at run time -------------------------------------------------------------
_aten = torch.ops.aten
SYNC_OPS = {_aten._local_scalar_dense.default, _aten.nonzero.default, _aten.masked_select.default,
            _aten.bincount.default, _aten._unique2.default, _aten.unique_consecutive.default,
            _aten.unique_dim.default}


class _HostReads(TorchDispatchMode):
    """Counts ops whose CUDA kernels wait for the device: reads of a value, outputs
    sized by data, boolean-mask indexing, ``repeat_interleave`` without ``output_size``.
    (``.tolist()`` of a CPU tensor does not dispatch: the scan covers it.)"""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        sync = func in SYNC_OPS
        if func in (_aten.index.Tensor, _aten.index_put.default, _aten.index_put_.default):
            sync = any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])
        if func is _aten.repeat_interleave.Tensor:
            sync = kwargs.get("output_size") is None
        if sync:
            self.ops.append(str(func))
        return func(*args, **kwargs)


MOE_CASES = [
    FFNConfig("moe", 2, 4, RouterConfig("topk", 2), 1, 0.0, "aux_loss"),
    FFNConfig("moe", 2, 4, RouterConfig("topk", 1), 0, 1.25, "z_loss"),
    FFNConfig("moe", 2, 4, RouterConfig("dynamic", 3, 0.5), 0, 0.0, "bias"),
    FFNConfig("moe", 2, 4, RouterConfig("dynamic", 3, 0.5), 1, 1.0, "aux_loss", expert="glu"),
]


@pytest.mark.parametrize("cfg", MOE_CASES, ids=["topk2-shared", "top1-capacity", "dynamic-bias",
                                                 "dynamic-glu-capacity"])
def test_moe_forward_and_backward_read_nothing_back_but_the_split_sizes(cfg):
    torch.manual_seed(0)
    moe = BUILDERS["ffn"].get("moe")(cfg, D)
    x = torch.randn(3, 11, D)
    with _HostReads() as reads:
        out = moe(x)
        (out.out.sum() + sum(out.aux_losses.values(), 0.0) + out.dropped_fraction).backward()
        moe.update_router_bias(0.01)
    assert reads.ops == []


def test_a_training_forward_reads_back_once_per_cropped_span_layer():
    torch.manual_seed(0)
    layers = (LayerConfig(AttentionConfig("dynamic_span", 2, max_span=8), MOE_CASES[2]),
              LayerConfig(AttentionConfig("sliding_window", 2, window=4), MOE_CASES[1]),
              LayerConfig(AttentionConfig("full", 2), FFNConfig("glu", 2)),
              LayerConfig(AttentionConfig("linear", 2), FFNConfig("dense", 2)))
    model = build_model(ArchConfig(D, layers), TaskShape(24, 5, vocab_size=11, per_token=True,
                                                         causal=True))
    x = torch.randint(0, 11, (2, 24))
    with _HostReads() as reads:
        out = model(x)
        (out.logits.sum() + sum(out.aux_losses.values(), 0.0)).backward()
    assert reads.ops == [str(_aten._local_scalar_dense.default)]     # the span's crop


def test_the_host_read_counter_sees_a_boolean_mask():
    x = torch.randn(5)
    with _HostReads() as reads:
        x[x > 0].sum()
        torch.bincount(torch.tensor([1, 2]))
    assert len(reads.ops) == 2
