"""The hook's deadline on the wire: an `env` request that states how long its asker waits (wait_ms) gets
`pending` instead of a wait for STS, the one fetch goes on whoever gave up, and a later ask gets the
credentials. STS is held by the fault proxy until the test releases it: no clock decides anything."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon
from faultproxy import FaultProxy

from stsd import protocol
from stsd.client import transition
from stsd.daemon.deadline import Deadline

from .conftest import write_daemon_config

PROJECT = 'profile = "alice-sts"\n'


@pytest.fixture
def held_daemon(world: World, proxy: FaultProxy) -> Iterator[Daemon]:
    """A real daemon behind the proxy, which holds every AssumeRole until release(). The read timeout is
    long so that botocore never gives up on a held call (and sends a second AssumeRole)."""
    write_daemon_config(world, sts_read_timeout=300)
    proxy.set_mode("hold", actions={"AssumeRole"})
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    yield daemon
    proxy.release()
    daemon.stop()


def _allowed_project(world: World) -> Path:
    directory = world.project("project", PROJECT)
    world.stsd("allow", str(directory), check=True)
    return directory


def _wait_until(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    """Polls a condition that the test's own actions make true; the bound only ends a broken run."""
    for _ in range(600):
        if condition():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never happened: {what}")


def _session_held(world: World) -> bool:
    [status] = ask_daemon(world.socket, {"op": "status"})
    return any(session["expires_at"] for session in status["sessions"])


def test_a_short_deadline_gets_pending_and_a_later_ask_the_credentials(
    world: World, proxy: FaultProxy, held_daemon: Daemon
) -> None:
    directory = _allowed_project(world)
    # A first asker that goes away at once, without reading its reply: the fetch it started goes on.
    with socket.socket(socket.AF_UNIX) as gone:
        gone.connect(str(world.socket))
        gone.sendall(b'{"v": 1, "op": "env", "dir": "%s", "wait_ms": 60000}\n' % str(directory).encode())
    _wait_until(lambda: proxy.count("AssumeRole") == 1, "the AssumeRole reached STS")

    [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(directory), "wait_ms": 50})
    assert not reply["ok"]
    assert reply["error"]["code"] == protocol.PENDING
    assert reply["error"]["project"] == str(directory / ".stsd.toml")
    assert str(directory) in reply["error"]["message"]
    assert "AWS_ACCESS_KEY_ID" not in str(reply)

    proxy.release()
    _wait_until(lambda: _session_held(world), "the session was fetched")
    [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(directory), "wait_ms": 0})
    assert reply["ok"], reply
    assert reply["vars"]["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert proxy.count("AssumeRole") == 1


def test_without_wait_ms_the_request_waits_for_the_fetch(
    world: World, proxy: FaultProxy, held_daemon: Daemon
) -> None:
    directory = _allowed_project(world)
    replies: list[dict] = []
    asking = threading.Thread(
        target=lambda: replies.extend(ask_daemon(world.socket, {"op": "env", "dir": str(directory)}))
    )
    asking.start()
    _wait_until(lambda: proxy.count("AssumeRole") == 1, "the AssumeRole reached STS")
    assert asking.is_alive()  # held with STS: no `pending` for a client that did not state a deadline
    proxy.release()
    asking.join(60)
    assert replies[0]["ok"], replies
    assert proxy.count("AssumeRole") == 1


@pytest.mark.parametrize("wait_ms", [-1, 1.5, "100", True, protocol.MAX_WAIT_MS + 1])
def test_a_bad_wait_ms_is_a_bad_request_naming_the_field(
    daemon: Daemon, world: World, wait_ms: object
) -> None:
    directory = _allowed_project(world)
    [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(directory), "wait_ms": wait_ms})
    assert reply["error"]["code"] == protocol.BAD_REQUEST
    assert reply["error"]["message"].startswith("wait_ms: expected an integer number of milliseconds")


