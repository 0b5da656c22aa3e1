"""Where the daemon reads time: wall clock for deadlines, monotonic for durations, and an awaitable sleep.

Deadlines (renew_at, expiry) are wall-clock datetimes: a monotonic clock stops while the machine is
suspended, so only the wall clock tells a laptop that woke up that its credentials are due. Tests inject
a fake clock (tests/fakes.py) because real time cannot be advanced by an hour.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> datetime:
        """Now, timezone-aware UTC."""
        ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def wall(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class Moment:
    """A wall time and the monotonic time read with it, so that later "now" can be told truthfully even if
    the wall clock was stepped back meanwhile (an NTP correction): never earlier than this moment plus the
    monotonic time elapsed since."""

    __slots__ = ("monotonic", "wall")

    def __init__(self, wall: datetime, monotonic: float) -> None:
        self.wall = wall
        self.monotonic = monotonic

    @classmethod
    def now(cls, clock: Clock) -> Moment:
        return cls(clock.wall(), clock.monotonic())

    def later(self, clock: Clock) -> datetime:
        elapsed = timedelta(seconds=max(0.0, clock.monotonic() - self.monotonic))
        return max(clock.wall(), self.wall + elapsed)


def utc_text(moment: datetime) -> str:
    """YYYY-MM-DDTHH:MM:SSZ: the form every SDK accepts (JS rejects +00:00)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
