"""Plugins: the user's own modules, imported before a file is validated.

A plugin is named in an experiment file (``plugins: [my_tasks, ./my_policy.py,
../lib/]``) or on the command line (``--plugin``), as one of:

- a module name (``my_tasks``, ``mypkg.plugins``), imported with ``importlib``;
- a path to a ``.py`` file, imported as a top-level module named by its stem;
- a path to a folder: a package (it has ``__init__.py``) is imported by its name; a
  folder of modules has every ``*.py`` in it imported (sorted), each by its stem.

Relative paths are relative to the experiment file (``base``), or to the working
directory for ``--plugin``. Whatever a plugin registers on import (tasks, kinds and
builders, strategies, metrics, evaluators) is then as good as a built-in: the
registries refuse a name that exists, and that refusal, like any import failure, is one
``PluginError`` line naming the plugin (the CLI exits 2 before any trial starts).

Each loaded plugin is a ``Plugin``: the module names to import and, for code that is
not installed, the file or folder to ship. ``controllers`` ships those to every Ray
worker through Ray's runtime environment (``py_modules``) and imports the same names
there, so the nodes of a real cluster see the plugin without installing it.

Consent: plugins *recorded* with a run directory or a model folder (run.json's, or a
model.json's ``plugins``) are code that came with someone's folder. They are imported
only with the user's consent: the same plugin passed again with ``--plugin`` (already
loaded), or ``--trust-plugins`` (``trusted_plugins``); otherwise one ``DynasError``
line names the file, the plugin and both ways to consent (``load_plugins(...,
recorded_in=FILE)``).

A plugin that raises ``SystemExit`` or ``KeyboardInterrupt`` while it is imported
cannot end dynas: that too is one ``PluginError`` line naming the plugin.

Loading twice is a no-op (same names, same files), so a plugin given both in the file
and with ``--plugin`` is imported once. Standard library only.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .errors import ConfigError, DynasError

__all__ = ["Plugin", "PluginError", "load_plugins", "import_plugin_modules", "loaded_plugins", "trusted_plugins",
           "trust_plugins"]

OWN_PACKAGES = ("search_space", "trainers", "controllers", "analysis")   # on every node already
_LOADED: dict[str, "Plugin"] = {}          # resolved spec -> plugin, in load order
_TRUST = [False]                           # --trust-plugins: recorded plugins may be imported


class PluginError(ConfigError):
    """A plugin failed to import, or registered a name that already exists."""

    def __init__(self, plugin: str, why: str, source: str | None = None):
        super().__init__("", f"plugin {plugin}: {why}", source)
        self.plugin, self.why = plugin, why

    def __reduce__(self):
        return type(self), (self.plugin, self.why, self.source)

    def with_source(self, source: str) -> "PluginError":
        return PluginError(self.plugin, self.why, source)


@dataclass(frozen=True)
class Plugin:
    """One loaded plugin. ``spec``: as resolved (a module name, or an absolute path);
    ``modules``: the names imported; ``ship``: files or folders a Ray worker needs
    (empty for installed packages, which every node must have, like dynas itself)."""

    spec: str
    modules: tuple[str, ...]
    ship: tuple[str, ...] = ()


def loaded_plugins() -> tuple[Plugin, ...]:
    return tuple(_LOADED.values())


def trust_plugins(trusted: bool = True) -> None:
    """Consent (``--trust-plugins``) to import the plugins a run directory or a model
    folder recorded, for the rest of this process."""
    _TRUST[0] = bool(trusted)


@contextlib.contextmanager
def trusted_plugins(trusted: bool = True) -> Iterator[None]:
    """``trust_plugins`` for a block only (the Python API's ``trust_plugins=True``)."""
    before = _TRUST[0]
    _TRUST[0] = before or bool(trusted)
    try:
        yield
    finally:
        _TRUST[0] = before


def load_plugins(specs: object, base: Path | None = None, key: str = "plugins", *,
                 recorded_in: str | None = None) -> tuple[Plugin, ...]:
    """Import each plugin of ``specs`` (a list of strings) in order; see the module
    docstring. ``recorded_in``: the file of a run directory or model folder that named
    them; each then needs consent (already loaded, or ``trust_plugins``)."""
    if specs is None:
        return ()
    if isinstance(specs, str) or not isinstance(specs, Sequence):
        raise ConfigError(key, "expected a list of module names or paths to .py files or folders")
    out = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, str) or not spec.strip():
            raise ConfigError(f"{key}[{i}]", f"expected a module name or a path, got {spec!r}")
        if recorded_in is not None:
            _require_consent(spec.strip(), base, recorded_in, key)
        out.append(load_plugin(spec.strip(), base))
    return tuple(out)


