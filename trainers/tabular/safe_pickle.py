"""Load a pickle that may hold only plain containers, strings and numbers.

``pickle.load`` runs whatever callables a file names, so a tampered benchmark file would
run code on the machine that reads it. ``load_plain`` instead admits exactly two
globals, numpy's float scalars as the benchmark files store them
(``numpy.core.multiarray.scalar`` with a ``numpy.dtype``), and rebuilds those here from
their raw bytes with ``struct``: numpy itself is never called, and any other global
(``os.system``, ``builtins.eval``, a class) fails with ``UnsafePickleError`` naming it.
"""
from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

# dtype string -> struct format of one value (what the benchmark files use, and kin)
_FORMATS = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "u8": "Q", "u4": "I", "b1": "?"}


class UnsafePickleError(ValueError):
    """The file names a global outside the allowed plain-data set."""


class _DType:
    """Stands in for ``numpy.dtype(code, align, copy)``; BUILD sets its byte order."""

    def __init__(self, code: str, align: bool = False, copy: bool = True):
        if code not in _FORMATS:
            raise UnsafePickleError(f"numpy dtype {code!r} is not a plain number type")
        self.code, self.order = code, "<"

    def __setstate__(self, state: tuple) -> None:
        self.order = state[1] if state[1] in "<>" else "<"   # '|' and '=' : no order / native LE


def _scalar(dtype: _DType, raw: bytes) -> float | int | bool:
    """``numpy.core.multiarray.scalar(dtype, bytes)`` as a Python number."""
    if not isinstance(dtype, _DType) or not isinstance(raw, bytes):
        raise UnsafePickleError("numpy scalar without a plain dtype and raw bytes")
    value = struct.unpack(dtype.order + _FORMATS[dtype.code], raw)[0]
    return value


_ALLOWED = {
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "dtype"): _DType,
}


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load global {module}.{name}") from None


def loads_plain(data: bytes) -> Any:
    """``pickle.loads`` restricted to plain data (module docstring)."""
    return _PlainUnpickler(io.BytesIO(data)).load()


def load_plain(path: str | Path) -> Any:
    """Read ``path`` with ``loads_plain``; errors name the file."""
    path = Path(path)
    try:
        return loads_plain(path.read_bytes())
    except UnsafePickleError as err:
        raise UnsafePickleError(f"{path}: {err}") from None
