"""Shared pieces of the search_space suite: a small valid space and a task shape."""
import copy

import pytest

from dynas.search_space.arch import TaskShape

SMALL_SPACE = {
    "layers": [1, 2, 3],
    "d_model": [16, 32],
    "layer": {
        "attention": [
            {"kind": "full", "heads": [2, 4]},
            {"kind": "sliding_window", "heads": [2], "window": [4, 8]},
            {"kind": "dynamic_span", "heads": 4, "max_span": [8]},
        ],
        "ffn": [
            {"kind": "dense", "expansion": [2, 4]},
            {"kind": "moe", "experts": [2, 4], "top_k": [1, 2], "router": ["topk", "dynamic"],
             "top_p": [0.5, 0.9], "shared_experts": [0, 1], "capacity_factor": [0, 1.25],
             "balance": ["aux_loss", "bias"], "expansion": 2},
        ],
    },
}


@pytest.fixture
def space_dict():
    """A fresh deep copy each time: tests may break it."""
    return copy.deepcopy(SMALL_SPACE)


@pytest.fixture
def shape():
    """Split-Digits-like: 16 tokens of 4 pixels, 10 classes."""
    return TaskShape(seq_len=16, num_classes=10, input_dim=4)
