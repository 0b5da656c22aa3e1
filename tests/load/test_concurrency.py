"""Many connections at once, half of them stalled (silent, or stopped mid-line): every other client is
served, the daemon closes the stalled ones on its own timeouts, and its open files and memory return to
where they were. Also: a burst of connects while the daemon is busy, and peers that never read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import Daemon, World, ask_daemon

from stsd.daemon.server import ServerLimits
from stsd.wire import CONNECT_TIMEOUT_S

from .conftest import ask, closed_by_daemon, open_files_limit

LIMITS = ServerLimits()
CLIENT_TIMEOUT_S = 5.0  # stsd.client.connection.request's default: what a shell waits before giving up
MiB = 1024 * 1024


@dataclass
class Stalled:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    kind: str


# Replies of ~200 bytes: a few thousand fill the socket buffers, so the daemon's writes block.
FLOOD = (json.dumps({"v": 1, "op": "ping", "id": "f" * 120}).encode() + b"\n") * 4000


async def _open_stalled(path: Path, count: int, no_readers: int = 0) -> list[Stalled]:
    """Silent ones, ones stopped mid-line (32 KiB of an unfinished request), and `no_readers` that flood
    requests and never read a reply."""
    stalled = []
    for index in range(count):
        reader, writer = await asyncio.open_unix_connection(str(path))
        kind = "no-reader" if index < no_readers else ("silent", "mid-line")[index % 2]
        if kind == "mid-line":
            writer.write(b'{"v": 1, "op": "ping", "pad": "' + b"x" * 32 * 1024)
        elif kind == "no-reader":
            writer.transport.set_write_buffer_limits(high=1 << 30)  # let our side queue it all
            writer.write(FLOOD)
        stalled.append(Stalled(reader, writer, kind))
        if index % 50 == 49:
            # The daemon accepts in order: a ping answered means every earlier connect was accepted. This
            # keeps fewer than 100 waiting, the daemon's real listen backlog (see the burst test below).
            await ask(path, {"op": "ping"}, timeout=CLIENT_TIMEOUT_S)
    return stalled


def _footprint(daemon: Daemon) -> tuple[int, int]:
    process = psutil.Process(daemon.process.pid)
    return process.num_fds(), process.memory_info().rss


async def _served(path: Path, project: Path, count: int, at_once: int = 50) -> list[dict]:
    """`count` clients, at most `at_once` connecting at the same moment (see the burst test below)."""
    gate = asyncio.Semaphore(at_once)

    async def one() -> dict:
        async with gate:
            return await ask(path, {"op": "env", "dir": str(project)}, timeout=CLIENT_TIMEOUT_S)

    return await asyncio.gather(*(one() for _ in range(count)))


def _load_round(
    world: World, daemon: Daemon, project: Path, connections: int, wait_for_daemon_close: bool
) -> None:
    async def load() -> None:
        stalled = await _open_stalled(world.socket, connections // 2)
        replies = await _served(world.socket, project, connections - len(stalled))
        assert all(r["ok"] and r["vars"]["AWS_ACCESS_KEY_ID"].startswith("ASIA") for r in replies)
        if wait_for_daemon_close:
            # Timeouts are the daemon's own (ServerLimits); allow one extra second for its scheduling.
            within = max(LIMITS.idle_timeout_s, LIMITS.line_timeout_s, LIMITS.write_timeout_s) + 1
            closed = await asyncio.gather(*(closed_by_daemon(s.reader, within=within) for s in stalled))
            not_closed = [s.kind for s, c in zip(stalled, closed) if not c]
            assert not not_closed, (
                f"stalled connections the daemon kept: {len(not_closed)} ({set(not_closed)})"
            )
        for s in stalled:
            s.writer.transport.abort()

    asyncio.run(load())


def _settled_footprint(daemon: Daemon, open_files: int) -> tuple[int, int]:
    """The daemon's (open files, RSS) once it has noticed every closed peer (bounded poll)."""
    footprint = _footprint(daemon)
    for _ in range(400):
        if footprint[0] <= open_files:
            break
        asyncio.run(asyncio.sleep(0.05))
        footprint = _footprint(daemon)
    return footprint


