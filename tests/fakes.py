"""Test-only stand-ins for what cannot run for real here: a clock that can be moved by hours (FakeClock),
and a patch closing a known gap of moto (a missing ExternalId passes a trust condition)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone


class FakeClock:
    """Implements stsd.daemon.clock.Clock; time moves only when a test says so.

    It starts at the real current time because the local STS (moto) stamps expirations with real time.
    `advance` moves wall and monotonic time together (the machine ran); `jump` moves only the wall clock
    (the machine was suspended: monotonic clocks, and so asyncio's timers, stand still meanwhile).
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._wall = start or datetime.now(timezone.utc)
        self._monotonic = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def wall(self) -> datetime:
        return self._wall

    def monotonic(self) -> float:
        return self._monotonic

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        """A sleep whose deadline is fixed when it is asked for, not when the task awaiting it first runs:
        else an `advance` in between (the test running before the renewal loop's sleeper task got a turn)
        would be missed, and the sleep would end only after a further `advance`."""
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if seconds <= 0:
            waker.set_result(None)
            return waker
        entry = (self._monotonic + seconds, waker)
        self._sleepers.append(entry)

        def forget(_: asyncio.Future[None]) -> None:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

        waker.add_done_callback(forget)
        return waker

    def advance(self, seconds: float) -> None:
        self._wall += timedelta(seconds=seconds)
        self._monotonic += seconds
        for deadline, waker in list(self._sleepers):
            if deadline <= self._monotonic and not waker.done():
                waker.set_result(None)

    def jump(self, seconds: float) -> None:
        self._wall += timedelta(seconds=seconds)

    @property
    def sleeping(self) -> int:
        """How many sleeps are pending (a loop waiting on this clock)."""
        return sum(1 for _, waker in self._sleepers if not waker.done())


@contextmanager
def external_id_required() -> Iterator[None]:
    """Make the in-process moto server deny AssumeRole when a trust policy's condition key is absent.

    moto evaluates `StringEquals {"sts:ExternalId": ...}` only against keys the request carries, so a
    request without ExternalId passes (a known moto gap). Real STS denies it. The moto server
    runs in this test process (ThreadedMotoServer), so patching its condition check takes effect there.
    """
    from moto.iam import policy_conditions

    original = policy_conditions.TrustCondition.verify_condition

    def verify_condition(self: policy_conditions.TrustCondition, actual_values: list[str]) -> bool:
        if len(actual_values) < len(self.context_keys):
            return False  # a key the condition names is missing from the request
        return original(self, actual_values)

    policy_conditions.TrustCondition.verify_condition = verify_condition  # type: ignore[method-assign]
    try:
        yield
    finally:
        policy_conditions.TrustCondition.verify_condition = original  # type: ignore[method-assign]
