"""The credentials endpoint: a loopback HTTP server in the daemon's loop that answers the AWS SDKs'
container credentials provider (AWS_CONTAINER_CREDENTIALS_FULL_URI) with the daemon's current session, so
a long-running process picks up renewals by itself.

As private as the Unix socket: loopback only; a 256-bit token per trusted project file, compared in
constant time; the connecting socket's owner looked up in /proc/net/tcp{,6} (any uid but ours is refused,
even with the right token); Host must be the bound address (DNS rebinding); a request with an Origin header
(a browser) is refused; head size, connections and each token's request rate are bounded."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stsd import paths, protocol
from stsd.daemon.throttled_log import ThrottledLog

log = logging.getLogger("stsd.endpoint")

PATH = "/credentials"
LOOPBACK = "127.0.0.1"
TOKEN_BYTES = 32  # 256 bits
MAX_HEAD_BYTES = 8 * 1024  # an SDK's GET is a few hundred bytes
HEAD_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 512
# Per token: a burst of twice the rate (at least RATE_BURST: 200 concurrent processes starting at once),
# then the rate (config.toml: endpoint_requests_per_second). botocore fetches on every call while less
# than 15 min is left (short sessions), so a busy loop is normal; the bound keeps one runaway process
# from starving every other shell and SDK of the daemon.
RATE_BURST = 400.0
RATE_PER_S = 200.0
MAX_REVOKED = 1024  # revoked tokens whose reason is remembered
# A daemon started again within this long of the last one's exit serves that one's tokens on its port:
# processes started before a brief restart (systemctl restart, an upgrade, a crash) keep working.
RESTART_GRACE_S = 300.0
# The HTTP status of each refusal's code, so SDKs show the message as what it is; any other code: 500.
HTTP_STATUS = {
    protocol.BAD_REQUEST: 400,
    protocol.BAD_HOST: 400,
    protocol.UNAUTHORIZED: 401,
    protocol.FORBIDDEN_USER: 403,
    protocol.BROWSER_REFUSED: 403,
    protocol.UNTRUSTED: 403,
    protocol.DENIED: 403,
    protocol.INVALID_PROJECT: 403,
    protocol.UNKNOWN_PROFILE: 403,
    protocol.NOT_FOUND: 404,
    protocol.METHOD_NOT_ALLOWED: 405,
    protocol.TOO_LARGE: 413,
    protocol.RATE_LIMITED: 429,
    protocol.SOURCE_ERROR: 502,
    protocol.STS_DENIED: 502,
    protocol.STS_UNAVAILABLE: 503,
    protocol.BUSY: 503,
    protocol.TIMEOUT: 504,
}

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Grant:
    """A token bound to one project file with exactly the content that was trusted when it was issued."""

    project_path: Path
    content_digest: bytes
    token: str
    token_file: Path | None = None
    tokens: float = -1.0  # the token bucket of the rate limit; < 0: full
    refilled_at: float = field(default_factory=time.monotonic)

    def take(self, now: float, rate: float) -> bool:
        burst = max(RATE_BURST, 2 * rate)
        if self.tokens < 0:
            self.tokens = burst
        self.tokens = min(burst, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def content_digest(content: bytes) -> bytes:
    return hashlib.sha256(content).digest()


class Grants:
    """The live tokens, looked up by the SHA-256 of the token (a lookup reveals nothing about the token),
    then compared in constant time."""

    def __init__(self, token_dir: Path | None = None, state_file: Path | None = None) -> None:
        self._state_file = state_file
        self.port: int | None = None  # the port the saved state names (and then the endpoint's)
        self._by_digest: dict[bytes, Grant] = {}
        self._by_file: dict[tuple[Path, bytes], Grant] = {}
        # Why a token was revoked, so every later request with it is told, not only the first: SDKs
        # retry, and the last answer is the one a user sees. Bounded: oldest forgotten first.
        self._revoked: dict[bytes, protocol.Refusal] = {}
        self._token_dir = token_dir

    def __len__(self) -> int:
        return len(self._by_digest)

    def issue(self, project_path: Path, content: bytes, *, with_file: bool = False) -> Grant:
        """The token for this file and content: the same one for every shell of the project. A token for
        an older content of the same file is revoked (the file was edited and trusted again)."""
        digest = content_digest(content)
        grant = self._by_file.get((project_path, digest))
        if grant is None:
            self.revoke(
                project_path,
                protocol.Refusal(
                    protocol.UNTRUSTED,
                    f"{project_path} changed since this process got its token; start the process again from a shell in the project",
                ),
            )
            grant = Grant(project_path, digest, secrets.token_urlsafe(TOKEN_BYTES))
            self._by_digest[_key(grant.token)] = grant
            self._by_file[(project_path, digest)] = grant
            self.save()
        if with_file and grant.token_file is None:
            grant.token_file = self._write_token_file(grant.token)
            self.save()
        return grant

    def find(self, presented: str) -> Grant | None:
        grant = self._by_digest.get(_key(presented))
        if grant is None or not hmac.compare_digest(grant.token.encode(), presented.encode()):
            return None
        return grant

    def revocation(self, presented: str) -> protocol.Refusal | None:
        """Why a token was revoked while this daemon runs, or None."""
        return self._revoked.get(_key(presented))

    def revoke(self, project_path: Path, reason: protocol.Refusal | None = None) -> None:
        dropped = [grant for key, grant in self._by_file.items() if key[0] == project_path]
        for grant in dropped:
            self._drop(grant, reason)
        if dropped:
            self.save()

    def revoke_grant(self, grant: Grant, reason: protocol.Refusal | None = None) -> None:
        self._drop(grant, reason)
        self.save()

    def revoke_all(self) -> None:
        for grant in list(self._by_file.values()):
            self._drop(grant)
        self.save()

    # -- kept across a brief restart -------------------------------------------------------------------

    def save(self) -> None:
        """Write the port and live tokens to the private runtime directory (0600, replaced atomically), so
        a daemon restarted within RESTART_GRACE_S serves the processes started before it; `stsd stop`
        removes the file (forget_saved_state), which revokes them for good."""
        if self._state_file is None:
            return
        document = {
            "saved_at": time.time(),
            "port": self.port,
            "grants": [
                {
                    "path": str(grant.project_path),
                    "digest": grant.content_digest.hex(),
                    "token": grant.token,
                    "token_file": str(grant.token_file) if grant.token_file else None,
                }
                for grant in self._by_file.values()
            ],
        }
        try:
            paths.ensure_private_dir(str(self._state_file.parent))
            temporary = self._state_file.with_name(self._state_file.name + ".new")
            descriptor = paths.open_private_file(str(temporary), os.O_TRUNC)
            try:
                os.write(descriptor, json.dumps(document).encode())
            finally:
                os.close(descriptor)
            os.replace(temporary, self._state_file)
        except (OSError, paths.UnsafeDirectoryError) as error:
            log.warning("cannot keep the endpoint's tokens for a restart: %s", error)

    def restore(self, now: float) -> None:
        """Take over the tokens a daemon that stopped less than RESTART_GRACE_S ago left; older ones are
        removed (a restart that long is not brief: shells ask again at their next prompt anyway)."""
        if self._state_file is None:
            return
        try:
            paths.check_private_dir(str(self._state_file.parent))
            with open(self._state_file, encoding="utf-8") as file:
                if os.fstat(file.fileno()).st_uid != os.getuid():
                    return
                document = json.load(file)
            fresh = now - float(document["saved_at"]) < RESTART_GRACE_S
            records = list(document["grants"])
            port = int(document["port"] or 0)
        except (OSError, ValueError, KeyError, TypeError, paths.UnsafeDirectoryError):
            return
        if not fresh:
            forget_saved_state(self._state_file)
            return
        for record in records:
            try:
                token_file = Path(record["token_file"]) if record.get("token_file") else None
                grant = Grant(
                    Path(record["path"]), bytes.fromhex(record["digest"]), str(record["token"]), token_file
                )
            except (KeyError, TypeError, ValueError):
                continue
            self._by_digest[_key(grant.token)] = grant
            self._by_file[(grant.project_path, grant.content_digest)] = grant
        self.port = port or None
        log.info("kept %d endpoint token(s) from the daemon that stopped just before", len(records))

    def _drop(self, grant: Grant, reason: protocol.Refusal | None = None) -> None:
        if reason is not None:
            if len(self._revoked) >= MAX_REVOKED:
                del self._revoked[next(iter(self._revoked))]
            self._revoked[_key(grant.token)] = reason
        self._by_digest.pop(_key(grant.token), None)
        self._by_file.pop((grant.project_path, grant.content_digest), None)
        if grant.token_file is not None:
            with contextlib.suppress(FileNotFoundError):
                grant.token_file.unlink()
        log.info("revoked the endpoint token of %s", grant.project_path)

    def _write_token_file(self, token: str) -> Path:
        """A 0600 file holding the token and nothing else (no newline: botocore sends the file verbatim)."""
        directory = self._token_dir or Path(paths.endpoint_tokens_dir())
        paths.ensure_private_dir(str(directory.parent))
        paths.ensure_private_dir(str(directory))
        path = directory / f"{secrets.token_hex(8)}.token"
        descriptor = paths.open_private_file(str(path), os.O_TRUNC)
        try:
            os.write(descriptor, token.encode())
        finally:
            os.close(descriptor)
        return path


def forget_saved_state(state_file: Path | None = None) -> None:
    """Remove the saved tokens and their files (`stsd stop`): revoked for good, even for a later daemon."""
    state_file = state_file or Path(paths.endpoint_state_file())
    with contextlib.suppress(OSError, ValueError), open(state_file, encoding="utf-8") as file:
        for record in json.load(file).get("grants", []):
            if record.get("token_file"):
                with contextlib.suppress(OSError):
                    os.unlink(record["token_file"])
    with contextlib.suppress(FileNotFoundError):
        state_file.unlink()


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode(errors="surrogateescape")).digest()


# What the endpoint asks its owner (the Service) for a grant: the SDK's JSON, or protocol.Refusal.
CredentialsFor = Callable[[Grant], Awaitable[dict[str, Any]]]


class CredentialsEndpoint:
    """The HTTP server; started on first use (no port is open for users who never choose endpoint mode)."""

    def __init__(
        self,
        credentials_for: CredentialsFor,
        grants: Grants,
        *,
        port: int = 0,
        rate_per_s: float = RATE_PER_S,
        throttled: ThrottledLog | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self._credentials_for = credentials_for
        self.grants = grants
        self._port = port
        self._rate = rate_per_s
        self._throttled = throttled or ThrottledLog(log)
        self._max_connections = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._start_lock: asyncio.Lock | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None
        self.requests_served = 0

    @property
    def url(self) -> str | None:
        if self.address is None:
            return None
        return f"http://{self.address[0]}:{self.address[1]}{PATH}"

    async def ensure_started(self) -> str:
        """The endpoint's URL, listening from now on."""
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._server is None:
                port = self._port or self.grants.port or 0
                try:
                    self._server = await self._listen(port)
                except OSError as error:
                    if self._port or not port:
                        raise
                    # The last daemon's port is taken now: a new one, and its processes' tokens are void.
                    log.warning(
                        "cannot listen on port %d again (%s); new port, new tokens", port, error.strerror
                    )
                    self.grants.revoke_all()
                    self._server = await self._listen(0)
                sockname = self._server.sockets[0].getsockname()
                self.address = (sockname[0], sockname[1])
                self.grants.port = self.address[1]
                self.grants.save()
                log.info("credentials endpoint listening on %s", self.url)
        assert self.url is not None
        return self.url

    async def _listen(self, port: int) -> asyncio.AbstractServer:
        return await asyncio.start_server(
            self._on_connection, LOOPBACK, port, backlog=socket.SOMAXCONN, limit=MAX_HEAD_BYTES
        )

    async def resume(self) -> None:
        """Serve at once when the last daemon left tokens (a brief restart): its processes are waiting."""
        if len(self.grants):
            await self.ensure_started()

    async def close(self) -> None:
        """Stop serving. The tokens stay saved for a brief restart; `stsd stop` removes them for good."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.gather(*self._connections, return_exceptions=True)
        self.grants.save()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            status, body = await self._answer(reader, writer)
            await _send(writer, status, body)
        except (ConnectionError, asyncio.TimeoutError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("endpoint request failed")
            with contextlib.suppress(Exception):
                await _send(
                    writer, 500, _error(protocol.INTERNAL, "internal error; details are in the daemon log")
                )
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
        try:
            if len(self._connections) > self._max_connections:
                raise protocol.Refusal(
                    protocol.BUSY,
                    f"the stsd endpoint has {self._max_connections} connections open; retry shortly",
                )
            self._check_peer(writer)
            method, target, headers = await _read_head(reader)
            self._check_request(method, target, headers)
            grant = self._check_token(headers)
            self.requests_served += 1
            return 200, json.dumps(await self._credentials_for(grant)).encode()
        except protocol.Refusal as refusal:
            return HTTP_STATUS.get(refusal.code, 500), _error(refusal.code, refusal.message)

    def _check_peer(self, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        local = writer.get_extra_info("sockname")
        uid = peer_uid(peer, local)
        if uid != os.getuid():
            self._throttled.warning(
                "endpoint: refused other users",
                "endpoint: refused a connection from %s",
                "an unknown owner" if uid is None else f"uid {uid}",
            )
            raise protocol.Refusal(
                protocol.FORBIDDEN_USER, "the stsd endpoint serves only the user who runs the daemon"
            )

    def _check_request(self, method: str, target: str, headers: dict[str, str]) -> None:
        if "origin" in headers:
            # A web page's fetch() carries Origin; no SDK sends one. No CORS either: browsers never get an answer.
            self._throttled.warning(
                "endpoint: refused browsers", "endpoint: refused a request with an Origin"
            )
            raise protocol.Refusal(protocol.BROWSER_REFUSED, "the stsd endpoint does not answer browsers")
        assert self.address is not None
        if headers.get("host", "") != f"{self.address[0]}:{self.address[1]}":
            # A name that resolves to 127.0.0.1 (DNS rebinding) reaches this port with another Host.
            raise protocol.Refusal(
                protocol.BAD_HOST,
                f"Host must be {self.address[0]}:{self.address[1]}; use the URL stsd exported",
            )
        if method != "GET":
            raise protocol.Refusal(protocol.METHOD_NOT_ALLOWED, "the stsd endpoint answers GET only")
        if target.split("?", 1)[0] != PATH:
            raise protocol.Refusal(protocol.NOT_FOUND, f"no such path; the credentials are at {PATH}")

    def _check_token(self, headers: dict[str, str]) -> Grant:
        presented = headers.get("authorization", "")
        if presented.lower().startswith("bearer "):
            presented = presented[7:]
        grant = self.grants.find(presented) if presented else None
        revoked = self.grants.revocation(presented) if grant is None and presented else None
        if revoked is not None:  # a new instance: raising the stored one again would grow its traceback
            raise protocol.Refusal(revoked.code, revoked.message, **revoked.fields)
        if grant is None:
            self._throttled.info("endpoint: refused tokens", "endpoint: refused a missing or unknown token")
            raise protocol.Refusal(
                protocol.UNAUTHORIZED,
                "missing or revoked stsd token (the daemon restarted, or the project file changed); "
                "start the process again from a shell in the project",
            )
        if not grant.take(time.monotonic(), self._rate):
            raise protocol.Refusal(
                protocol.RATE_LIMITED,
                f"more than {self._rate:.0f} requests/s with this project's token; slow down "
                "(or raise endpoint_requests_per_second in stsd's config.toml)",
            )
        return grant


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str]]:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
    except asyncio.LimitOverrunError:
        raise protocol.Refusal(protocol.TOO_LARGE, f"request head over {MAX_HEAD_BYTES} bytes") from None
    except asyncio.IncompleteReadError:
        raise ConnectionResetError from None
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise protocol.Refusal(protocol.BAD_REQUEST, "not an HTTP/1.1 request line") from None
    if not version.startswith("HTTP/1."):
        raise protocol.Refusal(protocol.BAD_REQUEST, "HTTP/1.x only")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise protocol.Refusal(protocol.BAD_REQUEST, "malformed header line")
        name = name.strip().lower()
        if name in headers:  # two Host or Authorization headers: which one a proxy saw is unknowable
            raise protocol.Refusal(protocol.BAD_REQUEST, f"duplicate {name} header")
        headers[name] = value.strip()
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > 0 or "transfer-encoding" in headers:
        raise protocol.Refusal(protocol.TOO_LARGE, "the stsd endpoint takes no request body")
    return method, target, headers


async def _send(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT_S)


def _error(code: str, message: str) -> bytes:
    # `Code` and `Message` as the ECS endpoint words them, `code`/`message` as stsd's protocol does.
    return json.dumps({"code": code, "message": message, "Code": code, "Message": message}).encode()


# -- who is on the other end of a loopback TCP connection ----------------------------------------------


def peer_uid(peer: Any, local: Any, proc: str = "/proc/net") -> int | None:
    """The uid owning the socket at `peer` that is connected to our `local` address; None when the kernel
    lists no such socket (gone already, or another network namespace). Asked of the kernel's socket
    diagnostics for exactly that connection (netlink sock_diag: microseconds), else read from its table
    of TCP sockets, /proc/net/tcp and tcp6 (milliseconds: the kernel writes out every socket)."""
    if not isinstance(peer, tuple) or not isinstance(local, tuple):
        return None
    try:
        return _diag_uid(peer, local)
    except OSError:  # no AF_NETLINK (a sandbox's RestrictAddressFamilies), no inet_diag module
        return _proc_uid(peer, local, proc)


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF


def _diag_uid(peer: tuple[Any, ...], local: tuple[Any, ...]) -> int | None:
    """One exact sock_diag lookup of the peer's socket (its 4-tuple): (uid, inode) from the kernel."""
    family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET

    def address(host: str) -> bytes:
        return socket.inet_pton(family, host.split("%", 1)[0]).ljust(16, b"\0")

    socket_id = (
        struct.pack("!HH", peer[1], local[1])
        + address(peer[0])
        + address(local[0])
        + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE)
    )
    request = struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF) + socket_id
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as netlink:
        netlink.settimeout(1.0)
        netlink.send(header + request)
        reply = netlink.recv(65536)
    if len(reply) < 16:
        raise OSError("short sock_diag reply")
    if struct.unpack_from("=H", reply, 4)[0] == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, 16)
        if -error == errno.ENOENT:
            return None  # no such connection
        raise OSError(-error, os.strerror(-error))
    if len(reply) < 16 + 72:
        raise OSError("short sock_diag reply")
    # struct inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue, uid, inode
    uid, inode = struct.unpack_from("=II", reply, 16 + 64)
    return uid if inode else None  # inode 0: a socket no process holds any more


