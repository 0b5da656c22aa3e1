"""The one way every stsd client reaches the daemon: find the socket, check that its directory is yours
and private, connect, check with the kernel (SO_PEERCRED) that the peer runs as you, send one JSON line,
read one. The hook's fast path, the CLI and `stsd start`/`stop` all go through `request()`; nothing else
opens the socket. Standard library only, and lean (no json, socket or pathlib module): it runs on every
shell transition."""

from __future__ import annotations

# _socket, the C core of `socket`: the wrapper module builds enums and imports selectors, several ms of
# start-up that every shell transition would pay for nothing used here.
import _socket
import os
import sys
import time

from stsd import paths, protocol

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: start-up time
if TYPE_CHECKING:
    from typing import Any

CONNECT_TIMEOUT_S = 0.5  # a live daemon accepts at once; longer means it is wedged
MAX_REPLY_BYTES = 4 * 1024 * 1024  # a status reply is a few KiB; the cap only guards against garbage


# Why there is no answer (WireError.kind):
ABSENT = "absent"  # no daemon listens (no socket, or a stale one): the one case starting a daemon fixes
UNTRUSTED = "untrusted"  # the socket's directory or the peer is not yours: never talk to it, never start
FAILED = "failed"  # something listens but gave no usable answer (closed, garbled)
LATE = "late"  # no answer within the caller's time: wedged, or only busy (the hook asks again later)


class WireError(Exception):
    """No trustworthy answer; str() is one line for the user, `kind` one of the three above."""

    def __init__(self, message: str, kind: str = FAILED) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def startable(self) -> bool:
        return self.kind == ABSENT


class Reply:
    """A decoded reply and the pid the kernel says sent it."""

    __slots__ = ("message", "peer_pid")

    def __init__(self, message: dict[str, Any], peer_pid: int) -> None:
        self.message = message
        self.peer_pid = peer_pid


def request(message: dict[str, Any], timeout: float, socket_path: str | None = None) -> Reply:
    """Send `message` (with the protocol version added) and return the reply. Raises WireError."""
    deadline = time.monotonic() + timeout
    path = socket_path or paths.socket_path()
    try:
        line = json_dumps({**message, "v": protocol.VERSION}).encode() + b"\n"
    except UnicodeEncodeError:
        # A path that is not valid UTF-8 (surrogate-escaped by Python) cannot travel in JSON.
        raise WireError("cannot ask the stsd daemon about a path that is not valid UTF-8") from None
    connection, peer_pid = connect(path, deadline)
    try:
        return Reply(_exchange(connection, line, deadline), peer_pid)
    finally:
        connection.close()


def connect(path: str, deadline: float) -> tuple[_socket.socket, int]:
    """A connection to the daemon at `path` and the peer's pid, after checking who is on either side."""
    try:
        paths.check_private_dir(os.path.dirname(path))
    except FileNotFoundError:
        raise WireError(NOT_RUNNING, ABSENT) from None
    except paths.UnsafeDirectoryError as error:
        raise WireError(str(error), UNTRUSTED) from None
    except OSError as error:
        raise WireError(f"cannot check {os.path.dirname(path)}: {error.strerror or error}") from None
    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        connection.settimeout(max(0.01, min(CONNECT_TIMEOUT_S, deadline - time.monotonic())))
        connection.connect(path)
        pid, uid = peer_credentials(connection)
    except (FileNotFoundError, ConnectionRefusedError):
        connection.close()
        raise WireError(NOT_RUNNING, ABSENT) from None
    except _socket.timeout:
        connection.close()
        raise WireError(NOT_ANSWERING, LATE) from None
    except OSError as error:
        connection.close()
        raise WireError(f"cannot reach the stsd daemon at {path}: {error.strerror or error}") from None
    if uid != os.getuid():
        # Another user's daemon would hand us credentials and variables of its choosing.
        connection.close()
        raise WireError(
            f"refusing {path}: it is served by uid {uid}, not you; remove it or set STSD_SOCKET", UNTRUSTED
        )
    return connection, pid


def peer_credentials(connection: _socket.socket) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket, from the kernel: for a
    listening socket, of the process that called listen() (systemd's, under socket activation)."""
    raw = connection.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)  # struct ucred: 3 ints
    return (
        int.from_bytes(raw[0:4], sys.byteorder, signed=True),
        int.from_bytes(raw[4:8], sys.byteorder, signed=True),
    )


def _exchange(connection: _socket.socket, line: bytes, deadline: float) -> dict[str, Any]:
    try:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        connection.sendall(line)
        data = _read_line(connection, deadline)
    except _socket.timeout:
        raise WireError(NOT_ANSWERING, LATE) from None
    except OSError as error:
        raise WireError(f"lost the connection to the stsd daemon: {error.strerror or error}") from None
    try:
        reply = json_loads(data.decode())
    except (ValueError, UnicodeDecodeError, RecursionError):
        reply = None
    if not isinstance(reply, dict):
        raise WireError(f"the stsd daemon sent an unreadable reply; see its log: {paths.log_file()}")
    return reply


def _read_line(connection: _socket.socket, deadline: float) -> bytes:
    buffer = b""
    while True:
        newline = buffer.find(b"\n")
        if newline >= 0:
            return buffer[:newline]
        if len(buffer) > MAX_REPLY_BYTES:
            raise WireError(f"the stsd daemon sent an oversized reply; see its log: {paths.log_file()}")
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            raise WireError(f"the stsd daemon closed the connection; see its log: {paths.log_file()}")
        buffer += chunk


NOT_RUNNING = "the daemon is not running; run: stsd start (or systemctl --user start stsd.socket)"
NOT_ANSWERING = "the daemon is not answering; run: stsd stop, then stsd start"


# -- JSON through the C `_json` module (the `json` package imports `re`, a large share of a transition)


class _JsonOptions:
    # What the C scanner reads from json.JSONDecoder; plain types keep its fast paths.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def json_loads(text: str) -> object:
    import _json

    try:
        value, end = _json.make_scanner(_JsonOptions())(text, 0)
    except StopIteration:  # the scanner's way of saying "no JSON value at this index"
        raise ValueError("not a JSON value") from None
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def json_dumps(value: object) -> str:
    """Compact JSON for the shapes stsd sends: dicts, lists, strings, ints, None, bools."""
    import _json

    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        items = (f"{_json.encode_basestring_ascii(str(k))}:{json_dumps(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, str):
        value.encode()  # UnicodeEncodeError for a lone surrogate (a path that is not UTF-8): never sent
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
