"""Kind specs: every attention, FFN and router kind, declared once.

``ATTENTION``, ``FFN`` and ``ROUTER`` are the registries; ``register_attention``,
``register_ffn`` and ``register_router`` add a ``KindSpec`` (a plugin may call them
at run time). The built-in kinds live one family per module and register on import.
"""
from .base import KindSpec, Part, Registry, default_of, linear
from .registries import (ATTENTION, FFN, REGISTRIES, ROUTER, expert_kinds,
                         register_attention, register_ffn, register_router)
from . import attention as _attention  # noqa: E402,F401  (registers the built-ins)
from . import routers as _routers  # noqa: E402,F401
from . import ffn as _ffn  # noqa: E402,F401

__all__ = ["KindSpec", "Part", "Registry", "ATTENTION", "FFN", "ROUTER", "REGISTRIES",
           "register_attention", "register_ffn", "register_router", "expert_kinds",
           "default_of", "linear"]
