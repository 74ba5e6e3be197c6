"""``SupernetSystem``: the continual system whose step trains every path the supernet's
sampler plans for it (one for ``uniform`` and ``fair``; the largest, the smallest and
``sandwich_paths`` random ones for ``sandwich``).

Each path sees the same inputs: the step's masking and replay draws are made once (the
system's generator is rewound for every further path), so the paths differ only in
their weights. Their losses are summed, so one backward and one optimiser step take
every path's gradient (BigNAS's sandwich update). The batch is offered to the replay
buffer once, and the training curves log the first path of each step (for
``sandwich``: the largest).
"""
from __future__ import annotations

from torch import Tensor

from ..system import ContinualSystem


class SupernetSystem(ContinualSystem):
    """``ContinualSystem`` with a ``SuperNet`` as its model (module docstring)."""

    _further_path = False                    # True while a step trains its 2nd, 3rd, ... path

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        net = self.model
        paths = net.sampler.step()
        start = self.generator.get_state()
        total = None
        try:
            for i, arch in enumerate(paths):
                if i:
                    self.generator.set_state(start)
                self._further_path = i > 0
                net.use(arch)
                loss = super().training_step(batch, batch_idx)
                total = loss if total is None else total + loss
        finally:
            self._further_path = False
            net.use(None)
        net.sampled += len(paths)
        return total

    def _remember(self, x: Tensor, y: Tensor, logits: Tensor) -> None:
        if not self._further_path:
            super()._remember(x, y, logits)

    def _log_terms(self, terms: dict[str, Tensor]) -> None:
        if not self._further_path:
            super()._log_terms(terms)
