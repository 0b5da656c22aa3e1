"""One request to the daemon over its Unix socket, with short timeouts and (optionally) starting the
daemon when it is not running. Standard library only: this runs on shell transitions."""

from __future__ import annotations

# _socket, the C core of `socket`: the wrapper module builds enums and imports selectors, several ms of
# start-up that every shell transition would pay for nothing this client uses.
import _socket
import json
import os
import struct
import sys
import time
from pathlib import Path

from stsd import paths, protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: start-up time
if TYPE_CHECKING:
    import subprocess
    from typing import Any

CONNECT_TIMEOUT_S = 0.5  # a live daemon accepts at once; longer means it is wedged
AUTOSTART_WAIT_S = 2.0  # how long the socket may take to appear once `stsd start` has returned
MAX_REPLY_BYTES = 4 * 1024 * 1024  # a status reply is a few KiB; the cap only guards against garbage
_POLL_S = 0.02

NOT_RUNNING = "stsd daemon is not running: run `stsd start` (or `systemctl --user start stsd.socket`)"


class DaemonUnavailable(Exception):
    """The daemon could not be reached or did not answer in time; str() is one line saying what to run."""


def request(
    message: dict[str, Any], *, timeout: float = 5.0, autostart: bool | None = None
) -> dict[str, Any]:
    """Send one request (adding "v": 1) and return the daemon's reply, an ok or an error reply as in
    docs/protocol.md. Raises DaemonUnavailable when the daemon cannot be reached within `timeout`."""
    if autostart is None:
        autostart = os.environ.get("STSD_NO_AUTOSTART", "") != "1"
    deadline = time.monotonic() + timeout
    socket_path = paths.socket_path()
    try:
        line = protocol.encode({**message, "v": protocol.VERSION})
    except UnicodeEncodeError:
        # A path that is not valid UTF-8 (surrogate-escaped by Python) cannot travel in JSON.
        raise DaemonUnavailable("cannot ask the stsd daemon about a path that is not valid UTF-8") from None
    connection = _connect(socket_path, deadline, autostart)
    try:
        return _exchange(connection, line, deadline)
    finally:
        connection.close()


def _connect(socket_path: Path, deadline: float, autostart: bool) -> _socket.socket:
    try:
        return _try_connect(socket_path, deadline)
    except (FileNotFoundError, ConnectionRefusedError):
        # No socket, or a stale one left by a crashed daemon: the only cases a start can fix.
        if not autostart:
            raise DaemonUnavailable(NOT_RUNNING) from None
    starter = _start_daemon()
    patience_until = time.monotonic() + AUTOSTART_WAIT_S
    while True:
        try:
            return _try_connect(socket_path, deadline)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        # poll() also reaps `stsd start` once it has detached, so no zombie lingers.
        started = starter.poll()
        if started not in (None, 0):
            raise DaemonUnavailable("stsd daemon could not start: run `stsd start` to see why")
        now = time.monotonic()
        # A cold start (botocore imports) can outlast AUTOSTART_WAIT_S on a busy machine: keep waiting
        # while `stsd start` is still at work (it gives up by itself), never past the caller's timeout.
        if now >= deadline or (now >= patience_until and started is not None):
            raise DaemonUnavailable(
                f"stsd daemon did not start in time: run `stsd serve` to see why (log: {paths.log_file()})"
            )
        time.sleep(_POLL_S)


def _try_connect(socket_path: Path, deadline: float) -> _socket.socket:
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(max(0.01, min(CONNECT_TIMEOUT_S, deadline - time.monotonic())))
        connection.connect(str(socket_path))
    except (FileNotFoundError, ConnectionRefusedError):
        connection.close()
        raise
    except _socket.timeout:
        connection.close()
        raise DaemonUnavailable(_not_answering()) from None
    except OSError as error:
        connection.close()
        reason = error.strerror or str(error)
        raise DaemonUnavailable(f"cannot reach the stsd daemon at {socket_path}: {reason}") from None
    owner = _peer_uid(connection)
    if owner is not None and owner != os.getuid():
        # Another user's socket (say, planted in /tmp) would hand us credentials of its choosing.
        connection.close()
        raise DaemonUnavailable(
            f"refusing {socket_path}: it is served by uid {owner}, not you; remove it or set STSD_SOCKET"
        )
    return connection


def _peer_uid(connection: _socket.socket) -> int | None:
    """The uid of the process serving the socket (Linux SO_PEERCRED); None where the OS cannot tell."""
    option = getattr(_socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = struct.unpack("3i", connection.getsockopt(_socket.SOL_SOCKET, option, 12))
    return int(uid)


def _start_daemon() -> subprocess.Popen[bytes]:
    import subprocess  # only when starting: keeps every ordinary request's start-up light

    try:
        return subprocess.Popen(
            [sys.executable, "-m", "stsd", "start"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # the daemon must outlive this process and its terminal
            close_fds=True,
        )
    except OSError as error:
        raise DaemonUnavailable(f"cannot start the stsd daemon ({error.strerror}): {NOT_RUNNING}") from None


def _exchange(connection: _socket.socket, line: bytes, deadline: float) -> dict[str, Any]:
    try:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        connection.sendall(line)
        reply = _read_line(connection, deadline)
    except _socket.timeout:
        raise DaemonUnavailable(_not_answering()) from None
    except OSError as error:
        raise DaemonUnavailable(
            f"lost the connection to the stsd daemon: {error.strerror or error}"
        ) from None
    try:
        decoded = json.loads(reply)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DaemonUnavailable(
            f"the stsd daemon sent an unreadable reply; see its log: {paths.log_file()}"
        ) from None
    if not isinstance(decoded, dict):
        raise DaemonUnavailable(f"the stsd daemon sent an unreadable reply; see its log: {paths.log_file()}")
    return decoded


def _read_line(connection: _socket.socket, deadline: float) -> bytes:
    buffer = bytearray()
    while True:
        newline = buffer.find(b"\n")
        if newline >= 0:
            return bytes(buffer[:newline])
        if len(buffer) > MAX_REPLY_BYTES:
            raise DaemonUnavailable(
                f"the stsd daemon sent an oversized reply; see its log: {paths.log_file()}"
            )
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            raise DaemonUnavailable(f"the stsd daemon closed the connection; see its log: {paths.log_file()}")
        buffer += chunk


def _not_answering() -> str:
    return f"stsd daemon is not answering: run `stsd stop` then `stsd start` (log: {paths.log_file()})"
