"""The daemon's socket server as a user meets it: a private socket, same-uid peers only, an error reply
for any bad input (never a crash), many clients at once, and a clean exit on SIGTERM."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon, raw_exchange
from other_user import NOBODY, SYSTEM_PYTHON, as_root, run_as


def error_code(reply: dict) -> str:
    assert reply["ok"] is False, reply
    return reply["error"]["code"]


def assert_answers_ping(world: World, daemon: Daemon) -> None:
    [reply] = ask_daemon(world.socket, {"op": "ping"})
    assert reply["ok"] is True and reply["pid"] == daemon.process.pid


def test_socket_directory_is_0700_and_socket_is_0600(daemon: Daemon, world: World) -> None:
    assert stat.S_IMODE(world.socket.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(world.socket.stat().st_mode) == 0o600
    assert stat.S_ISSOCK(world.socket.stat().st_mode)


def test_daemon_refuses_core_dumps(daemon: Daemon) -> None:
    limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
    [core] = [line for line in limits.splitlines() if line.startswith("Max core file size")]
    assert core.split()[4:6] == ["0", "0"]


def test_hardened_process_is_not_dumpable() -> None:
    # Run in a child: hardening is one-way, and as root we could not see the effect on another process.
    check = (
        "from stsd.daemon.hardening import harden_process, is_dumpable\n"
        "import os\n"
        "assert is_dumpable() is True\n"
        "harden_process()\n"
        "print(is_dumpable(), oct(os.umask(0)))\n"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "0o77"]


def test_invalid_daemon_config_is_one_line_and_exit_2(world: World) -> None:
    config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("renew_before_seconds = true\n")
    result = world.stsd("serve", timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"stsd: {config}: renew_before_seconds: expected a whole number of seconds >= 0"
    ]
    assert not world.socket.exists()


def test_daemon_refuses_an_unsafe_socket_directory(world: World) -> None:
    world.socket.parent.mkdir(mode=0o755, parents=True)
    os.chmod(world.socket.parent, 0o755)
    result = world.stsd("serve", timeout=30)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"stsd: refusing {world.socket.parent}: other users can reach it (mode 755); run: chmod 700 {world.socket.parent}"
    ]


@as_root
def test_connection_from_another_user_is_refused_and_logged(daemon: Daemon, world: World) -> None:
    # Open the path for this test only, so that SO_PEERCRED is the only thing that can refuse nobody.
    for directory in (world.runtime, world.socket.parent):
        os.chmod(directory, 0o711)
    os.chmod(world.socket, 0o666)
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "s.settimeout(10)\n"
        "s.connect(sys.argv[1])\n"
        "try:\n"
        '    s.sendall(b\'{"v":1,"op":"ping"}\\n\')\n'
        "    print(repr(s.recv(65536)))\n"
        "except (ConnectionResetError, BrokenPipeError):\n"  # closed before or with our request unread
        "    print(repr(b''))\n"
    )
    result = run_as([SYSTEM_PYTHON, "-c", client, str(world.socket)], timeout=30, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "b''"  # connected, then closed without a reply
    assert f"refused a connection from another user (uid {NOBODY}, pid" in daemon.log
    assert_answers_ping(world, daemon)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\xff\xfe\x00garbage\n", "bad_request"),
        (b"{not json\n", "bad_request"),
        (b"[1, 2, 3]\n", "bad_request"),
        (b'"just a string"\n', "bad_request"),
        (b'{"op": "ping"}\n', "bad_request"),
        (b'{"v": 2, "op": "ping"}\n', "unsupported_version"),
        (b'{"v": "1", "op": "ping"}\n', "unsupported_version"),
        (b'{"v": 1, "op": "launch-missiles"}\n', "unknown_op"),
        (b'{"v": 1, "op": 7}\n', "bad_request"),
        (b'{"v": 1, "op": "env"}\n', "bad_request"),
        (b'{"v": 1, "op": "env", "dir": "relative/path"}\n', "bad_request"),
        (b'{"v": 1, "op": "env", "dir": 42}\n', "bad_request"),
        (b'{"v": 1, "op": "credentials", "profile": "a", "dir": "/tmp"}\n', "bad_request"),
        (b'{"v": 1, "op": "credentials", "profile": ""}\n', "bad_request"),
        (b'{"v": 1, "op": "status", "dir": ["/tmp"]}\n', "bad_request"),
        (b'{"v": 1, "op": "ping", "id": {"nested": true}}\n', "bad_request"),
        (b'{"v": 1, "op": "ping", "id": 1' + b"0" * 5000 + b"}\n", "bad_request"),
        (b"[" * 30000 + b"]" * 30000 + b"\n", "bad_request"),
    ],
)
def test_bad_request_gets_an_error_reply_and_the_connection_stays_usable(
    daemon: Daemon, world: World, payload: bytes, code: str
) -> None:
    bad, after = raw_exchange(world.socket, payload + b'{"v": 1, "op": "ping", "id": "next"}\n', replies=2)
    assert error_code(bad) == code
    assert bad["error"]["message"] and "\n" not in bad["error"]["message"]
    assert after == {
        "v": 1,
        "ok": True,
        "id": "next",
        "pid": daemon.process.pid,
        "version": after["version"],
        "protocol": 1,
    }


def test_request_id_is_echoed_on_success_and_on_error(daemon: Daemon, world: World) -> None:
    ok, failed = ask_daemon(world.socket, {"op": "ping", "id": 17}, {"op": "nope", "id": "abc"})
    assert ok["id"] == 17
    assert failed["id"] == "abc" and error_code(failed) == "unknown_op"


def test_megabyte_line_is_refused_as_too_large_and_daemon_keeps_serving(daemon: Daemon, world: World) -> None:
    huge = b'{"v": 1, "op": "ping", "pad": "' + b"x" * (1024 * 1024) + b'"}\n'
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(world.socket))
        # The daemon replies and closes before reading it all, so the send may fail midway.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(huge)
        stream = sock.makefile("rb")
        reply = json.loads(stream.readline())
        assert error_code(reply) == "too_large"
        assert stream.readline() == b""  # closed: the rest of that line cannot be framed
    assert_answers_ping(world, daemon)


def test_many_requests_on_one_connection_are_answered_in_order(daemon: Daemon, world: World) -> None:
    replies = ask_daemon(world.socket, *({"op": "ping", "id": n} for n in range(200)))
    assert [reply["id"] for reply in replies] == list(range(200))
    assert all(reply["ok"] for reply in replies)


def test_a_hundred_concurrent_clients_all_get_their_own_reply(daemon: Daemon, world: World) -> None:
    outside = world.home / "no-project-here"
    outside.mkdir()
    results: dict[int, list[dict]] = {}
    failures: list[BaseException] = []

    def client(number: int) -> None:
        try:
            results[number] = ask_daemon(
                world.socket, {"op": "ping", "id": number}, {"op": "env", "dir": str(outside), "id": -number}
            )
        except BaseException as error:  # collected and asserted on below, in the test's thread
            failures.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert sorted(results) == list(range(100))
    for number, (ping, env) in results.items():
        assert ping["ok"] and ping["id"] == number and ping["pid"] == daemon.process.pid
        assert env["ok"] and env["id"] == -number and env["project"] is None and env["vars"] == {}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_or_sigint_exits_zero_and_removes_the_socket(
    daemon: Daemon, world: World, signum: int
) -> None:
    daemon.process.send_signal(signum)
    assert daemon.process.wait(15) == 0
    assert not world.socket.exists()
    assert "shutting down" in daemon.log


def test_stale_socket_from_a_dead_daemon_is_replaced(world: World) -> None:
    world.socket.parent.mkdir(mode=0o700, parents=True)
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(str(world.socket))  # a socket file nobody listens on: what a killed daemon leaves
    leftover.close()
    assert world.socket.exists()
    replacement = Daemon(world)
    try:
        assert_answers_ping(world, replacement)
        assert "replacing stale socket" in replacement.log
    finally:
        assert replacement.stop() == 0


def test_second_serve_does_not_steal_a_live_socket(daemon: Daemon, world: World) -> None:
    second = world.stsd("serve", timeout=30)
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1] == (
        f"stsd: a daemon is already serving {world.socket} (pid {daemon.process.pid})"
    )
    assert_answers_ping(world, daemon)


def test_a_file_in_place_of_the_socket_is_not_removed(world: World) -> None:
    world.socket.parent.mkdir(mode=0o700, parents=True)
    world.socket.write_text("not a socket")
    result = world.stsd("serve", timeout=30)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"stsd: {world.socket} exists and is not a socket; remove it or set STSD_SOCKET"
    )
    assert world.socket.read_text() == "not a socket"


@pytest.mark.slow
def test_a_line_never_completed_is_dropped_after_the_line_timeout(daemon: Daemon, world: World) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(world.socket))
        sock.sendall(b'{"v": 1, "op": "pi')
        assert sock.recv(100) == b""  # closed by the daemon, with no reply to a half line
    assert_answers_ping(world, daemon)


@pytest.mark.slow
def test_an_idle_connection_is_closed_after_the_idle_timeout(daemon: Daemon, world: World) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(world.socket))
        sock.sendall(b'{"v": 1, "op": "ping"}\n')
        assert json.loads(sock.makefile("rb").readline())["ok"] is True
        assert sock.recv(100) == b""  # then nothing more is asked: the daemon hangs up
    assert_answers_ping(world, daemon)


@pytest.mark.slow
def test_connections_beyond_the_limit_get_a_clear_refusal(daemon: Daemon, world: World) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2200:
        pytest.skip("needs 2200 open files in the test process")
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (2200 if hard == resource.RLIM_INFINITY else max(soft, 2200), hard)
    )
    held: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(str(world.socket))  # blocking: waits while the listen backlog is full
            sock.settimeout(30)
            sock.sendall(b'{"v": 1, "op": "ping"}\n')
            held.append(sock)
        # Every connection answered: all 2000 are accepted and open on the daemon's side.
        assert all(json.loads(sock.makefile("rb").readline())["ok"] for sock in held)
        [refused] = raw_exchange(world.socket, b'{"v": 1, "op": "ping"}\n')
        assert error_code(refused) == "busy"
        assert "2000 connections" in refused["error"]["message"]
        held.pop().close()
    finally:
        for sock in held:
            sock.close()
    assert_answers_ping(world, daemon)


def test_a_bug_in_a_handler_costs_one_internal_reply_not_the_daemon(caplog: pytest.LogCaptureFixture) -> None:
    # No real request makes the Service fail, so a handler with a planted bug stands in for it here.
    import asyncio

    from stsd.daemon.server import SocketServer, bind_listener

    async def handler(request: dict) -> dict:
        if request.get("op") == "boom":
            raise RuntimeError("planted bug")
        return {"v": 1, "ok": True, "id": request.get("id")}

    async def scenario() -> list[dict]:
        server = SocketServer(handler)
        socket_path = Path(tempfile.mkdtemp(prefix="stsd-bug-", dir="/tmp")) / "private" / "s.sock"
        await server.start(bind_listener(socket_path))
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
            writer.write(b'{"v": 1, "op": "boom", "id": 9}\n{"v": 1, "op": "ping", "id": 10}\n')
            await writer.drain()
            replies = [json.loads(await reader.readline()) for _ in range(2)]
            writer.close()
            return replies
        finally:
            await server.close()
            shutil.rmtree(socket_path.parent.parent)

    with caplog.at_level("ERROR", logger="stsd.server"):
        failed, after = asyncio.run(scenario())
    assert failed == {
        "v": 1,
        "ok": False,
        "id": 9,
        "error": {"code": "internal", "message": "internal error; details are in the daemon log"},
    }
    assert after == {"v": 1, "ok": True, "id": 10}
    assert "planted bug" in caplog.text  # the traceback went to the log
