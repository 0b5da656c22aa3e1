"""What the test stand-ins for AWS services (tests/mfa_stub.py, sso_stub.py, faultproxy.py, imds_stub.py) share:
a threaded HTTP server on 127.0.0.1 run in a thread, a quiet handler that answers one request per
connection, relaying a request to the local STS unchanged, and STS's error XML."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

STS_XMLNS = "https://sts.amazonaws.com/doc/2011-06-15/"
_STS_ERROR_XML = (
    f'<ErrorResponse xmlns="{STS_XMLNS}"><Error><Type>Sender</Type><Code>{{code}}</Code>'
    "<Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
)


def sts_error_xml(code: str, message: str, request_id: str) -> bytes:
    """An STS (query protocol) error body, as botocore parses it into ClientError."""
    return _STS_ERROR_XML.format(code=code, message=message, request_id=request_id).encode()


class _Server(ThreadingHTTPServer):
    # The default backlog (5) drops connections in a burst of concurrent STS calls (a cold start of
    # many roles): the client then waits out its connect timeout, a failure of the stub, not of STS.
    request_queue_size = 128
    daemon_threads = True


class LocalServer:
    """A ThreadingHTTPServer on 127.0.0.1 serving `handler` from a daemon thread; `port` 0 picks one."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls  # a context holding a certificate: answer HTTPS
        self.port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None

    def start(self) -> LocalServer:
        """Listen (again on the same port after stop(), so an endpoint handed out stays valid)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), self.handler)
                break
            except OSError:  # the old listener's port is not free again yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if self.tls is not None:
            # The handshake runs in accept(); one a client refuses (an untrusted certificate) is an
            # OSError there, which the server loop drops.
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    owner: Any, handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> LocalServer:
    """A LocalServer (not started) whose handler class sees `owner` as `self.owner`."""
    return LocalServer(type(handler.__name__, (handler,), {"owner": owner}), tls)


class QuietHandler(BaseHTTPRequestHandler):
    """Logs nothing, and closes the connection after each reply (a stopped stub then stops at once)."""

    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def reply(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def relay(self, host: str, port: int, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        """Send this request to host:port with `headers` (Host included, so a SigV4 signature still
        matches); its status, body and content type."""
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() != "connection"}
            upstream.request(self.command, self.path, body=body or None, headers=sent)
            answer = upstream.getresponse()
            return answer.status, answer.read(), answer.getheader("Content-Type") or "text/xml"
        finally:
            upstream.close()
