"""Kind specs: every attention, FFN and router kind, declared once.

``ATTENTION``, ``FFN`` and ``ROUTER`` are the registries; ``register_attention``,
``register_ffn`` and ``register_router`` add a ``KindSpec`` (a plugin may call them
at run time). The built-in kinds live one family per module and register on import.
"""
from ..registry import Registry
from .base import KindSpec, Part, default_of, layer_norm, linear, make_config
from .registries import (ATTENTION, FFN, MODEL_FAMILIES, REGISTRIES, ROUTER, expert_kinds,
                         register_attention, register_ffn, register_model_kind, register_router)
from . import attention as _attention  # noqa: E402,F401  (registers the built-ins)
from . import routers as _routers  # noqa: E402,F401
from . import ffn as _ffn  # noqa: E402,F401
from . import model as _model  # noqa: E402,F401

__all__ = ["KindSpec", "Part", "Registry", "ATTENTION", "FFN", "ROUTER", "REGISTRIES",
           "MODEL_FAMILIES", "register_attention", "register_ffn", "register_router",
           "register_model_kind", "expert_kinds",
           "default_of", "layer_norm", "linear", "make_config"]
