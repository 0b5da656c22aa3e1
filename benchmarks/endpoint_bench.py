"""The credentials endpoint beside the Unix socket, against one real `stsd serve`: reply time of one request
per connection (what an SDK's container provider does: a new HTTP connection per fetch; what a client does
on the socket), median and p99, and requests/s with 100 concurrent clients (a separate load process).
Both answer from the same held session; the endpoint also reads /proc/net/tcp for the peer's uid and
re-checks the project file and its trust on every request.

    .venv/bin/python benchmarks/endpoint_bench.py [--requests N] [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_clients import drive_socket
from measure import BenchWorld, LocalAws, Row, bench_world, median, one_request, percentile, running_daemon

SECTION = "Endpoint"
PROJECT = 'profile = "alice-sts"\ncredentials = "endpoint"\n'
PEER = "Unix socket, credentials op"


def _http_once(url: str, token: str) -> None:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request("GET", parts.path, headers={"Authorization": token})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"endpoint refused: {response.status} {body[:200]!r}")
    finally:
        connection.close()


def _socket_once(path: str, request: dict) -> None:
    reply = one_request(path, request)
    if not reply.get("ok"):
        raise RuntimeError(f"daemon refused: {reply}")


async def _drive_http(url: str, token: str, clients: int, seconds: float) -> int:
    parts = urlsplit(url)
    request = (
        f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {token}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    deadline = time.monotonic() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(request)
            await writer.drain()
            reply = await reader.read()
            writer.close()
            if not reply.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"endpoint refused: {reply[:200]!r}")
            done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def _throughput(kind: str, target: str, secret: str, clients: int, seconds: float) -> float:
    """Requests/s from a separate process, so the load generator does not share this one's interpreter.
    The token goes on stdin: a command line is readable by every local user."""
    result = subprocess.run(
        [sys.executable, __file__, "--load", kind, target, str(clients), str(seconds)],
        input=secret, capture_output=True, text=True, timeout=seconds + 120, check=True,
    )  # fmt: skip
    return float(result.stdout.strip())


def measure(aws: LocalAws, *, requests: int = 2000, seconds: float = 2.0, clients: int = 100) -> list[Row]:
    with bench_world(aws) as world:
        # The per-token rate bound would cap the throughput row: lift it, the capacity is what is measured.
        config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("endpoint_requests_per_second = 1000000\n")
        with running_daemon(world):
            return _measure(world, requests, seconds, clients)


def _measure(world: BenchWorld, requests: int, seconds: float, clients: int) -> list[Row]:
    project = world.project("endpoint", PROJECT)
    variables = json.loads(world.stsd("env", "--json", str(project)))
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    request = {"v": 1, "op": "credentials", "dir": str(project)}
    path = str(world.socket)
    http_times: list[float] = []
    socket_times: list[float] = []
    for _ in range(50):  # warm both paths
        _http_once(url, token)
        _socket_once(path, request)
    for _ in range(requests):  # interleaved, so load on the machine falls on both alike
        start = time.perf_counter()
        _http_once(url, token)
        http_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        _socket_once(path, request)
        socket_times.append(time.perf_counter() - start)
    http_rate = _throughput("http", url, token, clients, seconds)
    socket_rate = _throughput("socket", path, json.dumps(request) + "\n", clients, seconds)
    ms = 1e3
    return [
        Row(SECTION, "reply, held session, median", "ms", median(http_times) * ms, PEER, median(socket_times) * ms),
        Row(SECTION, "reply, held session, p99", "ms", percentile(http_times, 0.99) * ms, PEER, percentile(socket_times, 0.99) * ms),
        Row(SECTION, f"throughput, {clients} concurrent clients", "req/s", http_rate, PEER, socket_rate, higher_is_better=True),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with LocalAws() as aws:
        rows = measure(aws, requests=args.requests, seconds=args.seconds)
    print("| metric | endpoint (HTTP) | Unix socket | endpoint / socket |")
    print("|---|---:|---:|---:|")
    for row in rows:
        ratio = (row.stsd or 0) / (row.peer or 1)
        print(f"| {row.metric} | {row.stsd:.2f} {row.unit} | {row.peer:.2f} {row.unit} | {ratio:.2f} |")


if __name__ == "__main__" and sys.argv[1:2] == ["--load"]:
    kind, target, clients, seconds = sys.argv[2:6]
    secret = sys.stdin.read()
    started = time.monotonic()
    if kind == "http":
        count = asyncio.run(_drive_http(target, secret, int(clients), float(seconds)))
    else:
        count = asyncio.run(drive_socket(target, secret.encode(), int(clients), float(seconds)))
    print(count / (time.monotonic() - started))
elif __name__ == "__main__":
    main()
