"""The reference models of ``search_space.reference`` as torch modules.

Shape legend: B batch, T tokens, I token features, C classes.
"""
from __future__ import annotations

from torch import Tensor, nn

from dynas.search_space.arch import TaskShape
from dynas.search_space.reference import MLPReference

from .output import ModelOutput


class ReferenceMLP(nn.Module):
    """ReLU MLP on the flattened (B, T * I) input; the same output type as the
    transformers, with no aux losses, so the continual system trains it unchanged."""

    def __init__(self, ref: MLPReference, shape: TaskShape):
        super().__init__()
        widths = ref.widths(shape)
        layers: list[nn.Module] = []
        for n_in, n_out in zip(widths, widths[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU(), nn.Dropout(0.0)]   # p set by training
        self.net = nn.Sequential(*layers[:-2])            # nothing after the logits' layer

    def forward(self, x: Tensor) -> ModelOutput:
        return ModelOutput(self.net(x.flatten(1)), {}, {})
