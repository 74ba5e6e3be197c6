"""Where a search runs: a private local Ray instance, or a cluster the user names.

Without ``--address`` dynas starts its OWN Ray instance (``ray.init(address="local")``)
sized to the search (``concurrent x cpus_per_trial`` CPUs), listening on 127.0.0.1
only, and shuts it down at the end. It never attaches to a Ray instance it happens to
find on the machine.

With ``--address HOST:PORT`` it connects to a cluster started by ``ray start``:

    # on the head node (token authentication, Ray >= 2.5x):
    export RAY_AUTH_MODE=token
    ray get-auth-token --generate        # writes ~/.ray/auth_token if there is none
    ray start --head --port=6379 --num-cpus=8
    # on every worker node, with the same token:
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/path/to/auth_token
    ray start --address=HEAD_IP:6379
    # on the machine that runs the search:
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/path/to/auth_token \
        dynas search experiment.yaml --address HEAD_IP:6379

Token authentication (read from the installed Ray 2.60 source, ``ray/_private/
authentication``): ``RAY_AUTH_MODE=token`` switches it on (``disabled`` switches it
off); the token (64 hex characters) is taken from ``RAY_AUTH_TOKEN`` (the token
itself), else from the file named by ``RAY_AUTH_TOKEN_PATH``, else from
``~/.ray/auth_token``. A driver connecting to an explicit address does NOT turn token
mode on by itself, so set ``RAY_AUTH_MODE=token`` in its environment too. A new local
instance turns token mode on by default and creates ``~/.ray/auth_token`` if missing.

Ray rewrites a loopback address (``127.0.0.1``, ``localhost``) to the machine's primary
IP before connecting (``services.canonicalize_bootstrap_address``); a single-machine
test cluster therefore sees its GCS reached on that (local) address.
``ray.init`` against an address where nothing listens retries for minutes, so
``connect`` first checks that the port answers (5 s) and fails in one line otherwise.

Every node must be able to import dynas (``pip install`` it, same version, on each node);
the user's plugins (``search_space.plugins``) need not be installed: the driver ships
them as the job's runtime environment (``py_modules``). For trial checkpoints to
survive a move between nodes the run directory
(``--storage``) must be on a filesystem every node shares.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
from typing import Iterator

from dynas.search_space.errors import DynasError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # Ray's; see loopback_only
TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"    # see quiet_token_notice
TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"
AUTH_WORDS = ("Unauthenticated", "InvalidAuthToken", "AuthenticationError", "authentication token")
TOKEN_HINT = "set RAY_AUTH_MODE=token and the cluster's token in RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` (optionally ``ray://``-prefixed) -> (host, port), or a DynasError."""
    bare = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise DynasError(f"cannot connect to Ray at {address}: expected HOST:PORT")
    if not 0 < int(port) < 65536:
        raise DynasError(f"cannot connect to Ray at {address}: port must be 1-65535")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast: ``ray.init`` on a dead address retries for minutes."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        raise DynasError(f"cannot connect to Ray at {address}: {err.strerror or err}") from None


def connect(address: str, *, verbose: int = 1, runtime_env: dict | None = None) -> None:
    """Join the cluster at ``address`` as a driver; errors become one-line DynasErrors."""
    import ray

    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=verbose >= 2, logging_level=_level(verbose),
                 runtime_env=runtime_env)
    except Exception as err:  # ConnectionError, AuthenticationError, RuntimeError, ...
        ray.shutdown()                      # whatever half of the connection was made
        raise DynasError(f"cannot connect to Ray at {address}: {_why(err)}") from None


def start_private(num_cpus: int, *, verbose: int = 1, runtime_env: dict | None = None) -> None:
    """A Ray instance of our own on this machine, whatever else runs here, listening on
    loopback only (``loopback_only``), with Ray's default token authentication (and
without its notice about it: ``quiet_token_notice``)."""
    import ray

    with loopback_only():
        ray.init(address="local", num_cpus=max(1, int(num_cpus)), include_dashboard=False,
                 _node_ip_address=LOOPBACK, log_to_driver=verbose >= 2, configure_logging=True,
                 logging_level=_level(verbose), runtime_env=runtime_env)


