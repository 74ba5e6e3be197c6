"""Errors a user can cause. The CLI prints them as one line and exits with code 2.

Every error here survives pickling with its message and fields (a Ray worker's error
reaches the driver pickled): ``ConfigError`` rebuilds from its own arguments.
"""
from __future__ import annotations


class DynasError(Exception):
    """Base of every error caused by user input (config, files, arguments).

    ``str(err)`` is the one line shown to the user: it names the file and/or key.
    """


class ConfigError(DynasError):
    """A value in an experiment file, arch file or argument is wrong.

    ``key`` is the dotted path of the offending value (``space.layer.ffn[1].top_k``),
    ``source`` the file it came from, when known.
    """

    def __init__(self, key: str, message: str, source: str | None = None):
        self.key, self.message, self.source = key, message, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {message}" if key else f"{where}{message}")

    def __reduce__(self):
        return type(self), (self.key, self.message, self.source)

    def with_source(self, source: str) -> "ConfigError":
        """The same error, naming ``source`` (a subclass with other arguments overrides this)."""
        return type(self)(self.key, self.message, source)


class InfeasibleError(DynasError):
    """Nothing in the space satisfies the constraints (or one arch does not)."""


class InfrastructureError(Exception):
    """The machine, not the input nor the architecture, stopped a search: a full disk,
    an I/O error, a lost node. Never recorded as a trial's failure; the CLI prints it as
    one line and exits 75 (EX_TEMPFAIL: fix the cause and resume)."""