def _scenario(
    world: World, daemon: Daemon, project: Path, connections: int, wait_for_daemon_close: bool
) -> None:
    asyncio.run(_served(world.socket, project, 10))  # the session fetched, the daemon serving
    fds_idle, _ = _footprint(daemon)
    # The first rounds grow the allocator's pools to their working size; a further identical round must
    # not grow them again (a leak per connection would), and every descriptor must come back each time.
    footprints = []
    for _ in range(3):
        _load_round(world, daemon, project, connections, wait_for_daemon_close)
        footprints.append(_settled_footprint(daemon, fds_idle))
        assert footprints[-1][0] <= fds_idle, f"open files {fds_idle} -> {footprints[-1][0]}"
    rss = [rss for _, rss in footprints]
    assert rss[2] - rss[1] < 4 * MiB, (
        f"RSS kept growing over identical rounds: {[f'{r / MiB:.1f}' for r in rss]} MiB"
    )
    assert daemon.process.poll() is None
    assert daemon.log.count("Traceback") == 0, daemon.log[-3000:]


def test_two_hundred_connections_half_stalled_do_not_hold_up_the_others(
    world: World, daemon: Daemon, allowed_project: Path
) -> None:
    _scenario(world, daemon, allowed_project, connections=200, wait_for_daemon_close=False)


@pytest.mark.slow
def test_a_thousand_connections_half_stalled_are_closed_and_memory_returns(
    world: World, allowed_project: Path
) -> None:
    with open_files_limit(8192):
        daemon = Daemon(world)
    try:
        _scenario(world, daemon, allowed_project, connections=1000, wait_for_daemon_close=True)
    finally:
        daemon.stop()


@pytest.mark.slow
def test_a_thousand_connections_under_the_common_1024_open_files_limit(
    world: World, allowed_project: Path
) -> None:
    """Many systems start user services with a soft limit of 1024 open files: a thousand stalled
    connections must still not lock everyone else out."""
    with open_files_limit(1024):
        daemon = Daemon(world)
    try:
        with open_files_limit(8192):
            _scenario(world, daemon, allowed_project, connections=1000, wait_for_daemon_close=False)
    finally:
        daemon.stop()


def test_a_burst_of_connections_while_the_daemon_is_busy_is_queued_not_refused(
    world: World, daemon: Daemon
) -> None:
    burst = 300
    clients: list[socket.socket] = []
    refused = 0
    # Serving for real first: the daemon listens (and accepts connects) before its server has started.
    [pong] = ask_daemon(world.socket, {"op": "ping"})
    assert pong["ok"]
    daemon.process.send_signal(signal.SIGSTOP)  # busy for a moment: nothing is accepted meanwhile
    try:
        for _ in range(burst):
            client = socket.socket(socket.AF_UNIX)
            client.settimeout(CONNECT_TIMEOUT_S)  # as stsd.wire connects
            try:
                client.connect(str(world.socket))
                clients.append(client)
            except OSError:
                refused += 1
                client.close()
    finally:
        daemon.process.send_signal(signal.SIGCONT)
    try:
        for client in clients:
            client.settimeout(CLIENT_TIMEOUT_S)
            client.sendall(b'{"v": 1, "op": "ping"}\n')
        answered = sum(1 for client in clients if json.loads(client.makefile("rb").readline())["ok"])
    finally:
        for client in clients:
            with contextlib.suppress(OSError):
                client.close()
    assert (refused, answered) == (0, burst)


@pytest.mark.slow
def test_a_client_that_never_reads_its_replies_is_dropped_after_the_write_timeout(
    world: World, daemon: Daemon
) -> None:
    async def scenario() -> list[bool]:
        stalled = await _open_stalled(world.socket, 3, no_readers=3)
        try:
            # Generous: the write timeout, plus the time to produce a few thousand replies.
            within = LIMITS.write_timeout_s + LIMITS.idle_timeout_s
            return await asyncio.gather(*(closed_by_daemon(s.reader, within=within) for s in stalled))
        finally:
            for s in stalled:
                s.writer.transport.abort()

    assert asyncio.run(scenario()) == [True, True, True]
