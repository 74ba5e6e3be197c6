"""A run directory (or a model folder) is a boundary: what it names stays inside it.

A run directory is often someone else's (copied, downloaded, hand-edited), so every
path read from one (a record's ``weights.path``, ``weights.json``'s entries, run.json's
``experiment``) is resolved, symlinks included, and must land inside the folder it was
read from. Anything else (an absolute path, ``../``, a symlink that leads out, the
folder itself) is refused with one line naming the file and the key: a copied run can
neither make dynas read a file elsewhere nor delete a folder elsewhere.

``json_file`` is the one way such a folder's JSON files are read: a missing, unreadable
or corrupt file, a directory in its place, or a giant, is one ``DynasError`` line
naming it. Standard library only.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import DynasError

__all__ = ["inside", "relative_path_problem", "json_file", "MAX_JSON_BYTES"]

MAX_JSON_BYTES = 64 * 1024 * 1024     # run.json, weights.json, model.json are kilobytes


def relative_path_problem(rel: Any) -> str | None:
    """What makes ``rel`` no path inside a folder, judged by its text alone (an absolute
    path, a ``..`` part, not a string), or None. Symlinks need ``inside``."""
    if not isinstance(rel, str) or not rel.strip():
        return f"expected a path relative to the folder, got {rel!r}"[:200]
    if "\x00" in rel:
        return "a path with a NUL character"
    if os.path.isabs(rel) or rel.startswith("~"):
        return f"{rel!r} is an absolute path; only paths inside the folder are read"
    if ".." in Path(rel).parts:
        return f"{rel!r} leads outside the folder ('..')"
    return None


def inside(root: str | os.PathLike, rel: Any, file: str | os.PathLike, key: str) -> Path:
    """``root / rel`` resolved, when it stays strictly inside ``root`` (symlinks
    followed); otherwise one ``DynasError`` naming ``file`` and ``key``."""
    problem = relative_path_problem(rel)
    if problem:
        raise DynasError(f"{file}: {key}: {problem}")
    base = Path(root).resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError) as err:          # a symlink loop
        raise DynasError(f"{file}: {key}: {rel!r} cannot be resolved ({type(err).__name__})") from None
    if target == base:
        raise DynasError(f"{file}: {key}: {rel!r} names the folder itself, not a file or folder inside it")
    if base not in target.parents:
        raise DynasError(f"{file}: {key}: {rel!r} leads outside {base} (through a symlink); "
                         "only paths inside the folder are read")
    return target


def json_file(path: str | os.PathLike, *, missing: Any = ..., limit: int = MAX_JSON_BYTES) -> Any:
    """The decoded JSON of ``path``; ``missing`` when it does not exist (if given), else
    one ``DynasError`` line naming the file for any problem reading it."""
    path = Path(path)
    try:
        if not path.exists() and not path.is_symlink():
            if missing is not ...:
                return missing
            raise DynasError(f"{path}: no such file")
        if not path.is_file():
            raise DynasError(f"{path}: not a regular file")
        if path.stat().st_size > limit:
            raise DynasError(f"{path}: larger than {limit // (1024 * 1024)} MB; not a file dynas wrote")
        text = path.read_text(encoding="utf-8")
    except DynasError:
        raise
    except UnicodeDecodeError:
        raise DynasError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except (OSError, RuntimeError) as err:
        raise DynasError(f"{path}: cannot read ({type(err).__name__}: {getattr(err, 'strerror', None) or err})") \
            from None
    try:
        return json.loads(text)
    except RecursionError:
        raise DynasError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as err:
        raise DynasError(f"{path}: not valid JSON ({str(err).split(':')[0]})") from None
