"""Common random numbers: at one training seed every candidate sees the same data order
and the same replay draws, whatever its architecture, so a calibration's (and a
search's) differences between architectures are not differences between data streams
(issue 23). What is left to a seed is the initialisation."""
import torch

from dynas.search_space.arch import ArchConfig, AttentionConfig, FFNConfig, LayerConfig
from dynas.search_space.settings import ReplaySettings
from tests.trainers.test_system import make_system, moe_arch, task, train_experience  # noqa: F401 (fixture)

DENSE = ArchConfig(32, (LayerConfig(AttentionConfig("full", 4), FFNConfig("dense", expansion=2)),) * 2)


def stream(system, task, k, seed=None):
    """Experience k's batches (as served) and the first replay draw, after ``begin``."""
    system.begin_experience(k, task.experiences[k], 12, k + 1, seed=k if seed is None else seed)
    batches = [tuple(t.clone() for t in batch) for batch in system.train_dataloader()]
    return batches, system.replay.sample(16, system.generator)[:2]


def test_two_architectures_see_the_same_batches_and_replay_draws(task):
    a = make_system(task, moe_arch(), replay=ReplaySettings("class_balanced", 60))
    b = make_system(task, DENSE, replay=ReplaySettings("class_balanced", 60))
    assert sum(p.numel() for p in a.parameters()) != sum(p.numel() for p in b.parameters())
    train_experience(a, task, 0)
    train_experience(b, task, 0)
    for x, y in zip(a.replay.x[:len(a.replay)], b.replay.x[:len(b.replay)]):
        assert torch.equal(x, y), "the replay buffers hold the same samples"
    (batches_a, draw_a), (batches_b, draw_b) = stream(a, task, 1), stream(b, task, 1)
    assert len(batches_a) == len(batches_b) == 12
    assert all(torch.equal(p, q) for ba, bb in zip(batches_a, batches_b) for p, q in zip(ba, bb))
    assert all(torch.equal(p, q) for p, q in zip(draw_a, draw_b))
    assert not torch.equal(stream(a, task, 1, seed=7)[0][0][1], batches_a[0][1]), "another seed, another order"
