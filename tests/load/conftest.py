"""Helpers for load and bad-input tests: an allowed project in the world, raw async socket clients, and a
file-descriptor limit high enough for a thousand connections on both ends."""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import World

PROJECT = 'profile = "alice-sts"\n'


@contextmanager
def open_files_limit(soft: int) -> Iterator[None]:
    """Set this process's soft RLIMIT_NOFILE (children started meanwhile inherit it), then restore it."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard = before[1]
    wanted = soft if hard == resource.RLIM_INFINITY else min(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


@pytest.fixture
def allowed_project(world: World) -> Path:
    project = world.project("app", PROJECT)
    world.stsd("allow", str(project), check=True)
    return project


async def ask(path: Path, message: dict[str, Any] | bytes, *, timeout: float = 5.0) -> dict[str, Any]:
    """One request on its own connection, as the client does; `timeout` is the client's own give-up time."""
    line = message if isinstance(message, bytes) else json.dumps({"v": 1, **message}).encode() + b"\n"

    async def exchange() -> dict[str, Any]:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        try:
            writer.write(line)
            await writer.drain()
            return json.loads(await reader.readline())
        finally:
            writer.close()

    return await asyncio.wait_for(exchange(), timeout)


async def closed_by_daemon(reader: asyncio.StreamReader, *, within: float) -> bool:
    """Whether the daemon closes this connection within `within` seconds (anything it says is drained)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            if not await asyncio.wait_for(reader.read(65536), remaining):
                return True
    except asyncio.TimeoutError:
        return False
    except OSError:  # reset by the daemon (it dropped us with unread data pending)
        return True
