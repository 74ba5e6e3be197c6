"""MkDocs hook: the source tree the API reference (mkdocstrings) reads.

The repository root *is* the ``dynas`` package (pyproject's ``package-dir``), but its
folder may have any name and also holds tests, examples and ``.venv``. mkdocstrings
(griffe) reads source statically from a folder named after the package, and would
otherwise fall back to importing it. So ``on_config`` lays out a temporary ``dynas/``
of links to the package's own files only, and puts it first on the Python handler's
``paths``. It runs before mkdocstrings' own ``on_config``, which creates the handler.
"""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from mkdocs.plugins import event_priority

PACKAGE_PARTS = ("__init__.py", "search_space", "trainers", "controllers", "analysis")


@event_priority(100)
def on_config(config):
    root = Path(config.config_file_path).resolve().parent
    tree = Path(tempfile.mkdtemp(prefix="dynas-docs-"))
    atexit.register(shutil.rmtree, tree, ignore_errors=True)
    (tree / "dynas").mkdir()
    for part in PACKAGE_PARTS:
        (tree / "dynas" / part).symlink_to(root / part)
    python = config.plugins["mkdocstrings"].config.handlers.setdefault("python", {})
    python.setdefault("paths", []).insert(0, str(tree))
    return config