@contextlib.contextmanager
def quiet_token_notice() -> Iterator[None]:
    """No "Token authentication is enabled for this Ray cluster" on every private run.

    A new local instance turns token authentication on by itself when ``RAY_AUTH_MODE``
    is unset, and logs that warning each time (Ray 2.60,
    ``authentication_token_setup.enable_token_auth_by_default``). Token mode is what
    our private, loopback-only instance wants, so the notice says nothing to act on:
    it is dropped while the instance starts (Ray's behaviour is left as it is; any
    other message of that logger still shows).
    """
    target = logging.getLogger(TOKEN_LOGGER)
    drop = _DropNotice()
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(TOKEN_NOTICE)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Make Ray keep 127.0.0.1 as the node address while a private instance starts.

    Ray rewrites a loopback ``_node_ip_address`` to the machine's network address
    (``services.resolve_ip_for_localhost``) unless "clusters" are disabled, which its
    switch ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` does (read once, into
    ``ray_constants.ENABLE_RAY_CLUSTER``, when ray is imported). With a loopback node
    address the GCS, raylet, object manager and every worker bind 127.0.0.1 instead of
    all interfaces (measured with ``ss -ltnp``; tests/test_hardening.py checks it). The
    switch is set for the start only (the raylet and workers inherit the environment
    then) and put back, so a later ``--address`` connection in this process is normal.
    """
    from ray._private import ray_constants

    before_env = os.environ.get(LOOPBACK_SWITCH)
    before_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(LOOPBACK_SWITCH, None)
        else:
            os.environ[LOOPBACK_SWITCH] = before_env


def local_cpus(concurrent: int, cpus_per_trial: float) -> int:
    """CPUs of the private instance: exactly the slots the search asked for."""
    return max(1, math.ceil(concurrent * cpus_per_trial))


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int, *, verbose: int = 1,
                runtime_env: dict | None = None) -> Iterator[bool]:
    """Ray for the duration of a search; yields whether we started it.

    A Ray already initialised in this process (a notebook, a test) is used as is and
    left running (and then ``address`` must be None, and plugins must already be
    importable by its workers); otherwise we connect or start one, with
    ``runtime_env`` (the plugins to ship, ``controllers.tune.executor.plugin_runtime_env``)
    as the job's runtime environment, and shut it down afterwards.
    """
    import ray

    if ray.is_initialized():
        if address:
            raise DynasError(f"cannot connect to Ray at {address}: this process already runs Ray")
        yield False
        return
    with contextlib.ExitStack() as stack:
        if address:
            connect(address, verbose=verbose, runtime_env=runtime_env)
        else:
            stack.enter_context(quiet_token_notice())
            start_private(num_cpus, verbose=verbose, runtime_env=runtime_env)
        try:
            yield True
        finally:
            from ..interrupt import shielded

            with shielded():                  # a second Ctrl-C must not leave workers behind
                ray.shutdown()


def cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0.0))


def _level(verbose: int) -> int:
    return logging.INFO if verbose >= 2 else logging.WARNING


def _why(err: BaseException) -> str:
    """One line: Ray's message, or the authentication failure buried in its chain
    (a wrong token surfaces as "Failed to connect to GCS" with a traceback inside)."""
    chain, seen = [], err
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for exc in chain:
        for line in str(exc).splitlines():
            if any(word in line for word in AUTH_WORDS):
                line = " ".join(line.split()).split(". ")[0].rstrip(".")
                return f"authentication failed ({line[:200]}); {TOKEN_HINT}"
    text = " ".join(str(err).split()) or type(err).__name__
    return text.split(". ")[0].rstrip(".")
