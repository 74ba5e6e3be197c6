"""Replay buffer: reservoir is uniform over the stream, class_balanced balances classes,
DER++ logits travel with their samples, and the state survives a checkpoint."""
import io
from collections import Counter

import pytest
import torch

from dynas.trainers.replay import ReplayBuffer


def stream(buffer: ReplayBuffer, ids: torch.Tensor, labels: torch.Tensor, batch: int, logits=None) -> None:
    """Offer samples whose x is their stream id, so the buffer's content can be traced."""
    for start in range(0, len(ids), batch):
        sl = slice(start, start + batch)
        buffer.add(ids[sl, None].float(), labels[sl], None if logits is None else logits[sl])


def stored_ids(buffer: ReplayBuffer) -> list[int]:
    return sorted(buffer.x[:len(buffer), 0].long().tolist())


def test_reservoir_keeps_everything_until_full():
    buf = ReplayBuffer("reservoir", budget=10, seed=0)
    stream(buf, torch.arange(7), torch.zeros(7, dtype=torch.long), batch=3)
    assert len(buf) == 7 and stored_ids(buf) == list(range(7))
    stream(buf, torch.arange(7, 40), torch.zeros(33, dtype=torch.long), batch=5)
    assert len(buf) == 10 and buf.seen == 40
    assert len(set(stored_ids(buf))) == 10


def test_reservoir_is_uniform_over_the_stream():
    # 1000 samples, budget 100: each sample survives with p = 0.1 whatever its position.
    # Over 200 seeds every block of 100 ids expects 2000 survivors (sd ~ 40): allow 8%.
    runs, n, budget = 200, 1000, 100
    per_block = torch.zeros(10)
    ids, labels = torch.arange(n), torch.zeros(n, dtype=torch.long)
    for seed in range(runs):
        buf = ReplayBuffer("reservoir", budget=budget, seed=seed)
        stream(buf, ids, labels, batch=[5, 16, 64][seed % 3])
        per_block += torch.bincount(torch.tensor(stored_ids(buf)) // 100, minlength=10)
    expected = runs * budget / 10
    assert per_block.sum() == runs * budget
    assert (per_block - expected).abs().max() < 0.08 * expected, per_block.tolist()


def test_same_seed_same_buffer_other_seed_differs():
    ids, labels = torch.arange(500), torch.zeros(500, dtype=torch.long)
    contents = []
    for seed in (3, 3, 4):
        buf = ReplayBuffer("reservoir", budget=50, seed=seed)
        stream(buf, ids, labels, batch=32)
        contents.append(stored_ids(buf))
    assert contents[0] == contents[1] != contents[2]


def test_class_balanced_on_sequential_classes_splits_the_budget():
    # 5 experiences of one class each (200 samples), budget 100 -> 20 per class.
    labels = torch.arange(5).repeat_interleave(200)
    buf = ReplayBuffer("class_balanced", budget=100, seed=0)
    stream(buf, torch.arange(1000), labels, batch=32)
    counts = buf.class_counts()
    assert sorted(counts) == [0, 1, 2, 3, 4] and sum(counts.values()) == 100
    assert max(counts.values()) - min(counts.values()) <= 1
    reservoir = ReplayBuffer("reservoir", budget=100, seed=0)
    stream(reservoir, torch.arange(1000), labels, batch=32)
    assert reservoir.class_counts() != counts     # the baseline is not balanced by design


def test_class_balanced_protects_rare_classes_in_an_imbalanced_stream():
    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.zeros(900), torch.ones(50), torch.full((50,), 2)]).long()
    labels = labels[torch.randperm(1000, generator=g)]
    balanced, reservoir = ReplayBuffer("class_balanced", 90, seed=1), ReplayBuffer("reservoir", 90, seed=1)
    for buf in (balanced, reservoir):
        stream(buf, torch.arange(1000), labels, batch=16)
    assert balanced.class_counts() == {0: 30, 1: 30, 2: 30}
    assert reservoir.class_counts()[0] > 60       # ~81 expected: follows the stream


def test_class_balanced_stored_samples_match_their_labels():
    labels = torch.arange(4).repeat_interleave(50)
    buf = ReplayBuffer("class_balanced", budget=20, seed=0)
    stream(buf, torch.arange(200), labels, batch=8)
    ids = buf.x[:len(buf), 0].long()
    assert torch.equal(buf.y[:len(buf)], labels[ids])
    assert Counter(buf.y[:len(buf)].tolist()) == Counter(buf.class_counts())