def _proc_uid(peer: tuple[Any, ...], local: tuple[Any, ...], proc: str) -> int | None:
    wanted = (_proc_address(peer[0], peer[1]), _proc_address(local[0], local[1]))
    needles = [f" {source} {destination} " for source, destination in _variants(wanted)]
    for table in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, table), encoding="ascii") as file:
                text = file.read()
        except FileNotFoundError:
            continue
        for needle in needles:
            # A substring search over the whole table: thousands of lines (TIME_WAIT after a burst) cost
            # microseconds this way, where splitting each line cost milliseconds.
            at = text.find(needle)
            if at < 0:
                continue
            line_end = text.find("\n", at)
            fields = text[text.rfind("\n", 0, at) + 1 : line_end if line_end >= 0 else None].split()
            # sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
            if len(fields) > 9 and fields[9] != "0":  # inode 0: a socket no process holds any more
                return int(fields[7])
    return None


def _proc_address(host: str, port: int) -> str:
    """An address as /proc/net/tcp{,6} writes it: the address's 32-bit words in host byte order, hex."""
    address = ipaddress.ip_address(host.split("%", 1)[0])
    packed = address.packed
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def _variants(wanted: tuple[str, str]) -> set[tuple[str, str]]:
    """The pair as an IPv4 socket lists it and as an IPv6 socket with IPv4-mapped addresses does."""
    variants = {wanted}
    if len(wanted[0].split(":")[0]) == 8:
        mapped = tuple(_proc_mapped(item) for item in wanted)
        variants.add((mapped[0], mapped[1]))
    return variants


def _proc_mapped(item: str) -> str:
    address, port = item.split(":")
    ipv4 = struct.pack("=I", int(address, 16))
    packed = b"\x00" * 10 + b"\xff\xff" + ipv4
    words = struct.unpack("=4I", packed)
    return "".join(f"{word:08X}" for word in words) + f":{port}"
