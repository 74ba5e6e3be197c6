"""The weight-sharing supernet (``trainers.supernet``): what a candidate inherits is
what its path trained, for every registered kind; training moves only the sampled
path; a space it cannot share is refused naming the decision."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from dynas.search_space import names
from dynas.search_space.arch import TaskShape
from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.kinds import ATTENTION, FFN, REGISTRIES
from dynas.search_space.settings import ReplaySettings, SupernetSettings, TaskSettings, TrainingSettings
from dynas.search_space.sharing import check_shareable
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester
from tests.kind_cases import ATTENTION_CASES, FFN_CASES, MODEL_KIND_CASES
from dynas.trainers.fitting import fit
from dynas.trainers.supernet import (SuperNet, TrainedSupernet, evaluate_inherited, inherit, share_key,
                               train_supernet)
from dynas.trainers.tasks import build_task

SHAPE = TaskShape(seq_len=16, num_classes=5, input_dim=4, image_side=8)   # 8x8 image, 2x2 patches


def _option(cfg) -> dict:
    """A space option declaring ``cfg``'s own values (one choice each)."""
    out = {"kind": cfg.kind}
    if hasattr(cfg, "heads"):
        if cfg.kind != "identity":
            out["heads"] = [cfg.heads]
        for f in ("window", "max_span"):
            if getattr(cfg, f):
                out[f] = [getattr(cfg, f)]
        return out
    out["expansion"] = [cfg.expansion]
    if cfg.kind == "moe":
        out.update(experts=[cfg.experts], top_k=[cfg.router.top_k], router=[cfg.router.kind],
                   top_p=cfg.router.top_p, shared_experts=[cfg.shared_experts],
                   capacity_factor=[cfg.capacity_factor], balance=[cfg.balance], expert=[cfg.expert])
    return out


def every_kind_space() -> dict:
    """Every registered attention, FFN and model kind in one space, two widths."""
    return {"layers": [1, 2], "d_model": [8, 16], **{f: list(k) for f, k in MODEL_KIND_CASES.items()},
            "layer": {"attention": [_option(c) for cases in ATTENTION_CASES.values() for c in cases[:1]],
                      "ffn": [_option(c) for cases in FFN_CASES.values() for c in cases]}}


def test_every_builtin_kind_declares_that_it_slices():
    for family, registry in REGISTRIES.items():
        for name in registry:
            assert registry.get(name).slices, f"{family} kind {name} cannot be served by a supernet"


def test_a_bound_path_computes_exactly_what_its_inherited_model_computes():
    space = parse_space(every_kind_space())
    net = SuperNet(space, SHAPE).eval()
    x = torch.randn(3, SHAPE.seq_len, SHAPE.input_dim)
    seen = set()
    rng = RandomSuggester(0)
    for _ in range(40):
        arch = space.sample(rng)
        try:
            arch.validate()
        except ConfigError:
            continue
        seen |= {layer.attention.kind for layer in arch.layers} | {layer.ffn.kind for layer in arch.layers}
        seen |= set(arch.model_kinds().values())
        net.use(arch)
        model = inherit(net.shared_state(), arch, SHAPE).eval()
        torch.testing.assert_close(net(x).logits, model(x).logits, rtol=0, atol=0)
    assert set(ATTENTION) | set(FFN) <= seen      # every kind was exercised


def test_narrow_configs_take_the_leading_slices_per_q_k_v():
    space = parse_space({"layers": [1], "d_model": [8, 16],
                         "layer": {"attention": {"kind": "full", "heads": [2]}, "ffn": {"kind": "dense", "expansion": [2, 4]}}})
    net = SuperNet(space, SHAPE)
    narrow = next(a for a in (space.sample(RandomSuggester(s)) for s in range(50))
                  if a.d_model == 8 and a.layers[0].ffn.expansion == 2)
    model = inherit(net.shared_state(), narrow, SHAPE)
    full = net.shared(share_key("layers.0.attn.proj.qkv.weight", narrow)).detach()   # (48, 16)
    q, k, v = model.layers[0].attn.proj.qkv.weight.detach().chunk(3)
    for got, block in zip((q, k, v), full.chunk(3)):
        torch.testing.assert_close(got, block[:8, :8])
    up = net.shared(share_key("layers.0.ffn.up.weight", narrow)).detach()             # (64, 16)
    torch.testing.assert_close(model.layers[0].ffn.up.weight.detach(), up[:16, :8])


def test_one_step_moves_only_the_sampled_paths_slices():
    space = parse_space({"layers": [1, 2], "d_model": [8, 16],
                         "layer": {"attention": [{"kind": "full", "heads": [2]}, {"kind": "linear", "heads": [2]}],
                                   "ffn": {"kind": "dense", "expansion": [2]}}})
    net = SuperNet(space, SHAPE)
    arch = next(a for a in (space.sample(RandomSuggester(s)) for s in range(50))
                if a.d_model == 8 and len(a.layers) == 1 and a.layers[0].attention.kind == "full")
    net.use(arch)
    net.train()
    net(torch.randn(4, SHAPE.seq_len, SHAPE.input_dim)).logits.sum().backward()
    used = {share_key(name, arch) for name, _ in inherit(net.shared_state(), arch, SHAPE).named_parameters()}
    for key in set(net.keys) - used:
        grad = getattr(net.shared(key), "grad", None)
        assert grad is None, f"{key} is off the path but got a gradient"
    qkv = net.shared(share_key("layers.0.attn.proj.qkv.weight", arch)).grad.reshape(3, 16, 16)
    assert qkv[:, :8, :8].abs().sum() > 0 and qkv[:, 8:].abs().sum() == 0 and qkv[:, :, 8:].abs().sum() == 0


