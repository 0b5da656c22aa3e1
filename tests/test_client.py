"""The thin client alone: framing, timeouts and errors of `connection.request`, and its stdlib-only imports.
Framing tests talk to a tiny socket server of their own: they test the client, not the daemon."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stsd import wire
from stsd.client.connection import DaemonUnavailable, request

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534

# Modules that would make the client slow or drag the daemon's world into every shell transition.
FORBIDDEN_ON_CLIENT_PATH = ("boto3", "botocore", "psutil", "daemon", "stsd.daemon", "moto", "urllib3")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: keep them short, outside pytest's deep tmp_path.
    directory = Path(tempfile.mkdtemp(prefix="stsd-client-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def socket_path(socket_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = socket_dir / "stsd.sock"
    monkeypatch.setenv("STSD_SOCKET", str(path))
    monkeypatch.setenv("STSD_NO_AUTOSTART", "1")
    return path


class OneShotServer:
    """Accepts one connection, reads one request line, and answers as `respond` says."""

    def __init__(self, path: Path, respond: Callable[[socket.socket, bytes], None]) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        self.received: list[dict] = []
        self._respond = respond
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            line = b""
            while not line.endswith(b"\n"):
                chunk = connection.recv(4096)
                if not chunk:
                    return
                line += chunk
            self.received.append(json.loads(line))
            self._respond(connection, line)

    def close(self) -> None:
        self.listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def serve(socket_path: Path) -> Iterator[Callable[[Callable[[socket.socket, bytes], None]], OneShotServer]]:
    servers: list[OneShotServer] = []

    def start(respond: Callable[[socket.socket, bytes], None]) -> OneShotServer:
        servers.append(OneShotServer(socket_path, respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


# -- daemon not there ------------------------------------------------------------------------------------


@pytest.mark.timeout(5)
def test_missing_socket_without_autostart_says_to_start_the_daemon(socket_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as caught:
        request({"op": "ping"})

    assert str(caught.value) == wire.NOT_RUNNING


@pytest.mark.timeout(5)
def test_stale_socket_of_a_dead_daemon_is_reported_as_not_running(socket_path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(socket_path))
    dead.close()  # the file stays; nobody listens: connect is refused

    with pytest.raises(DaemonUnavailable, match=re.escape(wire.NOT_RUNNING)):
        request({"op": "ping"})


@pytest.mark.timeout(5)
def test_autostart_off_by_environment_unless_asked(socket_path: Path) -> None:
    # STSD_NO_AUTOSTART=1 (set by the fixture) turns the default off; nothing is spawned.
    with pytest.raises(DaemonUnavailable, match="not running"):
        request({"op": "ping"}, autostart=None)
    assert not socket_path.exists()


@pytest.mark.timeout(5)
def test_daemon_that_accepts_but_never_answers_times_out(serve, socket_path: Path) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    serve(lambda connection, line: release.wait(5))

    try:
        with pytest.raises(DaemonUnavailable, match="not answering"):
            request({"op": "ping"}, timeout=0.3)
    finally:
        release.set()


@pytest.mark.timeout(5)
def test_daemon_closing_without_a_reply_is_unavailable(serve) -> None:  # type: ignore[no-untyped-def]
    serve(lambda connection, line: None)

    with pytest.raises(DaemonUnavailable, match="closed the connection"):
        request({"op": "ping"})


@pytest.mark.timeout(5)
def test_unreadable_reply_is_unavailable_not_a_traceback(serve) -> None:  # type: ignore[no-untyped-def]
    serve(lambda connection, line: connection.sendall(b"<html>oops</html>\n"))

    with pytest.raises(DaemonUnavailable, match="unreadable reply"):
        request({"op": "ping"})


@pytest.mark.timeout(10)
def test_endless_reply_is_cut_off(serve) -> None:  # type: ignore[no-untyped-def]
    def flood(connection: socket.socket, line: bytes) -> None:
        # The client hangs up once it has seen enough: a broken pipe here is expected.
        with contextlib.suppress(OSError):
            connection.sendall(b"x" * (5 * 1024 * 1024))

    serve(flood)

    with pytest.raises(DaemonUnavailable, match="oversized reply"):
        request({"op": "ping"})


@pytest.mark.timeout(5)
def test_path_that_is_not_utf8_is_refused_before_sending(socket_path: Path) -> None:
    with pytest.raises(DaemonUnavailable, match="not valid UTF-8"):
        request({"op": "env", "dir": "/tmp/\udcff"})


@pytest.mark.timeout(10)
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to serve the socket as a second user")
def test_socket_served_by_another_user_is_refused(socket_dir: Path, socket_path: Path) -> None:
    socket_dir.chmod(0o777)  # the other user must be able to create the socket here
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # the other user: listen, then accept until killed
        try:
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(socket_path))
            listener.listen(4)
            os.write(ready_write, b"1")
            while True:
                connection, _ = listener.accept()
                connection.sendall(b'{"v": 1, "ok": true, "vars": {}}\n')
        finally:
            os._exit(0)
    try:
        os.read(ready_read, 1)
        socket_dir.chmod(0o700)  # a private directory of ours: only the kernel's word on the peer can refuse
        with pytest.raises(DaemonUnavailable, match=f"refusing {socket_path}: it is served by uid {NOBODY}"):
            request({"op": "env", "dir": "/tmp"})
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready_read)
        os.close(ready_write)


# -- framing ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(5)
def test_request_adds_the_protocol_version_and_returns_the_reply(serve) -> None:  # type: ignore[no-untyped-def]
    def answer_in_pieces(connection: socket.socket, line: bytes) -> None:
        reply = json.dumps({"v": 1, "ok": True, "id": json.loads(line)["id"], "pid": 42}).encode() + b"\n"
        for i in range(0, len(reply), 5):  # a reply may arrive in several reads
            connection.sendall(reply[i : i + 5])

    server = serve(answer_in_pieces)

    reply = request({"op": "ping", "id": "a1"})

    assert server.received == [{"op": "ping", "id": "a1", "v": 1}]
    assert reply == {"v": 1, "ok": True, "id": "a1", "pid": 42}


@pytest.mark.timeout(5)
def test_error_replies_are_returned_for_the_caller_to_read(serve) -> None:  # type: ignore[no-untyped-def]
    refusal = {"v": 1, "ok": False, "error": {"code": "untrusted", "message": "run stsd allow /p"}}
    serve(lambda connection, line: connection.sendall(json.dumps(refusal).encode() + b"\n"))

    assert request({"op": "env", "dir": "/p"}) == refusal


# -- the client path stays standard-library only -----------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["env", "--json", "/tmp"],
        ["status"],
        ["credential-process", "alice-sts"],
        ["exec", "--", "true"],
        ["deny", "/"],
    ],
)
def test_client_commands_never_import_the_daemon_or_boto3(command: list[str], socket_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "stsd", *command],
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO),
            "STSD_SOCKET": str(socket_path),
            "STSD_NO_AUTOSTART": "1",
            "HOME": str(socket_path.parent),
        },
        capture_output=True,
        text=True,
        timeout=30,
        cwd=socket_path.parent,
    )
    imported = {
        line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")
    }

    assert "stsd.cli" in imported  # the run did reach our code
    offending = sorted(
        name
        for name in imported
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_ON_CLIENT_PATH)
    )
    assert offending == []
