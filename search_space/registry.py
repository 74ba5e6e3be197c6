"""One registry for every name a user or a plugin can pick: tasks, kinds, builders,
metrics, evaluators and strategies.

A registry maps names to entries (a ``KindSpec``, a task's factory and shape, a
builder function ...) in registration order. Built-ins register when their module is
imported; plugins register later, through the same functions (``register_task``,
``register_attention``, ``builder``, ...), and are then as good as a built-in.

Whatever can go wrong with a name is one ``RegistryError`` line, whichever registry it
is (the CLI prints it and exits 2; a plugin's refusal becomes its ``PluginError``)::

    task.name: unknown task 'x'; known tasks: split_digits, assoc_recall, ...
    strategy 'tpe' is already registered

Nothing is ever replaced: a second registration of a name is refused, so a plugin
cannot silently change what a built-in name means. Tests that register take the entry
back out (``unregister``) or put the whole table back (``kept``).

Standard library only: every layer, and every plugin, imports it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Generic, Iterable, Iterator, TypeVar

from .choices import short
from .errors import ConfigError

__all__ = ["Registry", "RegistryError"]

T = TypeVar("T")


class RegistryError(ConfigError):
    """A name a registry does not have (``get``, ``unregister``), already has
    (``register``), or cannot hold (not a non-empty string): one line naming the
    registry, and for an unknown name every known one. Rebuilds from its arguments
    when pickled (``ConfigError``), so a Ray worker's refusal reaches the driver whole."""


class Registry(Generic[T]):
    """The entries of one kind, by name, in registration order.

    ``what``: one entry, as the messages name it (``"task"``, ``"attention kind"``);
    ``plural`` when adding an s is wrong (``"strategies"``).
    ``key``: the config key an unknown name is reported under when ``get`` is given
    none (``"task.name"``, ``"search.strategy"``).
    ``contract``: what an entry is and what it is called with, for readers.
    ``reserved``: names that something outside the registry already owns (the metrics
    ``fit`` computes itself): ``register`` refuses them as it refuses its own names.
    """

    def __init__(self, what: str, *, plural: str | None = None, key: str = "", contract: str = "",
                 reserved: Iterable[str] = ()):
        self.what = what
        self.plural = plural or f"{what}s"
        self.key = key
        self.contract = contract
        self.reserved = frozenset(reserved)
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        """Add ``entry`` under ``name`` and return it; a name already taken is refused."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError("", f"{self.what} name must be a non-empty string, got {short(name)}")
        if name in self._entries or name in self.reserved:
            built_in = " (built in)" if name in self.reserved else ""
            raise RegistryError("", f"{self.what} {name!r} is already registered{built_in}")
        self._entries[name] = entry
        return entry

    def get(self, name: Any, key: str | None = None) -> T:
        """The entry of ``name``; an unknown one is a ``RegistryError`` under ``key``
        (when none is given, the registry's own) that lists the known names."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        known = (f"known {self.plural}: {', '.join(self._entries)}" if self._entries
                 else f"no {self.plural} are registered")
        raise RegistryError(key or self.key, f"unknown {self.what} {short(name)}; {known}")

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (tests; a plugin that unloads). An
        unknown name is the same error as in ``get``."""
        entry = self.get(name)
        del self._entries[name]
        return entry

    @contextmanager
    def kept(self) -> Iterator["Registry[T]"]:
        """Put the entries back as they were when the block ends (tests that register)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def items(self) -> tuple[tuple[str, T], ...]:
        return tuple(self._entries.items())

    def values(self) -> tuple[T, ...]:
        return tuple(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def one_of(self) -> Callable[[Any], str | None]:
        """A field check accepting the names registered *when it runs* (plugins too)."""
        return lambda v: None if v in self else f"{short(v)} is not one of {', '.join(self)}"

    def __repr__(self) -> str:
        return f"Registry({self.what!r}: {', '.join(self._entries) or 'empty'})"
