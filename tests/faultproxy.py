"""A local HTTP proxy in front of the local STS that injects faults and counts requests by action.

Tests point a daemon's AWS_ENDPOINT_URL at `FaultProxy.endpoint` and switch `mode` while it runs (with
`tls`, an SSL context holding a certificate, it answers HTTPS and forwards plain HTTP):
pass (forward), down (refuse connections), slow (hold the request beyond client timeouts), hold (keep
each request until the test calls release(): STS answers when the test says, no clock involved),
throttle (400 Throttling XML, 429 or 503), garbage (200 with bytes that are not XML) and
error (a chosen AWS error code, e.g. ExpiredToken). Loopback only; every sleep is interruptible.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass
from typing import Literal

from stub_http import QuietHandler, serve, sts_error_xml

Mode = Literal["pass", "down", "slow", "hold", "throttle", "garbage", "error"]
ThrottleKind = Literal["400", "429", "503"]

_REQUEST_ID = "00000000-0000-0000-0000-faultproxy00"
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

    def __init__(
        self, upstream: str, *, slow_seconds: float = 30.0, tls: ssl.SSLContext | None = None
    ) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.mode: Mode = "pass"
        self.throttle_kind: ThrottleKind = "400"
        self.error_code = "ExpiredToken"
        self.error_status = 403
        self.slow_seconds = slow_seconds
        self.tls = tls
        self.actions: frozenset[str] | None = None
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._released = threading.Event()  # mode "hold": set by release() (and stop())
        self._server = serve(self, _ProxyHandler, tls=tls)

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> FaultProxy:
        self._server.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._released.set()
        self._server.stop()

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
            self._server.stop()  # the port stays this proxy's: start() listens on it again
        elif not self._server.listening:
            self._server.start()

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
    def _record(self, action: str) -> str:
        with self._lock:
            applies = self.actions is None or action in self.actions
            mode = self.mode if applies else "pass"
            self._calls.append(Call(action, time.monotonic(), mode))
            return mode


class _ProxyHandler(QuietHandler):
    owner: FaultProxy  # one request per connection (QuietHandler): `down` then takes effect at once

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        self._handle(self.body())

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
                self.reply(200, _GARBAGE, "text/xml")
            elif mode == "error":
                self._error(self.owner.error_status, self.owner.error_code, "injected by faultproxy")
            else:
                self._forward(body)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass  # the client gave up (e.g. its read timeout during `slow`): nothing to answer

    def _throttle(self) -> None:
        kind = self.owner.throttle_kind
        if kind == "429":
            self._error(429, "TooManyRequestsException", "Too Many Requests")
        elif kind == "503":
            # What a load balancer in front of STS answers: HTML, no AWS error code.
            self.reply(503, b"<html><body><b>Service Unavailable</b></body></html>", "text/html")
        else:
            self._error(400, "Throttling", "Rate exceeded")

    def _forward(self, body: bytes) -> None:
        # Headers go through unchanged (Host included) so the SigV4 signature still matches.
        owner = self.owner
        self.reply(*self.relay(owner.upstream_host, owner.upstream_port, body, dict(self.headers.items())))

    def _error(self, status: int, code: str, message: str) -> None:
        self.reply(status, sts_error_xml(code, message, _REQUEST_ID), "text/xml")


def _action_of(path: str, body: bytes) -> str:
    """The query-protocol Action (STS, IAM) from the form body or the URL; else the method path."""
    for source in (body.decode("latin-1"), urllib.parse.urlsplit(path).query):
        values = urllib.parse.parse_qs(source).get("Action")
        if values:
            return values[0]
    return "other"
