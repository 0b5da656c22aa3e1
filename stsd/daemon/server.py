"""The daemon's Unix-socket server: a private socket, same-uid peers only (SO_PEERCRED), JSON lines with
size and time limits, bounded connections; every request is handed to one async handler (the Service)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stsd import paths, protocol, wire
from stsd.daemon.deadline import Deadline
from stsd.daemon.throttled_log import ThrottledLog

log = logging.getLogger("stsd.server")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ServerLimits:
    max_line_bytes: int = protocol.MAX_LINE_BYTES
    idle_timeout_s: float = 10.0  # no request started on a connection for this long: close it
    line_timeout_s: float = 5.0  # a request line begun but not completed in this time: close it
    write_timeout_s: float = 5.0  # a peer that does not read its reply is dropped
    max_connections: int = 2000


class SocketInUseError(Exception):
    """Another live daemon answers on the socket path; we never take it over."""


class SocketSetupError(Exception):
    """The socket path cannot be used (unsafe directory, not a socket, bind failure)."""


def bind_listener(path: Path) -> socket.socket:
    """A listening socket at `path` in a private directory, mode 0600.

    A socket file left by a dead daemon is replaced; one a live daemon answers on raises SocketInUseError."""
    try:
        paths.ensure_private_dir(path.parent)
    except (paths.UnsafeDirectoryError, OSError) as error:
        raise SocketSetupError(str(error)) from None
    _clear_stale_socket(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket 0600 from its first moment; the chmod states it explicitly.
    previous_umask = os.umask(0o077)
    try:
        listener.bind(str(path))
        os.chmod(path, 0o600)
        listener.listen(socket.SOMAXCONN)
    except OSError as error:
        listener.close()
        raise SocketSetupError(f"cannot listen on {path}: {error.strerror}") from None
    finally:
        os.umask(previous_umask)
    listener.setblocking(False)
    return listener


def _clear_stale_socket(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketSetupError(f"{path} exists and is not a socket; remove it or set STSD_SOCKET")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError as error:
            if error.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise SocketSetupError(f"cannot check {path}: {error.strerror}") from None
        else:
            # SO_PEERCRED on a client socket names the process that called listen(): the live daemon.
            owner, _uid = wire.peer_credentials(probe)
            raise SocketInUseError(f"a daemon is already serving {path} (pid {owner})")
    log.info("replacing stale socket %s (no daemon answers on it)", path)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


class SocketServer:
    """Serves JSON-lines requests on a listening socket; replies come in order, one per line."""

    def __init__(
        self,
        handle: Handler,
        limits: ServerLimits | None = None,
        *,
        throttled: ThrottledLog | None = None,
    ) -> None:
        self._handle = handle
        self._limits = limits or ServerLimits()
        # Refusals are logged through this: another user or a runaway script can repeat them at will.
        self._throttled = throttled or ThrottledLog(log)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._busy_requests = 0
        self._idle_since = asyncio.get_running_loop().time()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def idle_for(self) -> float:
        """Seconds since the last connection closed, or 0 while any is open."""
        if self._connections:
            return 0.0
        return asyncio.get_running_loop().time() - self._idle_since

    async def start(self, listener: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            # backlog: start_unix_server listens again, by default with 100, which would refuse a burst
            # of shells (tmux restoring panes) while the daemon is busy.
            self._on_connection,
            sock=listener,
            limit=self._limits.max_line_bytes + 1,
            backlog=socket.SOMAXCONN,
        )

    async def close(self, grace_s: float = 2.0) -> None:
        """Stop accepting, give requests in progress `grace_s` to finish, then drop every connection."""
        if self._server is not None:
            self._server.close()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self._busy_requests and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            pass  # shutdown: the connection is simply closed
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the peer went away or stopped reading; nothing to tell it
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections.discard(task)
            if not self._connections:
                self._idle_since = asyncio.get_running_loop().time()
            # Not waited for: the transport closes at the loop's next turn, and waiting would hold this
            # task (and a task of wait_for's) per connection, which a burst of shells pays for.
            writer.close()

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer_pid, peer_uid = wire.peer_credentials(sock)
        if peer_uid != os.getuid():
            self._throttled.warning(
                "refused connections from other users",
                "refused a connection from another user (uid %d, pid %d)",
                peer_uid,
                peer_pid,
            )
            return
        if len(self._connections) > self._limits.max_connections:
            self._throttled.warning(
                "refused connections at the limit",
                "refused a connection: %d connections open",
                len(self._connections) - 1,
            )
            message = f"the daemon has {self._limits.max_connections} connections open; retry shortly"
            await self._send(writer, protocol.error(protocol.BUSY, message))
            return
        buffer = bytearray()
        while True:
            line = await self._read_line(reader, buffer)
            if line is None:
                return
            if len(line) > self._limits.max_line_bytes:
                reply = protocol.error(
                    protocol.TOO_LARGE, f"request exceeds {self._limits.max_line_bytes} bytes"
                )
                await self._send(writer, reply)
                await _discard_input(reader, writer)
                return  # the rest of an oversized line cannot be framed
            self._busy_requests += 1
            try:
                reply = await self._answer(line)
            finally:
                self._busy_requests -= 1
            await self._send(writer, reply)

    async def _read_line(self, reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
        """The next line without its newline; None on EOF or timeout. Over-long lines are returned
        truncated just past the limit, so the caller can refuse them without buffering more."""
        loop = asyncio.get_running_loop()
        line_deadline: float | None = loop.time() + self._limits.line_timeout_s if buffer else None
        while True:
            newline = buffer.find(b"\n")
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                return line
            if len(buffer) > self._limits.max_line_bytes:
                return bytes(buffer)
            if line_deadline is None:
                timeout = self._limits.idle_timeout_s
            else:
                timeout = line_deadline - loop.time()
                if timeout <= 0:
                    return None
            try:
                # Deadline, not wait_for: a line already received is read without another turn or task.
                async with Deadline(timeout):
                    chunk = await reader.read(65536)
            except asyncio.TimeoutError:
                return None
            if not chunk:
                return None
            if not buffer:
                line_deadline = loop.time() + self._limits.line_timeout_s
            buffer += chunk

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = protocol.decode(line)
        except protocol.Refusal as refusal:
            return refusal.reply()
        try:
            return await self._handle(request)
        except Exception:
            # A bug must cost one reply, not the daemon.
            log.exception("request %r failed", request.get("op"))
            reply = protocol.error(protocol.INTERNAL, "internal error; details are in the daemon log")
            if isinstance(request.get("id"), (str, int)):
                reply["id"] = request["id"]
            return reply

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(protocol.encode(reply))
        if writer.transport.get_write_buffer_size():  # nearly always 0: a reply fits the socket buffer
            async with Deadline(self._limits.write_timeout_s):
                await writer.drain()


async def _discard_input(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, linger_s: float = 1.0
) -> None:
    """Close our side for writing and swallow what the peer is still sending, briefly: closing with
    unread input would reset the connection, and the peer could lose the reply it has not read yet."""
    with contextlib.suppress(OSError):
        writer.write_eof()
    deadline = asyncio.get_running_loop().time() + linger_s
    with contextlib.suppress(OSError, asyncio.TimeoutError):
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await asyncio.wait_for(reader.read(65536), remaining):
                return
