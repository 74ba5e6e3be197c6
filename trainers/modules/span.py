"""Adaptive-span attention (Sukhbaatar et al., 2019, "Adaptive Attention Span").

Shape legend: B batch, T tokens, D model, H heads, Dh head dim, s window (keys per
query distance), N query blocks, c queries per block, W keys per block (``span_keys``:
the slab within distance s of a block's queries, about s + c causal, 2s + c
bidirectional).

Each head h learns a span z_h in [0, max_span]. Attention weights are multiplied by a
soft ramp over the query-key distance d, m(d) = clamp((R + z_h - d) / R, 0, 1), and
renormalised, so the span is differentiable. Work is blocked over a hard window of
s tokens, s = ``cropped_span``: the longest head span plus the ramp, rounded up to
``SPAN_BLOCK`` (at most max_span). Keys beyond it have
mask weight m = 0 *and* dm/dz = 0 (the clamp is flat there), so the soft mask over
the whole max_span window is kept exactly, forward and backward, in training and in
evaluation (so also in exported models), while compute falls with the learned span.
The reference implementation trims its memory the same way (``trim_memory``). A span
can still grow: the ramp's keys (z, z + R] are inside the crop and carry its gradient.

Growth beyond the ramp (``grow``, training only): with the ramp alone a dependency
farther than z + R gives the span no gradient at all (m and dm/dz are both 0 there),
so a span that shrank below a need, or a later experience needing a longer range,
can never reach it. In training the crop therefore also covers a *probe* of
2 (z + R) more tokens (a window of 3 times the evaluated reach, capped at
max_span); a probe key gets the mask value ``PROBE`` (1e-6: its output weight is
negligible) and the ramp's slope 1/R as a straight-through gradient, so
dL/dz there is what the ramp would give if it reached that far: a far key the loss
needs pulls the span out, one it does not is left to the L1 penalty. Evaluation
(and so every measured cost and exported model) keeps the exact crop at z + R.

Reopening (``reopen``, training only): the probe alone grows a span too slowly for
a later experience that needs a longer range (the queries have not learned to match
a key that the mask hides, so its pull is weak and noisy against the L1 penalty:
``benchmarks/span_range.py``, a stream of d = 8, 24, 48 stayed at chance on 48).
So when a later experience starts (``new_experience``, called by the trainer), each
span opens again to ``init_fraction`` of max_span, as at the first: the new
experience's dependencies are visible, and the L1 penalty trims the span back to what
the loss pays for.

Holding the penalty (``penalty_hold``, training only; 0, the default, is off): for the
first ``penalty_hold`` training steps of each experience the L1 penalty is 0 (value and
gradient). Under Adam a constant gradient is normalised to a step of ``lr``, whatever
its size: while the task gives a span no gradient (before the model has learned to
read a far key, and at z >= T, where every key sits on the flat part of the mask),
any positive L1 weight shrinks z by ``lr x max_span`` tokens a step. At T = 256,
lr 0.01 that is 2.56 tokens a step, so a span reaches below a need at d = 192 in
about 40 steps, long before full attention learns that dependency (hundreds of
steps), and the probe cannot pull it back (the queries never learned to match the key):
``benchmarks/span_range.py`` measured spans of 0 at d = 192 with the L1 weight 0.1 and
0.01 alike. For the same reason a *ramp* of the L1 weight from 0 does not help under
Adam (the step does not scale with the weight); a hold of exactly 0 does. The
reference implementation (Adagrad, also scale-free) warms up ``lr`` for every parameter
instead; a hold delays only the penalty. With a hold of 300 of 800 steps the same
benchmark learned d = 192 at full attention's accuracy (docs/benchmarks.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dynas.search_space.kinds.attention import cropped_span, span_blocked, span_keys, span_ramp

from .attention import HeadProjection, key_slabs, slab_positions, to_blocks
from .positions import alibi_bias
from .registry import builder

PROBE = 1e-6           # mask value of a probe key beyond the ramp (training, ``grow``)
PENALTY_HOLD = 0       # training steps per experience with no L1 penalty (0: off)
INIT_FRACTION = 1.0    # spans start at max_span: every dependency is visible at first


class DynamicSpanAttention(nn.Module):
    """Blocked softmax attention with a learnable soft span per head.

    ``span_fraction`` (H,) holds z_h / max_span, initially ``init_fraction``:
    ``INIT_FRACTION`` (1, the whole max_span), so every dependency is inside the mask
    when training starts and the L1 penalty trims what the loss does not pay for. (The
    reference implementation starts at 0, ``--adapt-span-init 0``, and on a dependency
    farther than the ramp the span then never moved: ``benchmarks/span_range.py``.)
    ``grow``: the training-time probe beyond the ramp; ``reopen``: spans open again
    when a later experience starts; ``penalty_hold``: training steps at the start of
    each experience with no L1 penalty (all three: module docstring). Its forward value is clamped to
    [0, 1] with a straight-through gradient, so a span pushed past a bound is not
    stuck there. Aux loss ``"span"``: mean over heads of relu(z_h) / max_span, the L1
    penalty that shrinks spans not worth their cost (weight set by the trainer).
    ``crop``: whether to skip the keys beyond the learned spans (True; False computes
    over the whole ``max_span`` window, for comparisons: same outputs and gradients).
    """

    def __init__(self, d_model: int, heads: int, max_span: int, causal: bool = False,
                 ramp: int | None = None, init_fraction: float = INIT_FRACTION, grow: bool = True,
                 reopen: bool = True, penalty_hold: int = PENALTY_HOLD):
        super().__init__()
        if max_span < 1:
            raise ValueError(f"max_span must be >= 1, got {max_span}")
        if isinstance(penalty_hold, bool) or not isinstance(penalty_hold, int) or penalty_hold < 0:
            raise ValueError(f"penalty_hold must be an integer >= 0, got {penalty_hold!r}")
        self.proj = HeadProjection(d_model, heads)
        self.max_span = max_span
        self.ramp = ramp if ramp is not None else span_ramp(max_span)
        self.causal = causal
        self.span_fraction = nn.Parameter(torch.full((heads,), float(init_fraction)))
        self.crop = True
        self.grow = grow
        self.init_fraction, self.reopen = float(init_fraction), reopen
        self.penalty_hold = penalty_hold
        self.trained_steps = 0     # training forwards this experience (not state: a resume restarts the hold)
        self.alibi = False                          # ``positions: alibi``

    def spans(self) -> Tensor:
        """Current spans in tokens, (H,), clamped to [0, max_span] (straight-through)."""
        f = self.span_fraction
        clamped = f + (f.clamp(0.0, 1.0) - f).detach()
        return clamped * self.max_span

    @torch.no_grad()
    def new_experience(self) -> None:
        """A later experience starts (the trainer calls this): with ``reopen``, a span
        shorter than ``init_fraction`` of max_span opens to it again. The penalty's hold
        starts again either way: the new experience's dependencies are not learned yet."""
        self.trained_steps = 0
        if self.reopen:
            self.span_fraction.clamp_(min=self.init_fraction)

    def probing(self) -> bool:
        """Whether this forward probes beyond the ramp (training with ``grow``)."""
        return self.grow and self.training

    def window(self) -> int:
        """Window s of this forward: the crop of the current spans (plus the probe
        of 2 (z + R) tokens when probing)."""
        if not self.crop:
            return self.max_span
        longest = float(self.spans().detach().max())
        if self.probing():
            longest += 2 * (longest + self.ramp)
        return cropped_span(longest, self.max_span, self.ramp)

    def block_bias(self, dist: Tensor, s: int) -> Tensor:
        """(H, 1, c, W) additive score bias over one block's query - key offsets
        ``dist`` (c, W): the same for every block, so it is built once per forward at
        the size of one block (the per-block copy is a single ``where``).

        m * softmax(scores) renormalised == softmax(scores + log m): one bias carries
        the hard window (-inf beyond the crop ``s``, and the future when causal) and the
        soft ramp (log m; clamped so that log(0) never meets a zero gradient as nan).
        """
        if not self.causal:
            dist = dist.abs()
        z = self.spans().view(-1, 1, 1, 1)                              # (H, 1, 1, 1)
        ramp = (self.ramp + z - dist) / self.ramp                      # (H, 1, c, W)
        soft = ramp.clamp(0.0, 1.0)
        if self.probing():   # beyond the ramp: value PROBE, the ramp's slope as gradient
            soft = torch.where(ramp > 0, soft, PROBE + ramp - ramp.detach())
        bias = torch.where((dist >= 0) & (dist < s), soft.clamp(min=1e-30).log(), float("-inf"))
        if self.alibi:
            bias = bias + alibi_bias(z.shape[0], dist).unsqueeze(1)
        return bias

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        b, t, _ = x.shape
        q, k, v = self.proj.split(x)                          # (B, H, T, Dh)
        s = self.window()
        if not span_blocked(t, s, self.causal):  # one block of every key is cheaper
            qb, kb, vb = q.unsqueeze(2), k.unsqueeze(2), v.unsqueeze(2)   # (B, H, 1, T, Dh)
            qpos, kpos = slab_positions(t, t, 0, t, x.device)           # (1, T, 1), (1, 1, T)
        else:   # query blocks of c, each with the slab of keys within s of its queries
            c, width = span_keys(s, self.causal)
            qb = to_blocks(q, c)                                        # (B, H, N, c, Dh)
            kb = key_slabs(k, c, s - 1, width)                          # (B, H, N, W, Dh)
            vb = key_slabs(v, c, s - 1, width)                          # (B, H, N, W, Dh)
            qpos, kpos = slab_positions(t, c, s - 1, width, x.device)
        bias = self.block_bias(qpos[0] - kpos[0], s)                    # (H, 1, c, W)
        if qb.shape[2] > 1:   # keys outside [0, T): the first (and last) blocks' padding
            bias = torch.where((kpos >= 0) & (kpos < t), bias, float("-inf"))   # (H, N, c, W)
        h, n, c, _ = bias.shape
        # One SDPA call per head, its blocks as SDPA's "heads": the blocked q, k, v are
        # strided views (no copies) and the head's mask is shared by the whole batch.
        # (One call over heads x blocks must copy all three into (B, H * N, ...) and
        # read a mask per head and block: 5-10% slower on CPU, measured at T=1024-2048.)
        y = q.new_empty(b, n * c, h, q.shape[-1])                       # (B, N*c, H, Dh)
        for i in range(h):
            y[:, :, i] = F.scaled_dot_product_attention(
                qb[:, i], kb[:, i], vb[:, i], attn_mask=bias[i][None]).flatten(1, 2)
        return self.proj.merge(y[:, :t].transpose(1, 2)), {"span": self.penalty()}

    def penalty(self) -> Tensor:
        """The L1 span penalty of this forward (counting it as a training step when
        training): mean over heads of relu(z_h) / max_span, times 0 while held."""
        penalty = self.span_fraction.clamp(min=0.0).mean()
        if self.training and torch.is_grad_enabled():
            self.trained_steps += 1
        if self.training and 0 < self.penalty_hold and self.trained_steps <= self.penalty_hold:
            return penalty * 0.0
        return penalty


@builder("attention", "dynamic_span")
def build_dynamic_span(cfg, d_model: int, causal: bool) -> nn.Module:
    return DynamicSpanAttention(d_model, cfg.heads, cfg.max_span, causal=causal)