def test_the_hook_client_says_pending_then_gets_the_credentials(
    world_env: World, proxy: FaultProxy, held_daemon: Daemon
) -> None:
    """The hook's own request (stsd.client.transition): its deadline is stated, so STS held means
    `pending` within the hook's timeout, and the next ask has the credentials. (`started`: this test
    process began long ago; the hook's own process counts from its start.)"""
    directory = _allowed_project(world_env)
    project_file = str(directory / ".stsd.toml")
    answer = transition.ask_daemon(str(directory), project_file, "bash", started=time.monotonic())
    assert answer == transition.Pending(project_file, transition.FETCHING)

    proxy.release()
    _wait_until(lambda: _session_held(world_env), "the session was fetched")
    answer = transition.ask_daemon(str(directory), project_file, "bash", started=time.monotonic())
    assert isinstance(answer, transition.Project)
    assert answer.variables["AWS_ACCESS_KEY_ID"]
    assert proxy.count("AssumeRole") == 1


def test_a_daemon_that_accepts_but_never_answers_is_pending_for_the_hook_not_a_wait(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Even accepting late (a daemon swamped, or wedged): the client's own deadline holds, and the outcome
    is "ask again at the next prompt"."""
    runtime = Path(tempfile.mkdtemp(prefix="stsd-rt-", dir="/tmp"))
    os.chmod(runtime, 0o700)
    path = runtime / "stsd.sock"
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(path))
        listener.listen(8)  # never accepted: the kernel completes the connection, nobody reads it
        monkeypatch.setenv("STSD_SOCKET", str(path))
        monkeypatch.setenv("STSD_TIMEOUT", "0.3")
        project = tmp_path / ".stsd.toml"
        answer = transition.ask_daemon(str(tmp_path), str(project), "bash", started=time.monotonic())
        assert answer == transition.Pending(str(project), transition.LATE)
    finally:
        listener.close()
        path.unlink()
        runtime.rmdir()


def test_the_hooks_wait_counts_from_its_process_start() -> None:
    """The deadline counts Python's start-up: process_started() is when the process began, not now."""
    code = "import time; time.sleep(0.5); from stsd.client import transition as t; print(time.monotonic() - t.process_started())"
    age = float(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    assert age >= 0.5 - 0.02  # the kernel counts start times in clock ticks (10 ms)


def test_a_request_queued_past_its_wait_is_answered_busy_and_costs_nothing(
    world: World, proxy: FaultProxy, held_daemon: Daemon
) -> None:
    """asked_at says when the asker asked: queued past its wait_ms, it has moved on (its own deadline),
    so the daemon neither resolves the project nor starts a fetch for it."""
    directory = _allowed_project(world)
    asked_long_ago = time.time() - 5
    [reply] = ask_daemon(
        world.socket, {"op": "env", "dir": str(directory), "wait_ms": 500, "asked_at": asked_long_ago}
    )
    assert reply["error"]["code"] == protocol.PENDING and reply["error"]["busy"] is True
    [status] = ask_daemon(world.socket, {"op": "status"})
    assert status["sessions"] == [] and proxy.count("AssumeRole") == 0
    # wait_ms 0 is "do not wait", not "queued out": the fetch starts and the answer is pending at once.
    [reply] = ask_daemon(
        world.socket, {"op": "env", "dir": str(directory), "wait_ms": 0, "asked_at": time.time()}
    )
    assert reply["error"]["code"] == protocol.PENDING and "busy" not in reply["error"]
    _wait_until(lambda: proxy.count("AssumeRole") == 1, "the AssumeRole reached STS")


def test_a_deadline_cancels_only_its_own_wait() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        never = asyncio.get_running_loop().create_future()
        try:
            async with Deadline(0.01):
                await asyncio.shield(never)
            timed_out = False
        except asyncio.TimeoutError:
            timed_out = True

        async with Deadline(60):
            await asyncio.sleep(0)  # ready at once: no timeout, no cancellation left behind
        current = asyncio.current_task()
        left_clean = current is not None and (not hasattr(current, "cancelling") or current.cancelling() == 0)

        async def stopped_from_outside() -> None:
            async with Deadline(60):
                await asyncio.sleep(60)

        task = asyncio.ensure_future(stopped_from_outside())
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return timed_out, left_clean, task.cancelled() and not never.cancelled()

    assert asyncio.run(scenario()) == (True, True, True)
