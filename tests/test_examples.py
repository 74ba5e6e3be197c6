"""Every shipped example is a valid experiment whose sampled models build and run."""
from pathlib import Path

import pytest
import torch

from dynas.search_space import ArchSpace, RandomSuggester, load_experiment
from dynas.trainers.model import build_model
from dynas.trainers.tasks import task_shape

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert {p.name for p in EXAMPLES} >= {"quickstart.yaml", "ppo_search.yaml",
                                          "nsga2_fashion_mnist.yaml", "sequence_search.yaml",
                                          "text_search.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_samples_models_that_run_forward(path):
    experiment = load_experiment(path)
    if not isinstance(experiment.space, ArchSpace):
        sample = experiment.space.sample(RandomSuggester(0))
        assert sample.to_dict()
        return
    shape = task_shape(experiment.task)
    for seed in range(3):
        arch = experiment.space.sample(RandomSuggester(seed))
        model = build_model(arch, shape)
        if shape.vocab_size:
            x = torch.randint(0, shape.vocab_size, (2, shape.seq_len))
        else:
            x = torch.randn(2, shape.seq_len, shape.input_dim)
        logits = model(x).logits
        width = (2, shape.seq_len, shape.num_classes) if shape.per_token else (2, shape.num_classes)
        assert tuple(logits.shape) == width and torch.isfinite(logits).all()
