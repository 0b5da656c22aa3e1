"""Fixtures for fault tests: a fault proxy in front of the local STS, and a SessionManager run in this
process against it with an injected clock (real time cannot be moved by hours; everything else is real:
botocore, HTTP, the local STS with IAM enforcement)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Daemon, World
from fakes import FakeClock
from faultproxy import FaultProxy

from stsd.daemon.config import DaemonConfig
from stsd.daemon.requests import RoleRequest, resolve_profile
from stsd.daemon.sessions import RoleSession, SessionManager
from stsd.daemon.sources import SourceRegistry
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


@dataclass
class Harness:
    """A SessionManager with its renewal loop running on a FakeClock."""

    clock: FakeClock
    manager: SessionManager
    request: RoleRequest
    proxy: FaultProxy

    def attempts(self) -> int:
        """AssumeRole calls sent. Counted by the manager, because with STS `down` the proxy sees none;
        the tests check it against the proxy's count where the proxy can see them."""
        return self.manager.assume_role_calls

    async def credentials(self) -> RoleSession:
        return await self.manager.credentials(self.request)

    def session(self) -> RoleSession:
        return self.manager.sessions()[0]

    def seconds_left(self, session: RoleSession) -> float:
        assert session.expires_at is not None
        return (session.expires_at - self.clock.wall()).total_seconds()

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass (the machine running) and give the renewal loop, and any fetch it starts
        in its worker thread, time to finish: fetches take real time even when the clock is fake."""
        self.clock.advance(seconds)
        for _ in range(3):
            await asyncio.sleep(0)
        await self.settle()

    async def settle(self, *, limit_s: float = 5.0) -> None:
        """Wait (real time, bounded) until no fetch is in flight."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit_s
        while loop.time() < deadline:
            await asyncio.sleep(0.01)
            if not self._fetching():
                # One more turn lets the fetch's done-callback record its result.
                await asyncio.sleep(0.01)
                if not self._fetching():
                    return
        raise AssertionError("a fetch was still running after the time limit")

    def _fetching(self) -> bool:
        # SessionManager exposes no "busy" flag; its slots are the only place that knows.
        return any(slot.inflight is not None for slot in self.manager._slots.values())


@asynccontextmanager
async def running_manager(
    proxy: FaultProxy, config: DaemonConfig = FAULT_CONFIG, seed: int = 7
) -> AsyncIterator[Harness]:
    clock = FakeClock()
    manager = SessionManager(SourceRegistry(config), clock, config, rng=random.Random(seed))
    harness = Harness(clock, manager, resolve_profile(ROLE_NAME, config=config), proxy)
    loop_task = asyncio.ensure_future(manager.run())
    try:
        yield harness
    finally:
        await manager.close()
        loop_task.cancel()
        await asyncio.gather(loop_task, return_exceptions=True)


def write_daemon_config(world: World, **settings: object) -> Path:
    """$XDG_CONFIG_HOME/stsd/config.toml for a real daemon (keys of stsd/daemon/config.py)."""
    path = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{key} = {value!r}" if not isinstance(value, str) else f'{key} = "{value}"'
        for key, value in settings.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def proxied_daemon(world: World, proxy: FaultProxy) -> Iterator[Daemon]:
    """A real `stsd serve` whose every STS call goes through the fault proxy, with short STS timeouts."""
    write_daemon_config(
        world, sts_connect_timeout=0.5, sts_read_timeout=0.5, backoff_initial_seconds=1, backoff_max_seconds=4
    )
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    yield daemon
    daemon.stop()
