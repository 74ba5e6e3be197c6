"""Grouped matmul for MoE experts: one padded ``bmm`` instead of a loop over experts.

Shape legend: S rows (routed slots, sorted by expert), E experts, C capacity of the
padded layout (the largest group), K input width, M output width.

Why: on a CPU, a loop of E small matmuls (and their E backward pairs) pays per-op
overhead E times, and with two threads on a busy machine every small op waits for its
OpenMP team; the loop measured 2.8x a dense FFN of equal active size when the other
core was busy. The expert groups ``pad`` their S rows once into an (E, C, D)
zero-padded block, run every matmul of the expert as one ``grouped_mm`` (a ``bmm``
with the stacked (E, K, M) weights) and ``unpad`` the S useful rows at the end.

Padding costs E * C - S rows of wasted matmul work (and two copies of the rows);
``use_padded`` takes the loop at one thread and for layouts that pad by more than
``MAX_PADDING_RATIO``.
The op is a ``torch.library`` custom op so ``FlopCounterMode`` sees one op, whose
formula (``trainers.modules.flops``) counts the useful 2 * S * K * M FLOPs, S read from
the shape of the ``slots`` it is given: padding is
a runtime cost, never a model cost (the cost model and the loop count the same).
"""
from __future__ import annotations

import torch
from torch import Tensor

# Rule measured with benchmarks/moe_layer.py --sweep (CPU, fwd+bwd; docs/benchmarks.md):
# at one thread the loop was 1.06x a dense FFN and the padded bmm 1.40x (padding and
# its copies cost more than E small matmuls: no OpenMP team to wait for); with two
# threads on a loaded machine the loop was 3.3-4.2x and the padded bmm 1.4-2.4x. So
# several threads take the padded bmm unless the padding exceeds half the useful rows.
# Off the CPU the loop stays (CUDA queues small kernels asynchronously; untested here).
# The choice depends on the thread count only, never on load: a run stays deterministic.
MAX_PADDING_RATIO = 1.5


def use_padded(x: Tensor, counts: list[int], threads: int | None = None) -> bool:
    """Whether ``grouped_mm`` should run these groups (else a loop over experts);
    ``threads`` defaults to ``torch.get_num_threads()``."""
    rows = sum(counts)
    threads = torch.get_num_threads() if threads is None else threads
    return (x.device.type == "cpu" and threads > 1 and rows > 0
            and len(counts) * max(counts) <= MAX_PADDING_RATIO * rows)


def padded_slots(counts: list[int], device: torch.device) -> tuple[Tensor, int]:
    """(S,) row of each sorted slot in the (E * C, .) padded block, and C."""
    capacity = max(counts)
    sizes = torch.tensor(counts, device=device)                        # (E,)
    expert = torch.repeat_interleave(torch.arange(len(counts), device=device), sizes,
                                     output_size=sum(counts))          # (S,)
    starts = torch.cumsum(sizes, 0) - sizes                            # (E,)
    within = torch.arange(expert.shape[0], device=device) - starts[expert]
    return expert * capacity + within, capacity


def pad(x: Tensor, slots: Tensor, experts: int, capacity: int) -> Tensor:
    """(S, K) rows sorted by expert -> (E, C, K), zeros in the padding rows (finite, so
    the weight gradient's padding terms are 0 * 0)."""
    out = x.new_zeros(experts * capacity, x.shape[1])
    return out.index_copy_(0, slots, x).view(experts, capacity, x.shape[1])


def unpad(y: Tensor, slots: Tensor) -> Tensor:
    """(E, C, M) -> (S, M): the useful rows, in sorted slot order."""
    return y.reshape(-1, y.shape[2]).index_select(0, slots)


@torch.library.custom_op("dynas::grouped_mm", mutates_args=())
def grouped_mm(x: Tensor, weight: Tensor, bias: Tensor | None, slots: Tensor) -> Tensor:
    """x (E, C, K) padded by ``pad``, weight (E, K, M), bias (E, M) or None -> (E, C, M).

    A ``baddbmm`` whose useful rows are ``slots`` (S,): only their count matters here,
    for the FLOP formula; padding rows hold values nobody reads (their gradient is 0)."""
    if bias is None:
        return torch.bmm(x, weight)
    return torch.baddbmm(bias.unsqueeze(1), x, weight)


@grouped_mm.register_fake
def _(x, weight, bias, slots):
    return x.new_empty(x.shape[0], x.shape[1], weight.shape[2])


def _setup(ctx, inputs, output) -> None:
    x, weight, bias, slots = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx, grad: Tensor):
    x, weight = ctx.saved_tensors
    grad_x = torch.bmm(grad, weight.transpose(1, 2))                  # (E, C, K)
    grad_w = torch.bmm(x.transpose(1, 2), grad)                       # (E, K, M)
    grad_b = grad.sum(1) if ctx.has_bias else None                    # (E, M)
    return grad_x, grad_w, grad_b, None


grouped_mm.register_autograd(_backward, setup_context=_setup)

# Under CPU autocast the op runs in bf16 as a whole (its inputs cast, autocast off
# inside), as the loop's matmuls would; its backward then sees one dtype.
torch.library.register_autocast("dynas::grouped_mm", "cpu", torch.bfloat16)
