"""Which paths a supernet trains (``trainers.supernet.sampling``, ``supernet.system``) and
few-shot splits (``search_space.sharing.split``): sandwich sampling trains the largest
and the smallest path every step; fair sampling deals every choice equally often; a
few-shot part trains only the architectures it holds, and each candidate inherits from
the part that holds it."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.settings import SupernetSettings, TaskSettings, TrainingSettings
from dynas.search_space.sharing import Shot, split
from dynas.search_space.space import parse_space
from dynas.search_space.suggest import RandomSuggester
from dynas.trainers.supernet import (FairSuggester, PathSampler, SuperNet, TrainedSupernet, evaluate_inherited,
                                     train_supernet)
from dynas.trainers.tasks import build_task

SPACE = {"layers": [1, 2], "d_model": [16, 32],
         "layer": {"attention": [{"kind": "full", "heads": [1, 2]}, {"kind": "identity"}],
                   "ffn": [{"kind": "dense", "expansion": [1, 2]},
                           {"kind": "moe", "experts": [2, 4], "top_k": [1], "balance": ["bias"], "expansion": 1}]}}
TRAINING = TrainingSettings(steps_per_experience=3, batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def task():
    return build_task(TaskSettings("split_digits"), seed=0)


def _widths(arch) -> tuple:
    """Every numeric choice a path made: depth, width, and per layer heads / expansion / experts."""
    per_layer = [(l.attention.heads if l.attention.kind == "full" else None,
                  l.ffn.expansion if l.ffn.kind == "dense" else l.ffn.experts) for l in arch.layers]
    return len(arch.layers), arch.d_model, per_layer


def test_sandwich_trains_the_largest_and_the_smallest_path_every_step(task, monkeypatch):
    trained = []                             # every path a training forward ran, in order
    bind = SuperNet._bind

    def spy(self, arch):
        if self.training:
            trained.append(arch)
        return bind(self, arch)

    monkeypatch.setattr(SuperNet, "_bind", spy)
    settings = SupernetSettings(factor=1.0, sampling="sandwich", sandwich_paths=2)
    net = train_supernet(parse_space(SPACE), task, TRAINING, settings)
    steps = TRAINING.steps_per_experience * task.num_experiences
    assert net.steps == steps and net.paths == 4 * steps and len(trained) == 4 * steps
    for k in range(steps):
        largest, smallest, *random = trained[4 * k: 4 * k + 4]
        layers, d, per_layer = _widths(largest)
        assert (layers, d) == (2, 32) and all(h in (2, None) and w in (2, 4) for h, w in per_layer)
        layers, d, per_layer = _widths(smallest)
        assert (layers, d) == (1, 16) and all(h in (1, None) and w in (1, 2) for h, w in per_layer)
        assert len(random) == 2
    # the random paths are not all extremes: they are uniform draws
    assert any(_widths(a)[:2] not in ((2, 32), (1, 16)) for k in range(steps) for a in trained[4 * k + 2: 4 * k + 4])


def test_fair_sampling_deals_every_choice_equally_often():
    space = parse_space(SPACE)
    sampler = PathSampler(space, sampling="fair", seed=7)
    counts: dict[str, Counter] = {}
    for n in range(1, 121):
        arch = sampler.sample()
        seen = {"layers": len(arch.layers), "d_model": arch.d_model}
        for i, layer in enumerate(arch.layers):
            seen[f"layer{i}.attention"] = layer.attention.kind
            seen[f"layer{i}.ffn"] = layer.ffn.kind
        for name, value in seen.items():
            counts.setdefault(name, Counter())[value] += 1
        for name, c in counts.items():       # at every point: no choice ahead of another by more than one
            options = 2
            assert len(c) <= options and max(c.values()) - (min(c.values()) if len(c) == options else 0) <= 1, (n, name, c)
    assert counts["layers"] == Counter({1: 60, 2: 60}) and counts["layer0.attention"] == Counter(
        {"full": 60, "identity": 60})


def test_fair_rounds_are_per_decision_and_restart_when_used_up():
    import random

    fair = FairSuggester(random.Random(0))
    first = [fair.suggest_categorical("a", ["x", "y", "z"]) for _ in range(3)]
    second = [fair.suggest_categorical("a", ["x", "y", "z"]) for _ in range(3)]
    assert sorted(first) == sorted(second) == ["x", "y", "z"]
    assert sorted(fair.suggest_int("b", 1, 4) for _ in range(4)) == [1, 2, 3, 4]


def test_few_shot_splits_are_a_partition_of_the_space():
    space = parse_space(SPACE)
    assert split(space, "one") == [Shot()]
    assert [s.label for s in split(space, "d_model")] == ["d_model=16", "d_model=32"]
    assert [s.label for s in split(space, "attention")] == ["layer0.attention=full", "layer0.attention=identity"]
    rng = RandomSuggester(3)
    for _ in range(50):
        arch = space.sample(rng)
        for how in ("d_model", "attention"):
            assert sum(shot.contains(arch) for shot in split(space, how)) == 1


@pytest.mark.parametrize("how", ["d_model", "attention"])
def test_a_few_shot_part_draws_only_the_architectures_it_holds(how):
    space = parse_space(SPACE)
    for shot in split(space, how):
        for sampling in ("uniform", "fair", "sandwich"):
            sampler = PathSampler(space, sampling=sampling, shot=shot, seed=1)
            paths = [a for _ in range(15) for a in sampler.step()]
            assert all(shot.contains(a) for a in paths), (shot, sampling)
    # the rest of the space is still sampled: a second layer picks either kind
    shot = split(space, "attention")[1]
    sampler = PathSampler(space, shot=shot)
    kinds = {a.layers[1].attention.kind for a in (sampler.sample() for _ in range(40)) if len(a.layers) > 1}
    assert kinds == {"full", "identity"}


def test_each_architecture_inherits_from_the_part_that_holds_it(task, tmp_path):
    space = parse_space(SPACE)
    net = train_supernet(space, task, TRAINING, SupernetSettings(factor=1.0, shots="d_model"))
    assert [s.label for s, _ in net.parts] == ["d_model=16", "d_model=32"]
    assert net.steps == 2 * TRAINING.steps_per_experience * task.num_experiences
    loaded = TrainedSupernet.load(net.save(tmp_path / "supernet.pt"))
    assert [s for s, _ in loaded.parts] == [s for s, _ in net.parts]
    rng = RandomSuggester(5)
    archs = {a.d_model: a for a in (space.sample(rng) for _ in range(30))}
    for (shot, snapshots), d in zip(loaded.parts, (16, 32)):
        arch = archs[d]
        assert loaded.snapshots_for(arch) is snapshots
        alone = TrainedSupernet([(Shot(), snapshots)], loaded.fingerprint)
        mine = evaluate_inherited(loaded, arch, task, TRAINING).acc_matrix
        assert mine == evaluate_inherited(alone, arch, task, TRAINING).acc_matrix
    other = loaded.parts[0][1][-1]           # the parts trained apart: their weights differ
    assert any(not torch.equal(other[k], loaded.parts[1][1][-1][k]) for k in other)
    with pytest.raises(DynasError, match="few-shot"):
        loaded.snapshots


def test_a_split_with_one_part_is_refused_naming_the_key():
    space = parse_space(SPACE | {"d_model": [16]})
    with pytest.raises(ConfigError, match="search.supernet.shots.*nothing to split"):
        split(space, "d_model")
    with pytest.raises(ConfigError, match="search.supernet.sampling"):
        PathSampler(space, sampling="random")
