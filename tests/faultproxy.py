"""A local HTTP proxy in front of the local STS that injects faults and counts requests by action.

Tests point a daemon's AWS_ENDPOINT_URL at `FaultProxy.endpoint` and switch `mode` while it runs:
pass (forward), down (refuse connections), slow (hold the request beyond client timeouts), hold (keep
each request until the test calls release(): STS answers when the test says, no clock involved),
throttle (400 Throttling XML, 429 or 503), garbage (200 with bytes that are not XML) and
error (a chosen AWS error code, e.g. ExpiredToken). Loopback only; every sleep is interruptible.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Mode = Literal["pass", "down", "slow", "hold", "throttle", "garbage", "error"]
ThrottleKind = Literal["400", "429", "503"]

_ERROR_XML = (
    '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    "<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>00000000-0000-0000-0000-faultproxy00</RequestId></ErrorResponse>"
)
_GARBAGE = b"\x00\xff<<not xml>>\x89PNG\r\n\x1a\n" + bytes(range(256))


@dataclass(frozen=True)
class Call:
    """One request the proxy received: the STS/IAM action, when (monotonic) and what was done with it."""

    action: str
    at: float
    mode: str


class FaultProxy:
    """A threaded HTTP proxy on 127.0.0.1; `mode` applies to requests whose action is in `actions`
    (every request when `actions` is None)."""

    def __init__(self, upstream: str, *, slow_seconds: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.mode: Mode = "pass"
        self.throttle_kind: ThrottleKind = "400"
        self.error_code = "ExpiredToken"
        self.error_status = 403
        self.slow_seconds = slow_seconds
        self.actions: frozenset[str] | None = None
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()  # mode "hold": set by release() (and stop())
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        self._close_listener()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def set_mode(self, mode: Mode, *, actions: set[str] | None = None, **options: object) -> None:
        """Switch the fault; `down` really stops listening (connection refused), others re-listen."""
        for name, value in options.items():
            if not hasattr(self, name):
                raise AttributeError(f"FaultProxy has no option {name}")
            setattr(self, name, value)
        self.actions = frozenset(actions) if actions is not None else None
        with self._lock:
            self.mode = mode
            if mode == "hold":
                self._released.clear()
        if mode == "down":
            self._close_listener()
        elif self._server is None:
            self._listen()

    def release(self) -> None:
        """Let every request held in mode "hold" (and any later one) go on to STS."""
        self._released.set()

    # -- counting --------------------------------------------------------------------------------------
    def calls(self, action: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if action is None or c.action == action]

    def count(self, action: str | None = None) -> int:
        return len(self.calls(action))

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(c.action for c in self._calls)

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()

    # -- internals -------------------------------------------------------------------------------------
    def _listen(self) -> None:
        proxy = self
        port = self.port

        class Handler(_ProxyHandler):
            owner = proxy

        # Re-listen on the same port after `down`, so the daemon's endpoint stays valid.
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _Server(("127.0.0.1", port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _record(self, action: str) -> str:
        with self._lock:
            applies = self.actions is None or action in self.actions
            mode = self.mode if applies else "pass"
            self._calls.append(Call(action, time.monotonic(), mode))
            return mode


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections in a burst of concurrent STS calls (a cold start of
    # many roles): the client then waits out its connect timeout, a failure of the proxy, not of STS.
    request_queue_size = 128


class _ProxyHandler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.0"  # one request per connection: `down` then takes effect at once

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        action = _action_of(self.path, body)
        mode = self.owner._record(action)
        try:
            if mode == "slow":
                # Hold the request past any sane client timeout; stop() cuts the wait short.
                self.owner._stopping.wait(self.owner.slow_seconds)
                self._forward(body)
            elif mode == "hold":
                self.owner._released.wait()
                self._forward(body)
            elif mode == "throttle":
                self._throttle()
            elif mode == "garbage":
                self._reply(200, _GARBAGE, "text/xml")
            elif mode == "error":
                xml = _ERROR_XML.format(code=self.owner.error_code, message="injected by faultproxy")
                self._reply(self.owner.error_status, xml.encode(), "text/xml")
            else:
                self._forward(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the client gave up (e.g. its read timeout during `slow`): nothing to answer

    def _throttle(self) -> None:
        kind = self.owner.throttle_kind
        if kind == "429":
            xml = _ERROR_XML.format(code="TooManyRequestsException", message="Too Many Requests")
            self._reply(429, xml.encode(), "text/xml")
        elif kind == "503":
            # What a load balancer in front of STS answers: HTML, no AWS error code.
            self._reply(503, b"<html><body><b>Service Unavailable</b></body></html>", "text/html")
        else:
            xml = _ERROR_XML.format(code="Throttling", message="Rate exceeded")
            self._reply(400, xml.encode(), "text/xml")

    def _forward(self, body: bytes) -> None:
        upstream = http.client.HTTPConnection(self.owner.upstream_host, self.owner.upstream_port, timeout=30)
        try:
            # Headers go through unchanged (Host included) so the SigV4 signature still matches.
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            reply = upstream.getresponse()
            data = reply.read()
            content_type = reply.getheader("Content-Type") or "text/xml"
            self._reply(reply.status, data, content_type)
        finally:
            upstream.close()

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


def _action_of(path: str, body: bytes) -> str:
    """The query-protocol Action (STS, IAM) from the form body or the URL; else the method path."""
    for source in (body.decode("latin-1"), urllib.parse.urlsplit(path).query):
        values = urllib.parse.parse_qs(source).get("Action")
        if values:
            return values[0]
    return "other"