def test_per_token_labels_need_groups_for_class_balance():
    x, y = torch.randn(4, 6, 3), torch.full((4, 6), -100)
    with pytest.raises(ValueError, match="groups"):
        ReplayBuffer("class_balanced", 10, seed=0).add(x, y)
    buf = ReplayBuffer("class_balanced", 10, seed=0)
    buf.add(x, y, groups=torch.tensor([0, 0, 1, 1]))
    assert buf.class_counts() == {0: 2, 1: 2}
    ReplayBuffer("reservoir", 10, seed=0).add(x, y)   # reservoir does not need them


def test_sample_returns_distinct_stored_rows_with_their_logits():
    n = 60
    logits = torch.arange(n).float()[:, None].repeat(1, 4)           # (B, C) = id in every column
    buf = ReplayBuffer("reservoir", budget=25, seed=0)
    stream(buf, torch.arange(n), torch.arange(n) % 3, batch=10, logits=logits)
    x, y, lg = buf.sample(10, torch.Generator().manual_seed(0))
    assert x.shape == (10, 1) and y.shape == (10,) and lg.shape == (10, 4)
    assert len(set(x[:, 0].tolist())) == 10
    assert torch.equal(lg[:, 0], x[:, 0]) and torch.equal(y, x[:, 0].long() % 3)
    assert len(buf.sample(100)[0]) == 25                             # capped at what is stored


def test_narrower_logits_are_zero_padded_and_wider_ones_grow_the_store():
    buf = ReplayBuffer("reservoir", budget=8, seed=0)
    buf.add(torch.zeros(2, 1), torch.zeros(2).long(), torch.ones(2, 3))
    buf.add(torch.ones(2, 1), torch.ones(2).long(), torch.ones(2, 2))
    assert buf.logits.shape == (8, 3)
    assert torch.equal(buf.logits[2:4], torch.tensor([[1.0, 1.0, 0.0]] * 2))
    buf.add(torch.ones(1, 1), torch.ones(1).long(), torch.ones(1, 5))
    assert buf.logits.shape == (8, 5) and buf.logits[0, 3:].eq(0).all() and buf.logits[4].eq(1).all()
    with pytest.raises(ValueError, match="logits"):
        buf.add(torch.ones(1, 1), torch.ones(1).long())


def test_shape_mismatch_and_empty_buffer_are_errors():
    buf = ReplayBuffer("reservoir", budget=4, seed=0)
    with pytest.raises(ValueError, match="empty"):
        buf.sample(1)
    buf.add(torch.zeros(2, 3), torch.zeros(2).long())
    with pytest.raises(ValueError, match="shape"):
        buf.add(torch.zeros(2, 4), torch.zeros(2).long())
    with pytest.raises(ValueError):
        ReplayBuffer("fifo", budget=4, seed=0)


def test_zero_budget_stores_nothing():
    buf = ReplayBuffer("class_balanced", budget=0, seed=0)
    buf.add(torch.zeros(5, 2), torch.arange(5))
    assert len(buf) == 0 and buf.seen == 5


@pytest.mark.parametrize("policy", ["reservoir", "class_balanced"])
def test_state_dict_round_trip_continues_identically(policy):
    labels = torch.arange(300) % 5
    logits = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
    first = ReplayBuffer(policy, budget=40, seed=7)
    stream(first, torch.arange(150), labels[:150], batch=16, logits=logits[:150])
    blob = io.BytesIO()
    torch.save(first.state_dict(), blob)
    blob.seek(0)
    second = ReplayBuffer(policy, budget=40, seed=0)                # seed comes from the checkpoint
    second.load_state_dict(torch.load(blob, weights_only=True))
    for buf in (first, second):
        stream(buf, torch.arange(150, 300), labels[150:], batch=16, logits=logits[150:])
    assert torch.equal(first.x, second.x) and torch.equal(first.logits, second.logits)
    assert first.class_counts() == second.class_counts() and first.seen == second.seen == 300
    assert torch.equal(first.sample(8)[0], second.sample(8)[0])


def test_loading_a_different_configuration_is_refused():
    buf = ReplayBuffer("reservoir", budget=4, seed=0)
    with pytest.raises(ValueError, match="class_balanced"):
        buf.load_state_dict(ReplayBuffer("class_balanced", budget=4, seed=0).state_dict())