TINY_SPACE = {"layers": [1, 2], "d_model": [16, 32],
              "layer": {"attention": [{"kind": "full", "heads": [2]}, {"kind": "identity"}],
                        "ffn": [{"kind": "dense", "expansion": [2]},
                                {"kind": "moe", "experts": [2, 4], "top_k": [1], "balance": ["bias"],
                                 "expansion": 1}]}}
TRAINING = TrainingSettings(steps_per_experience=4, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def task():
    return build_task(TaskSettings("split_digits"), seed=0)


def test_training_is_seeded_snapshots_every_experience_and_resumes(task, tmp_path):
    space = parse_space(TINY_SPACE)
    settings = SupernetSettings(factor=1.0, seed=3)
    a = train_supernet(space, task, TRAINING, settings)
    b = train_supernet(space, task, TRAINING, settings, checkpoint_dir=tmp_path)
    assert len(a.snapshots) == task.num_experiences and a.paths == a.steps == 4 * task.num_experiences
    for sa, sb in zip(a.snapshots, b.snapshots):
        assert sa.keys() == sb.keys()
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key])
    assert a.snapshots[0].keys() and any(not torch.equal(a.snapshots[0][k], a.snapshots[-1][k]) for k in a.snapshots[0])
    c = train_supernet(space, task, TRAINING, settings, checkpoint_dir=tmp_path)   # everything saved: no steps
    assert c.steps == b.steps and all(torch.equal(c.snapshots[-1][k], b.snapshots[-1][k]) for k in b.snapshots[-1])
    with pytest.raises(DynasError, match="another space"):
        train_supernet(space, task, TRAINING, SupernetSettings(factor=1.0, seed=4), checkpoint_dir=tmp_path)
    path = a.save(tmp_path / "supernet.pt")
    loaded = TrainedSupernet.load(path)
    assert loaded.fingerprint == a.fingerprint and len(loaded.snapshots) == len(a.snapshots)
    path.write_bytes(b"not a supernet")
    with pytest.raises(DynasError, match="unreadable supernet"):
        TrainedSupernet.load(path)


def test_a_killed_training_resumes_to_exactly_the_uninterrupted_supernet(task, tmp_path):
    space, settings = parse_space(TINY_SPACE), SupernetSettings(factor=1.0, seed=5)
    # replay and dropout: the buffer and the global RNG must come back too
    training = dataclasses.replace(TRAINING, replay=ReplaySettings("reservoir", 40), dropout=0.1)
    whole = train_supernet(space, task, training, settings)

    def crash(k, ckpt):
        if k == 1:
            raise KeyboardInterrupt("killed after experience 1")

    with pytest.raises(KeyboardInterrupt):
        train_supernet(space, task, training, settings, checkpoint_dir=tmp_path, on_experience=crash)
    heard = []
    resumed = train_supernet(space, task, training, settings, checkpoint_dir=tmp_path,
                             on_experience=lambda k, ckpt: heard.append(k))
    assert heard == list(range(2, task.num_experiences))
    assert (resumed.steps, resumed.paths) == (whole.steps, whole.paths)
    for mine, theirs in zip(resumed.snapshots, whole.snapshots, strict=True):
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_an_inherited_score_reports_what_a_standalone_fit_reports(task):
    space = parse_space(TINY_SPACE)
    net = train_supernet(space, task, TRAINING, SupernetSettings(factor=1.0))
    arch = next(a for a in (space.sample(RandomSuggester(s)) for s in range(50)) if a.layers[0].ffn.kind == "moe")
    inherited = evaluate_inherited(net, arch, task, TRAINING)
    alone = fit(arch, task, TRAINING)
    assert set(inherited.values) == set(alone.values)
    n = task.num_experiences
    for matrix in (inherited.acc_matrix, inherited.test_acc_matrix, inherited.bits_matrix):
        assert len(matrix) == n and all(len(row) == n for row in matrix)
    assert inherited.values[names.FLOPS] == alone.values[names.FLOPS]
    assert inherited.expert_load and inherited.steps == 0
    tuned = evaluate_inherited(net, arch, task, TRAINING, finetune_steps=2)
    assert tuned.steps == 2 * n and set(tuned.values) == set(alone.values)


def test_a_space_it_cannot_share_is_refused_naming_the_decision():
    with ATTENTION.kept():
        ATTENTION.register("opaque", dataclasses.replace(ATTENTION.get("full"), name="opaque", slices=False))
        space = parse_space({"layers": [1], "d_model": [8],
                             "layer": {"attention": [{"kind": "full", "heads": 2}, {"kind": "opaque", "heads": 2}],
                                       "ffn": {"kind": "dense"}}})
        with pytest.raises(ConfigError) as err:
            check_shareable(space)
        assert err.value.key == "space.layer.attention[1].kind" and "opaque" in str(err.value)
    tuned = dataclasses.replace(parse_space(TINY_SPACE), training=(("lr", (0.001, 0.003)),))
    with pytest.raises(ConfigError) as err:
        check_shareable(tuned)
    assert err.value.key == "training.lr"
