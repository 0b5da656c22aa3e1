"""Fixtures for fault tests: a fault proxy in front of the local STS, and a SessionManager run in this
process against it with an injected clock (real time cannot be moved by hours; everything else is real:
botocore, HTTP, the local STS with IAM enforcement)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from conftest import Daemon, World
from faultproxy import FaultProxy
from harness import Harness, harness

from stsd.daemon.config import DaemonConfig
from stsd.daemon.requests import resolve_profile
from stsd.demo.local_aws import ROLE_NAME, LocalAws

# Short STS timeouts keep `slow` faults quick; the backoff numbers are the ones the assertions use.
FAULT_CONFIG = DaemonConfig(
    sts_connect_timeout=0.5,
    sts_read_timeout=0.5,
    backoff_initial_seconds=10,
    backoff_max_seconds=160,
    renew_before_seconds=1200,
    renew_jitter_seconds=120,
    min_remaining_seconds=900,
    region="us-east-1",
)


@pytest.fixture
def proxy(local_aws: LocalAws) -> Iterator[FaultProxy]:
    with FaultProxy(local_aws.endpoint, slow_seconds=3) as p:
        yield p


@pytest.fixture
def aws_env(world_env: World, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> World:
    """This process runs in the world (HOME, AWS files) and reaches STS only through the proxy."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    return world_env


def running_manager(
    config: DaemonConfig = FAULT_CONFIG, seed: int = 7
) -> AbstractAsyncContextManager[Harness]:
    """The shared Harness (tests/harness.py) with its renewal loop, asking for the alice-sts role."""
    return harness(
        loop=True, config=config, seed=seed, request=lambda c: resolve_profile(ROLE_NAME, config=c)
    )


def write_daemon_config(world: World, **settings: object) -> Path:
    """$XDG_CONFIG_HOME/stsd/config.toml for a real daemon (keys of stsd/daemon/config.py)."""
    lines = [
        f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
        for key, value in settings.items()
    ]
    return world.write_config("\n".join(lines) + "\n")


@pytest.fixture
def proxied_daemon(world: World, proxy: FaultProxy) -> Iterator[Daemon]:
    """A real `stsd serve` whose every STS call goes through the fault proxy, with short STS timeouts."""
    write_daemon_config(
        world, sts_connect_timeout=0.5, sts_read_timeout=0.5, backoff_initial_seconds=1, backoff_max_seconds=4
    )
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    yield daemon
    daemon.stop()
