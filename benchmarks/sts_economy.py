"""STS economy: N shells in one project over a simulated 8-hour day, AssumeRole calls made by stsd against
per-process assumption (a botocore profile with role_arn/source_profile: every new process assumes again).

Workload: each shell runs one AWS command every 20 minutes, staggered across shells. For stsd each command
asks the daemon's SessionManager (as `credential_process` would; the shell hook asks less often), driven
by an injected clock so 8 hours pass in seconds; renewals come from its own background loop. For the peer
each command builds a fresh botocore credential resolver (what a new process does without the AWS CLI's
file cache). Both talk to the same local STS through a counting proxy: the counts are STS calls on the wire.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import botocore.credentials
import botocore.session
from fakes import FakeClock
from faultproxy import FaultProxy
from measure import LocalAws, Row, bench_world

from stsd.demo.local_aws import ROLE_NAME

SECTION = "STS economy"
DAY_SECONDS = 8 * 3600
COMMAND_EVERY_SECONDS = 20 * 60


def command_times(shells: int) -> list[tuple[float, int]]:
    """(time, shell) of every AWS command in the day, in time order; shells start staggered."""
    events = [
        (shell * COMMAND_EVERY_SECONDS / shells + k * COMMAND_EVERY_SECONDS, shell)
        for shell in range(shells)
        for k in range(DAY_SECONDS // COMMAND_EVERY_SECONDS)
    ]
    return sorted(events)


@contextmanager
def _aws_environment(home: Path, endpoint: str) -> Iterator[None]:
    """botocore (in this process) reads the world's AWS files and talks to `endpoint`."""
    values = {
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def per_process_calls(shells: int, proxy: FaultProxy) -> int:
    base = botocore.session.Session(profile=ROLE_NAME)
    proxy.reset_counts()
    for _ in command_times(shells):
        resolver = botocore.credentials.create_credential_resolver(base)
        resolver.load_credentials().get_frozen_credentials()
    return proxy.count("AssumeRole")


def stsd_calls(shells: int, proxy: FaultProxy) -> tuple[int, int]:
    """(AssumeRole calls seen by the proxy, calls the SessionManager says it made)."""
    from stsd.daemon.config import DaemonConfig
    from stsd.daemon.requests import resolve_profile
    from stsd.daemon.sessions import SessionManager
    from stsd.daemon.sources import SourceRegistry

    async def day() -> int:
        config = DaemonConfig()
        clock = FakeClock()
        manager = SessionManager(SourceRegistry(config), clock, config)
        request = resolve_profile(ROLE_NAME, config=config)
        renewals = asyncio.ensure_future(manager.run())
        now = 0.0
        try:
            for at, _shell in [*command_times(shells), (float(DAY_SECONDS), -1)]:
                clock.advance(at - now)
                now = at
                await asyncio.sleep(0)  # let the renewal loop see the new time
                if _shell >= 0:
                    session = await manager.credentials(request)
                    assert session.expires_at is not None and session.expires_at > clock.wall()
        finally:
            await manager.close()
            renewals.cancel()
            await asyncio.gather(renewals, return_exceptions=True)
        return manager.assume_role_calls

    proxy.reset_counts()
    counted = asyncio.run(day())
    return proxy.count("AssumeRole"), counted


def measure(aws: LocalAws, *, shells: tuple[int, ...] = (1, 10, 100)) -> list[Row]:
    rows = []
    with (
        bench_world(aws) as world,
        FaultProxy(aws.endpoint) as proxy,
        _aws_environment(world.home, proxy.endpoint),
    ):
        for count in shells:
            on_wire, by_manager = stsd_calls(count, proxy)
            assert on_wire == by_manager, (on_wire, by_manager)
            peer = per_process_calls(count, proxy)
            rows.append(
                Row(
                    SECTION,
                    f"AssumeRole calls, {count} shell{'s' if count > 1 else ''}, 8 h, a command per shell every 20 min",
                    "calls",
                    float(on_wire),
                    "botocore role profile, per process",
                    float(peer),
                )
            )
    return rows
