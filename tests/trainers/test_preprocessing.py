"""Preprocessing state: fitted on train only, saved as JSON, re-applied identically.

Every task's preprocessing must rebuild its own test split from the raw test inputs,
so a ``Predictor`` given raw data sees exactly what the model was evaluated on.
"""
import json

import pytest
import torch

from dynas.search_space.errors import DynasError
from dynas.search_space.settings import TaskSettings
from dynas.trainers.tasks import build_task
from dynas.trainers.tasks.fashion_mnist import resolve_root
from dynas.trainers.tasks.text import corpus_available
from dynas.trainers.tasks.preprocessing import (PREPROCESSING, Features, ImagePatches, Tokens, Vocabulary,
                                          preprocessing_from_json, preprocessing_to_json)

SMALL = {"split_digits": {}, "assoc_recall": {"n_train": 8, "n_val": 4, "n_test": 6},
         "split_fashion_mnist": {"train_per_class": 20, "test_per_class": 10},
         "text_classify": {}, "text_lm": {"seq_len": 128, "n_train": 4, "n_val": 2, "n_test": 3, "categories": 2}}


def _task(name):
    if name == "split_fashion_mnist" and not (resolve_root(None) / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    if name.startswith("text_") and not corpus_available():
        pytest.skip("the BBC corpus package is not installed (the text extra)")
    return build_task(TaskSettings(name, SMALL[name]), seed=1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_saved_preprocessing_rebuilds_the_test_split_from_raw_inputs(name):
    task = _task(name)
    saved = json.loads(json.dumps(preprocessing_to_json(task.preprocessing)))   # through JSON
    prep = preprocessing_from_json(saved)
    for exp in task.experiences:
        assert torch.equal(prep(exp.raw_test), exp.test.tensors[0])


def test_image_statistics_come_from_the_training_images_only():
    train = torch.tensor([[[0.0, 2.0], [4.0, 6.0]]])
    prep = ImagePatches.fit(train, patch=1, scale=2.0)
    assert prep.mean == pytest.approx(1.5) and prep.std == pytest.approx(float(torch.tensor([0.0, 1, 2, 3]).std()))
    z = prep(train)
    assert z.shape == (1, 4, 1) and abs(float(z.mean())) < 1e-6
    assert prep(torch.full((2, 2), 100.0)).shape == (1, 4, 1)     # a single image is a batch of one


def test_vocabulary_is_built_from_training_texts_and_maps_unknowns():
    vocab = Vocabulary.fit(["abba", "ab"], seq_len=5)
    assert vocab.tokens == ("<pad>", "<unk>", "a", "b") and vocab.vocab_size == 4
    assert vocab(["abz", "bbbbbbb"]).tolist() == [[2, 3, 1, 0, 0], [3, 3, 3, 3, 3]]
    again = preprocessing_from_json(json.loads(json.dumps(preprocessing_to_json(vocab))))
    assert again == vocab


def test_feature_statistics_are_per_feature_and_from_the_training_rows_only():
    prep = Features.fit(torch.tensor([[0.0, 100.0], [2.0, 300.0]]))
    assert prep.mean == pytest.approx((1.0, 200.0)) and prep.std == pytest.approx((2 ** 0.5, 100 * 2 ** 0.5))
    z = prep(torch.tensor([1.0, 200.0]))                  # one row is a batch of one
    assert z.shape == (1, 2, 1) and torch.allclose(z, torch.zeros(1, 2, 1))
    with pytest.raises(DynasError, match=r"expected rows of shape \(N, 2\)"):
        prep(torch.zeros(1, 3))


@pytest.mark.parametrize("kind", sorted(PREPROCESSING))
def test_every_kind_round_trips_through_json(kind):
    examples = {"image_patches": ImagePatches(side=4, patch=2, scale=1.0, mean=0.5, std=2.0),
                "tokens": Tokens(vocab_size=10, seq_len=3),
                "vocabulary": Vocabulary(tokens=("<pad>", "<unk>", "x"), seq_len=2, split="whitespace"),
                "features": Features(mean=(0.0, 10.0), std=(1.0, 5.0))}
    prep = examples[kind]
    assert preprocessing_from_json(json.loads(json.dumps(preprocessing_to_json(prep)))) == prep


@pytest.mark.parametrize("data, raw, match", [
    ({"kind": "nope", "state": {}}, None, "unknown preprocessing kind 'nope'"),
    ({"kind": "tokens"}, None, "expected {kind, state}"),
    ({"kind": "tokens", "state": {"vocab_size": 3}}, None, "bad tokens state"),
    ({"kind": "tokens", "state": {"vocab_size": 3, "seq_len": 2}}, [[0, 5]], r"token ids must be in \[0, 3\)"),
    ({"kind": "image_patches", "state": {"side": 4, "patch": 2, "scale": 1.0}}, torch.zeros(1, 3, 3),
     r"expected images of shape \(N, 4, 4\)"),
])
def test_bad_states_and_inputs_are_one_line_errors(data, raw, match):
    with pytest.raises(DynasError, match=match):
        prep = preprocessing_from_json(data)
        prep(raw)


@pytest.mark.parametrize("prep, raw, said", [
    (ImagePatches(side=4, patch=2, scale=1.0, mean=0.5, std=2.0), torch.zeros(3, 3), "got (3, 3)"),
    (Tokens(vocab_size=10, seq_len=3), torch.zeros(5, dtype=torch.long), "got (5,)"),
    (Features(mean=(0.0, 10.0), std=(1.0, 5.0)), torch.zeros(3), "got (3,)"),
])
def test_a_wrong_shape_is_named_as_the_caller_passed_it(prep, raw, said):
    """One sample is accepted as a batch of one; an error must not show that batch."""
    with pytest.raises(DynasError) as err:
        prep(raw)
    assert str(err.value).endswith(said)
