"""The experts' padded grouped matmul (trainers/modules/grouped.py): the same function,
gradients and FLOP count as the per-expert loop; the shape rule that picks it; the
stacked expert weights code can list (quantisation)."""
import pytest
import torch

from dynas.trainers.modules import ExpertGroup, GLUExpertGroup, measured_flops
from dynas.trainers.modules.grouped import MAX_PADDING_RATIO, padded_slots, use_padded

D = 16
GROUPS = [ExpertGroup, GLUExpertGroup]
COUNTS = [[3, 2, 4, 1], [3, 0, 5, 2], [10, 0, 0, 0]]     # even, an idle expert, all on one


class _Run(torch.nn.Module):
    """An expert group on fixed split sizes through one of its paths."""

    def __init__(self, group, counts, path="forward"):
        super().__init__()
        self.group, self.counts, self.path = group, counts, path

    def forward(self, x):
        return getattr(self.group, self.path)(x, self.counts)


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("counts", COUNTS, ids=str)
def test_padded_path_equals_the_loop_forward_and_backward(group, counts):
    torch.manual_seed(0)
    g = group(len(counts), D, 8)
    x = torch.randn(sum(counts), D)
    results = []
    for path in ("padded", "loop"):
        g.zero_grad()
        xi = x.clone().requires_grad_()
        y = getattr(g, path)(xi, counts)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        results.append((y, xi.grad, [p.grad.clone() for p in g.parameters()]))
    (y, gx, gp), (y_ref, gx_ref, gp_ref) = results
    assert torch.allclose(y, y_ref, atol=1e-5) and torch.allclose(gx, gx_ref, atol=1e-5)
    for a, b in zip(gp, gp_ref):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("group", GROUPS)
def test_flops_count_the_useful_rows_not_the_padding(group):
    """The loop and the padded path count the same FLOPs (the cost model's)."""
    counts = [3, 2, 4, 1]                       # capacity 4: 16 padded rows for 10
    g = group(len(counts), D, 8)
    x = torch.randn(sum(counts), D)
    padded, loop = (measured_flops(_Run(g, counts, path), x) for path in ("padded", "loop"))
    assert padded == loop > 0


def test_the_rule_takes_the_padded_bmm_with_threads_and_little_padding():
    x = torch.zeros(1, D)
    assert use_padded(x, [3, 3, 4, 3], threads=2)                       # 16 rows for 13
    assert not use_padded(x, [3, 3, 4, 3], threads=1)                   # one thread: the loop
    assert not use_padded(x, [10, 0, 0, 0], threads=2)                  # 40 rows for 10
    assert not use_padded(x, [0, 0, 0, 0], threads=2)
    assert not use_padded(torch.zeros(1, D, device="meta"), [3, 3, 4, 3], threads=2)   # CPU only
    counts = [5, 2, 3, 4]
    assert use_padded(x, counts, threads=4) == (
        len(counts) * max(counts) <= MAX_PADDING_RATIO * sum(counts))


def test_padded_slots_place_each_expert_in_its_own_rows():
    slots, capacity = padded_slots([2, 0, 3], torch.device("cpu"))
    assert capacity == 3 and slots.tolist() == [0, 1, 6, 7, 8]


def test_grouped_mm_passes_torch_op_checks():
    slots, cap = padded_slots([3, 2, 4, 1], torch.device("cpu"))
    args = (torch.randn(4, cap, D), torch.randn(4, D, 8), torch.randn(4, 8), slots)
    torch.library.opcheck(torch.ops.dynas.grouped_mm.default, args)


@pytest.mark.parametrize("group", GROUPS)
def test_padded_path_runs_in_bf16_under_autocast(group):
    g = group(4, D, 8)
    x = torch.randn(10, D, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = g.padded(x, [3, 2, 4, 1])
    y.float().sum().backward()
    assert y.dtype == torch.bfloat16
    assert x.grad.dtype == torch.float32 and all(p.grad.dtype == torch.float32 for p in g.parameters())


@pytest.mark.parametrize("group,names", [(ExpertGroup, {"w_up", "w_down"}),
                                         (GLUExpertGroup, {"w_gate", "w_up", "w_down"})])
def test_expert_weights_lists_the_stacked_matmul_weights(group, names):
    g = group(4, D, 8)
    weights = g.expert_weights()
    assert set(weights) == names
    for name, w in weights.items():
        assert w is getattr(g, name) and w.dim() == 3 and w.shape[0] == 4


@pytest.mark.parametrize("capacity_factor", [0.0, 1.25])
def test_a_moe_gives_the_same_output_and_gradients_on_either_path(capacity_factor):
    """Two threads pick the padded bmm (its padding here is under the cap), one the loop."""
    from dynas.trainers.modules import MoE, DynamicRouter

    torch.manual_seed(0)
    moe = MoE(ExpertGroup(4, D, 8), DynamicRouter(D, 4, 3, 0.6), capacity_factor=capacity_factor)
    x = torch.randn(2, 32, D)
    results, threads = [], torch.get_num_threads()
    try:
        for n in (2, 1):
            torch.set_num_threads(n)
            moe.zero_grad()
            out = moe(x)
            out.out.square().mean().backward()
            results.append((out.out, moe.experts.w_up.grad.clone()))
    finally:
        torch.set_num_threads(threads)
    (y2, g2), (y1, g1) = results
    assert torch.allclose(y2, y1, atol=1e-5) and torch.allclose(g2, g1, atol=1e-5)
