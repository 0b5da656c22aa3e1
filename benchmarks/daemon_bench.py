"""The daemon itself: reply time for a cached session, throughput at 1/10/100 concurrent clients, memory
idle and with 50 sessions, and client start-up, each beside what a daemon-less peer pays for the same.

Peers: without a daemon, "credentials for role X" is an AssumeRole round trip (measured against the same
local STS, which answers far faster than real STS, so the peer's numbers are flattering); the memory peer
is one `aws sts assume-role` / awsume process; start-up peers are `aws` and awsume's Python entry point.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from measure import (
    VENV_BIN,
    BenchWorld,
    LocalAws,
    Row,
    bench_world,
    median,
    peak_rss_of,
    percentile,
    run_checked,
    running_daemon,
    time_call,
)

from stsd.demo.local_aws import EXTERNAL_ID, REGION, ROLE_ARN, ROLE_NAME, USER_NAME

SECTION = "Daemon"
MiB = 1024 * 1024
CREDENTIALS_REQUEST = {"v": 1, "op": "credentials", "profile": ROLE_NAME}


def one_request(path: str, message: dict) -> dict:
    """What a client does: connect, send one line, read one line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _add_profiles(world: BenchWorld, count: int) -> list[str]:
    """`count` extra role profiles, each a distinct role request (its own session name)."""
    names = [f"{ROLE_NAME}-{i:02d}" for i in range(count)]
    with (world.home / ".aws" / "config").open("a") as config:
        for name in names:
            config.write(
                f"\n[profile {name}]\nrole_arn = {ROLE_ARN}\nsource_profile = {USER_NAME}\n"
                f"external_id = {EXTERNAL_ID}\nrole_session_name = {name}\nregion = {REGION}\n"
            )
    return names


def _sts_client(aws: LocalAws):  # type: ignore[no-untyped-def]
    assert aws.alice is not None
    return aws.client("sts", aws.alice.access_key_id, aws.alice.secret_access_key)


def _assume(client) -> None:  # type: ignore[no-untyped-def]
    client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="bench", ExternalId=EXTERNAL_ID)


def _daemon_throughput(socket_path: Path, clients: int, seconds: float) -> float:
    # A separate process drives the load so the measuring side does not share the daemon's CPU accounting.
    out = run_checked(
        [sys.executable, __file__, "--throughput", str(socket_path), str(clients), str(seconds)],
        {"PATH": "/usr/bin:/bin"},
    )
    return float(out)


def _peer_throughput(aws: LocalAws, clients: int, seconds: float) -> float:
    stsclients = [_sts_client(aws) for _ in range(clients)]
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            _assume(stsclients[index])
            done[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - start)


def measure(aws: LocalAws, *, requests: int = 2000, seconds: float = 2.0) -> list[Row]:
    rows: list[Row] = []
    sts = _sts_client(aws)
    with bench_world(aws) as world:
        profiles = _add_profiles(world, 49)  # with alice-sts itself: 50 sessions
        with running_daemon(world) as process:
            path = str(world.socket)
            daemon = psutil.Process(process.pid)
            one_request(path, {"v": 1, "op": "ping"})
            idle_rss = daemon.memory_info().rss

            # Memory with sessions is taken before the load below, whose buffers would count too.
            assert one_request(path, CREDENTIALS_REQUEST)["ok"], "the daemon could not assume the role"
            for name in profiles:
                reply = one_request(path, {"v": 1, "op": "credentials", "profile": name})
                assert reply["ok"], reply
            sessions = len(one_request(path, {"v": 1, "op": "status"})["sessions"])
            busy_rss = daemon.memory_info().rss

            replies = time_call(lambda: one_request(path, CREDENTIALS_REQUEST), requests)
            _assume(sts)
            sts_calls = time_call(lambda: _assume(sts), 200)
            peer = "AssumeRole round trip (local STS)"
            rows.append(
                Row(
                    SECTION,
                    "reply, cached session, median",
                    "ms",
                    median(replies) * 1e3,
                    peer,
                    median(sts_calls) * 1e3,
                )
            )
            rows.append(
                Row(
                    SECTION,
                    "reply, cached session, p99",
                    "ms",
                    percentile(replies, 0.99) * 1e3,
                    peer,
                    percentile(sts_calls, 0.99) * 1e3,
                )
            )

            for clients in (1, 10, 100):
                rows.append(
                    Row(
                        SECTION,
                        f"throughput, {clients} concurrent client{'s' if clients > 1 else ''}",
                        "req/s",
                        _daemon_throughput(world.socket, clients, seconds),
                        "AssumeRole, same concurrency",
                        _peer_throughput(aws, clients, seconds),
                        higher_is_better=True,
                    )
                )

        aws_rss = peak_rss_of(
            [str(VENV_BIN / "aws"), "sts", "assume-role", "--profile", USER_NAME, "--role-arn", ROLE_ARN,
             "--role-session-name", "bench", "--external-id", EXTERNAL_ID],
            world.env,
        )  # fmt: skip
        awsume_rss = peak_rss_of([str(VENV_BIN / "awsumepy"), ROLE_NAME], world.env)
        for label, rss in (("idle", idle_rss), (f"{sessions} sessions", busy_rss)):
            for peer_name, peer_rss in (
                ("one `aws sts assume-role` process", aws_rss),
                ("one awsume process", awsume_rss),
            ):
                rows.append(
                    Row(SECTION, f"daemon memory (RSS), {label}", "MiB", rss / MiB, peer_name, peer_rss / MiB)
                )

    return rows


# -- the load driver, run as its own process -------------------------------------------------------------
async def _drive(path: str, clients: int, seconds: float) -> int:
    line = json.dumps(CREDENTIALS_REQUEST).encode() + b"\n"
    deadline = time.monotonic() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(line)
            await writer.drain()
            reply = await reader.readline()
            writer.close()
            if not json.loads(reply).get("ok"):
                raise RuntimeError(f"daemon refused: {reply[:200]!r}")
            done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def _throughput_main(path: str, clients: str, seconds: str) -> None:
    start = time.monotonic()
    done = asyncio.run(_drive(path, int(clients), float(seconds)))
    print(done / (time.monotonic() - start))


if __name__ == "__main__" and sys.argv[1:2] == ["--throughput"]:
    _throughput_main(*sys.argv[2:5])
elif __name__ == "__main__":
    subprocess.run([sys.executable, str(Path(__file__).with_name("run.py")), "--only", "daemon"], check=False)
