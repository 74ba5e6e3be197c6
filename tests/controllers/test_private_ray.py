"""A private Ray instance (no ``--address``) keeps Ray's default token authentication
and says nothing about it (Ray logs a notice on every start when RAY_AUTH_MODE is unset)."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from dynas.controllers.tune.cluster import TOKEN_LOGGER, TOKEN_NOTICE, quiet_token_notice

START = """
from dynas.controllers.tune.cluster import ray_session
with ray_session(None, 1, verbose=1):
    import ray
    print("cpus", ray.cluster_resources().get("CPU"))
"""


def test_only_the_token_notice_is_dropped(caplog):
    log = logging.getLogger(TOKEN_LOGGER)
    with caplog.at_level(logging.WARNING, logger=TOKEN_LOGGER):
        with quiet_token_notice():
            log.warning(TOKEN_NOTICE + ". Set RAY_AUTH_MODE=disabled to opt out.")
            log.warning("Token authentication is disabled for this Ray cluster.")
        log.warning(TOKEN_NOTICE + " (after)")
    assert [r.getMessage() for r in caplog.records] == [
        "Token authentication is disabled for this Ray cluster.", TOKEN_NOTICE + " (after)"]


@pytest.mark.slow
def test_a_private_instance_starts_without_the_token_notice(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    env.update(HOME=str(tmp_path), RAY_USAGE_STATS_ENABLED="0")    # its token file lands in tmp
    done = subprocess.run([sys.executable, "-c", START], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cpus 1.0" in done.stdout
    assert "Token authentication" not in done.stderr, done.stderr[-2000:]
    assert (tmp_path / ".ray" / "auth_token").is_file(), "token mode stays on (Ray's default)"
