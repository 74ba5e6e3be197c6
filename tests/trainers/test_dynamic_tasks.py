"""The tasks with a known answer for dynamic blocks: ``span_range`` answers depend on
one token exactly the experience's distance back, ``hard_easy`` labels its hard and
easy positions right, both read off the data by an independent solver."""
import pytest
import torch

from dynas.search_space.errors import ConfigError
from dynas.search_space.settings import TaskSettings
from dynas.trainers.tasks import build_task as build_settings
from dynas.trainers.tasks.dynamic import easy_positions, hard_positions

SMALL = {"n_train": 40, "n_val": 8, "n_test": 8}


def build_task(name, seed=0, **options):
    return build_settings(TaskSettings(name, options), seed=seed)


def answers(y):
    """(positions, labels) of one row's labelled tokens."""
    where = torch.nonzero(y != -100).flatten()
    return where.tolist(), y[where].tolist()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_each_range_answer_is_the_one_value_token_its_distance_back(split):
    task = build_task("span_range", seed=1, distances=[16, 64, 192], seq_len=256, **SMALL)
    assert task.shape.seq_len == 256 and task.num_experiences == 3
    for exp, d in zip(task.experiences, (16, 64, 192)):
        x, y = getattr(exp, split).tensors
        for row in range(len(x)):
            (p,), (label,) = answers(y[row])
            assert p >= d and x[row, p] == 1                     # the query
            assert x[row, p - d] == label and label in exp.classes
            # nothing else carries the answer: the one value token of the row
            assert int((x[row] >= min(exp.classes)).sum()) == 1


def test_a_spread_draws_distances_from_its_range():
    task = build_task("span_range", seed=0, distances=[10], spread=4, seq_len=32, **SMALL)
    x, y = task.experiences[0].train.tensors
    first_value = min(task.experiences[0].classes)
    distances = set()
    for row in range(len(x)):
        (p,), _ = answers(y[row])
        distances.add(p - int(torch.nonzero(x[row] >= first_value).flatten()[0]))
    assert distances <= set(range(6, 11)) and len(distances) > 1


def test_range_options_are_checked():
    with pytest.raises(ConfigError, match="distances"):
        build_task("span_range", distances=[300], seq_len=256)
    with pytest.raises(ConfigError, match="spread"):
        build_task("span_range", distances=[4, 8], spread=4)


@pytest.mark.parametrize("hard_terms,summed", [(0, 4), (4, 4), (2, 2), (3, 3)])
def test_hard_positions_sum_the_leading_terms_and_easy_ones_copy_the_first(hard_terms, summed):
    task = build_task("hard_easy", seed=2, terms=4, answers=8, hard_share=0.25, modulus=10,
                      hard_terms=hard_terms, **SMALL)
    for exp in task.experiences:
        base = min(exp.classes)
        x, y = exp.train.tensors
        hard, easy = hard_positions(x), easy_positions(x)
        assert not (hard & easy).any()
        assert ((hard | easy) == (y != -100)).all()              # every answer is labelled
        assert (hard.sum(dim=1) == 2).all()                      # exactly a quarter hard
        numbers = x[:, :4] - base
        for row in range(len(x)):
            for p in torch.nonzero(hard[row]).flatten():
                assert y[row, p] == base + int(numbers[row, :summed].sum()) % 10
            for p in torch.nonzero(easy[row]).flatten():
                assert y[row, p] == base + int(numbers[row, 0])


def test_the_default_hard_answer_still_sums_every_term():
    """``hard_terms`` 0 (the default) keeps the task as it was: the same samples as
    ``hard_terms = terms``."""
    old = build_task("hard_easy", seed=3, terms=3, **SMALL).experiences[0].train.tensors
    same = build_task("hard_easy", seed=3, terms=3, hard_terms=3, **SMALL).experiences[0].train.tensors
    fewer = build_task("hard_easy", seed=3, terms=3, hard_terms=2, **SMALL).experiences[0].train.tensors
    assert torch.equal(old[0], same[0]) and torch.equal(old[1], same[1])
    assert torch.equal(old[0], fewer[0]) and not torch.equal(old[1], fewer[1])


@pytest.mark.parametrize("hard_terms", [1, 5, -1, 2.0])
def test_hard_terms_is_checked(hard_terms):
    with pytest.raises(ConfigError, match="hard_terms"):
        build_task("hard_easy", terms=4, hard_terms=hard_terms, **SMALL)
