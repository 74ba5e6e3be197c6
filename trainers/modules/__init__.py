"""Model parts: token mixers, channel mixers, routers and the block that holds them."""
from .attention import FullAttention, HeadProjection, SlidingWindowAttention
from .block import Block, BlockOutput
from .ffn import DenseFFN
from .flops import measured_flops
from .linear_attention import LinearAttention
from .moe import ExpertGroup, MoE, MoEOutput
from .routers import DynamicRouter, RouterOutput, TopKRouter
from .span import DynamicSpanAttention

__all__ = [
    "Block", "BlockOutput", "DenseFFN", "DynamicRouter", "DynamicSpanAttention",
    "ExpertGroup", "FullAttention", "HeadProjection", "LinearAttention", "MoE",
    "MoEOutput", "RouterOutput", "SlidingWindowAttention", "TopKRouter", "measured_flops",
]
