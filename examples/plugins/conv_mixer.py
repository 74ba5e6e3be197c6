"""An attention kind of your own: a depthwise causal convolution as the token mixer.

Each channel mixes its last ``kernel`` tokens with a filter of its own (a depthwise
``Conv1d``, left-padded, so position t never sees t + 1: causal for every task), then a
D x D output projection: the short convolutions of ConvMixer and Hyena, with no
attention at all. The kind has no heads: its one field, ``kernel``, is declared here
with its type, range and default, and the config keeps it in ``extra`` (the space lists
``{kind: conv_mixer, kernel: [3, 5]}``). Registered on import, cost and builder both,
so ``plugins: [conv_mixer.py]`` makes the kind searchable (``conv_search.yaml``).

Shape legend: B batch, T tokens, D model, k kernel.
"""
from torch import Tensor, nn
from torch.nn import functional as F

from dynas.search_space.arch import AttentionConfig
from dynas.search_space.choices import Field, as_int, at_least
from dynas.search_space.kinds import KindSpec, Part, linear, make_config, register_attention
from dynas.trainers.modules.registry import builder

KERNEL = ("kernel", Field(as_int, at_least(1), default=3))   # tokens each output sees


def conv_cost(cfg: AttentionConfig, d: int, t: int, causal: bool) -> Part:
    """Depthwise conv (D * k weights + D biases, 2 T D k FLOPs, the last k - 1 tokens
    kept for decoding) and the output projection."""
    k = cfg.extra["kernel"]
    conv = Part(d * k + d, d * k + d, 2.0 * t * d * k, (k - 1) * d, 2.0 * t * d)
    return conv + linear(d, d, t)


class ConvMixer(nn.Module):
    """(B, T, D) -> ((B, T, D), no aux losses)."""

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        h = F.pad(x.transpose(1, 2), (self.kernel - 1, 0))       # (B, D, T + k - 1)
        return self.out(self.conv(h).transpose(1, 2)), {}        # (B, T, D)


register_attention(KindSpec(
    "conv_mixer", make_config(AttentionConfig, "conv_mixer"), cost=conv_cost,
    label=lambda a: f"conv_mixer(k={a.extra['kernel']})", short=lambda a: f"conv{a.extra['kernel']}",
    fields=(KERNEL,)))


@builder("attention", "conv_mixer")
def build_conv_mixer(cfg: AttentionConfig, d_model: int, causal: bool) -> nn.Module:
    return ConvMixer(d_model, cfg.extra["kernel"])