def _require_consent(spec: str, base: Path | None, recorded_in: str, key: str) -> None:
    if _TRUST[0]:
        return
    try:
        resolved = _resolve(spec, base)
    except PluginError:
        resolved = spec
    if resolved in _LOADED:
        return
    raise DynasError(f"{recorded_in}: {key}: plugin {resolved} is code that came with this folder; "
                     f"import it only if you trust it: pass --plugin {resolved} or --trust-plugins")


def load_plugin(spec: str, base: Path | None = None) -> Plugin:
    resolved = _resolve(spec, base)
    if resolved in _LOADED:
        return _LOADED[resolved]
    path = Path(resolved)
    try:
        if path.is_absolute():
            plugin = _load_path(spec, path)
        else:
            module = importlib.import_module(resolved)
            plugin = Plugin(resolved, (resolved,), _ship_of(module))
    except PluginError:
        raise
    except Exception as err:  # ImportError, SyntaxError, a registry's refusal, a bug ...
        raise PluginError(spec, _why(err)) from None
    except (SystemExit, KeyboardInterrupt) as err:     # a plugin may not end dynas
        code = f" {err.code}" if isinstance(err, SystemExit) else ""
        raise PluginError(spec, f"{type(err).__name__}{code} raised while importing it") from None
    _LOADED[resolved] = plugin
    return plugin


def import_plugin_modules(modules: Iterable[str]) -> None:
    """On a Ray worker: import the names a driver loaded (the files came by py_modules)."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as err:
            raise PluginError(name, f"{_why(err)} (on a Ray worker)") from None


def _resolve(spec: str, base: Path | None) -> str:
    """An absolute path for a file or folder, else the module name as given."""
    looks_like_path = spec.endswith(".py") or "/" in spec or "\\" in spec or spec.startswith(".")
    if not looks_like_path:
        return spec
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    path = path.resolve()
    if not path.exists():
        raise PluginError(spec, f"no such file or folder {path}")
    return str(path)


def _load_path(spec: str, path: Path) -> Plugin:
    if path.is_file():
        if path.suffix != ".py":
            raise PluginError(spec, "a plugin file must be a .py file")
        return Plugin(str(path), (_import_file(spec, path.stem, path),), (str(path),))
    if (path / "__init__.py").is_file():
        name = _import_file(spec, path.name, path / "__init__.py", package=path)
        return Plugin(str(path), (name,), (str(path),))
    files = sorted(p for p in path.glob("*.py") if p.is_file())
    if not files:
        raise PluginError(spec, f"folder {path} holds no .py files")
    if str(path) not in sys.path:      # its modules import each other by name, as on a worker
        sys.path.append(str(path))
    names = tuple(_import_file(spec, p.stem, p) for p in files)
    return Plugin(str(path), names, tuple(str(p) for p in files))


def _import_file(spec: str, name: str, file: Path, package: Path | None = None) -> str:
    """Import ``file`` as top-level module ``name`` (the name a Ray worker imports)."""
    if not name.isidentifier():
        raise PluginError(spec, f"{name!r} is not a valid module name; rename the file")
    taken = sys.modules.get(name)
    if taken is not None:
        if Path(getattr(taken, "__file__", "") or "").resolve() == file.resolve():
            return name
        owner = getattr(taken, "__file__", None) or "a built-in module"
        raise PluginError(spec, f"module name {name!r} is already taken by {owner}; rename the file")
    where = [str(package)] if package is not None else None
    module_spec = importlib.util.spec_from_file_location(name, file, submodule_search_locations=where)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def _ship_of(module) -> tuple[str, ...]:
    """What a Ray worker needs for an imported module: nothing if it is installed (in
    site-packages or the standard library), else its file or its top package's folder."""
    top_name = module.__name__.split(".")[0]
    if top_name in OWN_PACKAGES:
        return ()
    top = sys.modules[top_name]
    file = getattr(top, "__file__", None)
    if not file:
        return ()
    file = Path(file).resolve()
    paths = sysconfig.get_paths()
    installed = {Path(paths[key]).resolve() for key in ("purelib", "platlib", "stdlib")}
    if any(parent in installed for parent in file.parents):
        return ()
    return (str(file.parent) if file.name == "__init__.py" else str(file),)


def _why(err: BaseException) -> str:
    message = " ".join(str(err).split()) or "(no message)"
    if isinstance(err, ConfigError):          # a registry's refusal already names the key
        return message
    return f"{type(err).__name__}: {message}"
