"""A prompt never waits out a slow STS: real bash, zsh and fish on a pty entering a project whose
AssumeRole is held (tests/faultproxy.py, released by the test, no clock) say once that the credentials are
being fetched, export nothing of either project meanwhile, and have the credentials at a prompt after the
fetch ended, with one AssumeRole on the wire."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from conftest import Daemon, World, ask_daemon
from faultproxy import FaultProxy

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


@pytest.fixture
def proxy(world: World) -> Iterator[FaultProxy]:
    with FaultProxy(world.aws.endpoint) as p:
        yield p


@pytest.fixture
def proxied_daemon(world: World, proxy: FaultProxy) -> Iterator[Daemon]:
    # A long read timeout: botocore must not give up on a held AssumeRole and send another.
    config = world.home / ".config" / "stsd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("sts_read_timeout = 300\n")
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    yield daemon
    proxy.release()
    daemon.stop()


def _wait_until_fetched(world: World, session_name: str) -> None:
    """Until the daemon holds that session (the test released STS, so this comes; the bound only ends a
    broken run)."""
    for _ in range(600):
        [status] = ask_daemon(world.socket, {"op": "status"})
        if any(s["session_name"] == session_name and s["expires_at"] for s in status["sessions"]):
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"the daemon never held {session_name}")


def test_entering_while_sts_is_slow_says_pending_once_then_loads_at_a_later_prompt(
    world: World, proxy: FaultProxy, proxied_daemon: Daemon, open_shell
) -> None:
    before = world.project("before", 'profile = "alice-sts"\n')
    slow = world.project("slow", 'profile = "alice-sts"\nrole_session_name = "slow-sts"\n')
    for directory in (before, slow):
        world.stsd("allow", str(directory), check=True)
    # The hook's real timeout, not the 20 s the other shell tests give a busy machine: the point here.
    shell = open_shell(STSD_TIMEOUT="3")
    shell.cd(before)
    assert all(name in shell.env() for name in CREDENTIALS)
    calls_before = proxy.count("AssumeRole")

    proxy.set_mode("hold", actions={"AssumeRole"})
    entered = shell.cd(slow)
    notice = f"stsd: fetching credentials for {slow}; they will be set at the next prompt"
    assert entered.count(notice) == 1, entered
    environment = shell.env()
    assert not any(name in environment for name in CREDENTIALS)  # the previous project's are gone too
    assert "STSD_PROFILE" not in environment
    # Asked again at the next prompt, and said once: still pending, no new line.
    due = shell.run(shell.kind.show_refresh_at).strip()
    assert due.isdigit() and int(due) > 0, due  # a due time is set (bash, zsh: epoch; fish: a file's mtime)
    assert "stsd:" not in shell.make_refresh_due() + shell.prompt()

    proxy.release()
    _wait_until_fetched(world, "slow-sts")
    loaded = shell.make_refresh_due() + shell.prompt()
    assert "stsd: loaded" in loaded, loaded
    assert all(name in shell.env() for name in CREDENTIALS)
    assert proxy.count("AssumeRole") - calls_before == 1
