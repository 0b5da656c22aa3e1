"""Where the daemon reads time: wall clock for deadlines, monotonic for durations, and an awaitable sleep.

Deadlines (renew_at, expiry) are wall-clock datetimes: a monotonic clock stops while the machine is
suspended, so only the wall clock tells a laptop that woke up that its credentials are due. Tests inject
a fake clock (tests/fakes.py) because real time cannot be advanced by an hour.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
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
