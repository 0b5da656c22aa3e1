"""The session manager run in the test process against the real local STS, on a FakeClock (tests/fakes.py):
a session lives an hour, and a test cannot wait for one. Used by the session, MFA, SSO and fault tests."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from fakes import FakeClock

from stsd.daemon.config import DaemonConfig
from stsd.daemon.requests import RoleRequest
from stsd.daemon.service import Service
from stsd.daemon.sessions import RoleSession, SessionManager
from stsd.daemon.sources import SourceRegistry
from stsd.project.trust import TrustStore

T = TypeVar("T")


def run(coroutine: Awaitable[T]) -> T:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def settle(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    """Wait (real time) until `condition` holds; the timeout only bounds a broken run."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.005)


class Harness:
    """A SessionManager over the world's AWS files, with a FakeClock and (optionally) its renewal loop;
    `request`, when given, is the one the shortcuts below ask for."""

    def __init__(
        self, config: DaemonConfig, clock: FakeClock, rng: random.Random, request: RoleRequest | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.sources = SourceRegistry(config, clock)
        self.manager = SessionManager(self.sources, clock, config, rng=rng)
        self.request = request
        self._loop_task: asyncio.Task[None] | None = None

    def start_loop(self) -> None:
        self._loop_task = asyncio.ensure_future(self.manager.run())

    def _loop_idle(self) -> bool:
        """The renewal loop sleeps until a deadline still ahead, with nothing asking it to look again
        (SessionManager keeps that event private; a test harness may look)."""
        wake = self.manager._wake
        return self.clock.sleeping > 0 and (wake is None or not wake.is_set())

    async def quiet(self) -> None:
        """Let the renewal loop look at the current time if its sleep is over, and finish any fetch
        it (or anything else) started: fetches take real time even when the clock is fake."""
        await settle(
            lambda: self.manager.fetches_in_flight() == 0 and (self._loop_task is None or self._loop_idle()),
            "the renewal loop to check the time and finish its fetches",
        )

    async def advance(self, seconds: float) -> None:
        """Let `seconds` pass (the machine running), then wait until all is quiet."""
        self.clock.advance(seconds)
        await self.quiet()

    async def advance_to(self, moment: datetime) -> None:
        await self.advance((moment - self.clock.wall()).total_seconds())

    def attempts(self) -> int:
        """AssumeRole calls sent, as the manager counts them (with STS down a proxy sees none)."""
        return self.manager.assume_role_calls

    async def credentials(self) -> RoleSession:
        assert self.request is not None, "harness(request=...) first"
        return await self.manager.credentials(self.request)

    def session(self) -> RoleSession:
        return self.manager.sessions()[0]

    def seconds_left(self, session: RoleSession) -> float:
        assert session.expires_at is not None
        return (session.expires_at - self.clock.wall()).total_seconds()

    async def close(self) -> None:
        await self.manager.close()
        if self._loop_task is not None:
            await asyncio.wait_for(self._loop_task, 5)


@contextlib.asynccontextmanager
async def harness(
    loop: bool = False,
    *,
    config: DaemonConfig | None = None,
    request: Callable[[DaemonConfig], RoleRequest] | None = None,
    seed: int = 7,
    **settings: Any,
) -> AsyncIterator[Harness]:
    """A Harness with `config` (else a DaemonConfig of `settings`), its request made by `request` from
    the config, and the renewal loop running when `loop`."""
    if config is None:
        settings.setdefault("role_session_name", "stsd-test")
        config = DaemonConfig(**settings)
    h = Harness(config, FakeClock(), random.Random(seed), request(config) if request else None)
    if loop:
        h.start_loop()
        await h.quiet()
    try:
        yield h
    finally:
        await h.close()


def in_process_service(h: Harness, tmp_path: Path, trust_dir: Path | None = None) -> Service:
    """The daemon's Service over the harness's manager, in this process; its trust records in `trust_dir`
    (default: a fresh one under tmp_path; the world's own to see what `stsd allow` wrote)."""
    return Service(
        sessions=h.manager,
        sources=h.sources,
        trust_store=TrustStore(trust_dir or tmp_path / "trust"),
        config=h.config,
        clock=h.clock,
        started_at=time.time(),
        mode="foreground",
        socket_path=tmp_path / "stsd.sock",
        log_location="stderr",
    )
