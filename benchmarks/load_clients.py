"""The daemon benchmark's helper processes, each its own interpreter so that the measuring side does not
share the CPU accounting: a load driver (requests/s), the cold round's clients (all at once) and the
floor, a minimal asyncio echo server on a Unix socket. Standard library only."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time


async def drive_socket(path: str, line: bytes, clients: int, seconds: float) -> int:
    """`clients` concurrent clients sending `line` on a new connection each, for `seconds`: replies."""
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
    line = json.dumps({"v": 1, "op": "credentials", "profile": "alice-sts"}).encode() + b"\n"
    done = asyncio.run(drive_socket(path, line, int(clients), float(seconds)))
    print(done / (time.monotonic() - start))


async def _cold(path: str, clients: int, profiles: list[str]) -> dict:
    """All clients connect at once; each one's latency from its connect to its reply."""
    latencies: list[float] = []
    failed = 0
    start_line = asyncio.Event()

    async def client(index: int) -> None:
        nonlocal failed
        await start_line.wait()
        started = time.perf_counter()
        try:
            reader, writer = await asyncio.open_unix_connection(path)
            request = {"v": 1, "op": "credentials", "profile": profiles[index % len(profiles)]}
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            reply = json.loads(await asyncio.wait_for(reader.readline(), 120))
            writer.close()
            if not reply.get("ok"):
                failed += 1
        except (OSError, asyncio.TimeoutError, ValueError):
            failed += 1
        latencies.append(time.perf_counter() - started)

    tasks = [asyncio.ensure_future(client(i)) for i in range(clients)]
    await asyncio.sleep(0.1)
    start_line.set()
    await asyncio.gather(*tasks)
    return {"latencies": latencies, "failed": failed}


def _cold_main(path: str, clients: str, *profiles: str) -> None:
    print(json.dumps(asyncio.run(_cold(path, int(clients), list(profiles)))))


def _echo_main(path: str) -> None:
    async def serve() -> None:
        async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(one, path=path, backlog=socket.SOMAXCONN)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__" and sys.argv[1:2] == ["--throughput"]:
    _throughput_main(*sys.argv[2:5])
elif __name__ == "__main__" and sys.argv[1:2] == ["--cold"]:
    _cold_main(sys.argv[2], sys.argv[3], *sys.argv[4:])
elif __name__ == "__main__" and sys.argv[1:2] == ["--echo"]:
    _echo_main(sys.argv[2])
