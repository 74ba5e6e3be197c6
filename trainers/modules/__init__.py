"""Model parts: token mixers, channel mixers, routers and the block that holds them.

Importing this package registers every built-in kind's builder (``registry.BUILDERS``).
"""
from .attention import FullAttention, HeadProjection, SlidingWindowAttention
from .block import Block, BlockOutput
from . import ends as _ends  # noqa: F401  (registers the model-level builders)
from .ffn import DenseFFN
from .flops import measured_flops
from .glu import GLUFFN, GLUExpertGroup
from .linear_attention import LinearAttention
from .moe import ExpertGroup, MoE, MoEOutput
from .registry import BUILDERS, builder
from .routers import DynamicRouter, ReLURouter, RouterOutput, TopKRouter
from .span import DynamicSpanAttention

__all__ = [
    "BUILDERS", "Block", "BlockOutput", "DenseFFN", "DynamicRouter", "DynamicSpanAttention",
    "ExpertGroup", "FullAttention", "GLUExpertGroup", "GLUFFN", "HeadProjection",
    "LinearAttention", "MoE", "MoEOutput", "ReLURouter", "RouterOutput", "SlidingWindowAttention",
    "TopKRouter", "builder", "measured_flops",
]
