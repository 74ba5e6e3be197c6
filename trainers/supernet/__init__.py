"""Weight sharing: one supernet over an ``ArchSpace`` scores candidates without training them.

One module per job:

- ``sharing``: which shared tensor each parameter of a candidate slices, and how
  (``share_key``, ``take``, ``inherit``), and the architectures that span a space
  (``spanning_archs``);
- ``net``: ``SuperNet``, the shared tensors and the sampled path bound to them;
- ``sampling``: ``PathSampler``, which paths a training step trains (uniform, fair,
  sandwich; restricted to a few-shot part's own);
- ``system``: ``SupernetSystem``, the continual system's step over those paths;
- ``training``: ``train_supernet`` through the experience loop ``fit`` runs (once per
  sub-supernet of a few-shot split), and ``TrainedSupernet``, the per-experience
  snapshots of each part on disk;
- ``scoring``: ``evaluate_inherited``, a candidate's metrics from its slices, the
  same set a stand-alone ``fit`` reports.

The names below are the package's surface (controllers and benchmarks import them
from here).
"""
from __future__ import annotations

from .net import SKELETON_CACHE, SuperNet
from .sampling import MAX_RESAMPLE, SAMPLINGS, FairSuggester, Feasible, PathSampler
from .scoring import evaluate_inherited
from .sharing import ffn_tag, inherit, share_key, spanning_archs, take
from .training import FORMAT, STATE_FILE, SUPERNET_FILE, TrainedSupernet, fingerprint, train_supernet

__all__ = ["FORMAT", "MAX_RESAMPLE", "SAMPLINGS", "SKELETON_CACHE", "STATE_FILE", "SUPERNET_FILE",
           "FairSuggester", "Feasible", "PathSampler", "SuperNet", "TrainedSupernet", "evaluate_inherited", "ffn_tag", "fingerprint", "inherit",
           "share_key", "spanning_archs", "take", "train_supernet"]
