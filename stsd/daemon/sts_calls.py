"""Where STS calls run and with which client: a thread pool of their own, sized for waiting on the
network rather than for CPUs (asyncio's default pool has min(32, CPUs + 4) threads, shared with every
other blocking call), and one botocore STS client per source credentials, region and AWS config profile,
reused while the AWS files and the daemon's environment stay as they were."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stsd.daemon.environment import DAEMON_VARIABLES, HIDDEN

Result = TypeVar("Result")

# STS answers in 10-300 ms; a thread spends that time waiting, not computing. 64 lets a cold start of
# many roles overlap its round trips (a burst beyond that queues here, not in the default pool).
STS_THREADS = 64

# The variables botocore may read when it builds a client (endpoints, CA bundle, proxies, regional
# endpoints, FIPS, data path...): the daemon's own list, less the secrets (credentials are keyed apart).
_CLIENT_VARIABLES = tuple(name for name, _why in DAEMON_VARIABLES if name not in HIDDEN)

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


def client_environment() -> tuple[tuple[str, str | None], ...]:
    """The daemon's variables a client is built from, as they are now."""
    return tuple((name, os.environ.get(name)) for name in _CLIENT_VARIABLES)


@dataclass(frozen=True)
class ClientFor:
    """What one STS client is built for. `profile` is the AWS config profile whose endpoint and CA
    settings (endpoint_url, [services], ca_bundle, sts_regional_endpoints...) botocore applies; None is
    botocore's default profile. `settings` identifies the AWS files and variables it was built under."""

    access_key_id: str
    secret: str = field(repr=False)
    token: str | None = field(repr=False)
    region: str
    profile: str | None
    settings: Hashable


class StsClients:
    """One client per (source credentials, region, profile): building one costs milliseconds under
    botocore's session lock, using one is thread-safe. Keyed on a digest, not the secret itself; bounded,
    the oldest dropped first (a renewed source brings new credentials, hence a new key).

    `settings()` says what else decides how botocore builds a client (the AWS files' stamps, the
    variables it reads): when it changes every client goes, so an edited endpoint_url or ca_bundle is
    used from the next call on, without a restart."""

    def __init__(
        self,
        build: Callable[[ClientFor], Any],
        *,
        settings: Callable[[], Hashable] = client_environment,
        max_clients: int = 64,
    ) -> None:
        self._build = build
        self._settings = settings
        self._max_clients = max_clients
        self._clients: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._built_under: Hashable = None
        self._lock = threading.Lock()

    def client(
        self, access_key_id: str, secret: str, token: str | None, region: str, profile: str | None = None
    ) -> Any:
        digest = hashlib.sha256(f"{secret}\0{token or ''}".encode()).hexdigest()
        settings = self._settings()
        key = (access_key_id, digest, region, profile)
        with self._lock:
            if settings != self._built_under:
                self._clients.clear()  # built for files or variables that are no longer so
                self._built_under = settings
            found = self._clients.get(key)
            if found is not None:
                self._clients.move_to_end(key)
                return found
        built = self._build(ClientFor(access_key_id, secret, token, region, profile, settings))
        with self._lock:
            if settings != self._built_under:
                return built  # the settings changed meanwhile: serve this call, keep nothing stale
            found = self._clients.setdefault(key, built)  # a concurrent first use keeps the first one
            self._clients.move_to_end(key)
            while len(self._clients) > self._max_clients:
                self._clients.popitem(last=False)
            return found
