"""Where STS calls run and with which client: a thread pool of their own, sized for waiting on the
network rather than for CPUs (asyncio's default pool has min(32, CPUs + 4) threads, shared with every
other blocking call), and one botocore STS client per source credentials and region, reused."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

Result = TypeVar("Result")

# STS answers in 10-300 ms; a thread spends that time waiting, not computing. 64 lets a cold start of
# many roles overlap its round trips (a burst beyond that queues here, not in the default pool).
STS_THREADS = 64

_ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def sts_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=STS_THREADS, thread_name_prefix="sts")
        return _pool


def start_sts_pool() -> None:
    """Start every STS thread now, at daemon start-up. The pool would start them one by one on the event
    loop during a cold burst, and starting a thread waits until it runs: with the other STS threads
    holding the GIL that costs milliseconds each, while every waiting request (and its `pending`) is held."""
    pool = sts_pool()
    everyone = threading.Barrier(STS_THREADS + 1)
    for _ in range(STS_THREADS):
        pool.submit(everyone.wait)  # each blocks until all are in: no idle thread, so each submit starts one
    everyone.wait()


async def in_sts_pool(function: Callable[..., Result], *args: Any) -> Result:
    """asyncio.to_thread, on the STS pool (the context goes along, as to_thread does)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, function, *args)
    return await loop.run_in_executor(sts_pool(), call)


class StsClients:
    """One client per (source credentials, region): building one costs milliseconds under botocore's
    session lock, using one is thread-safe. Keyed on a digest, not the secret itself; bounded, the
    oldest dropped first (a renewed source brings new credentials, hence a new key)."""

    def __init__(self, build: Callable[[str, str, str | None, str], Any], *, max_clients: int = 64) -> None:
        self._build = build
        self._max_clients = max_clients
        self._clients: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def client(self, access_key_id: str, secret: str, token: str | None, region: str) -> Any:
        digest = hashlib.sha256(f"{secret}\0{token or ''}".encode()).hexdigest()
        # The endpoint variables botocore reads when it builds a client: a client built for another
        # endpoint is not reused.
        endpoint = tuple(os.environ.get(name) for name in _ENDPOINT_VARIABLES)
        key = (access_key_id, digest, region, endpoint)
        with self._lock:
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
        built = self._build(access_key_id, secret, token, region)
        with self._lock:
            found = self._clients.setdefault(key, built)  # a concurrent first use keeps the first one
            self._clients.move_to_end(key)
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            return found
