"""`async with Deadline(seconds)`: the body is cancelled when the time runs out, which then raises
asyncio.TimeoutError. What asyncio.timeout() does from Python 3.11 on, and what asyncio.wait_for() does
at the price of a task and an extra turn of the loop for each wait: on the paths every request takes
(reading a line, a held session) an await that is ready at once costs nothing but a timer here."""

from __future__ import annotations

import asyncio
from types import TracebackType


class Deadline:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.expired = False

    async def __aenter__(self) -> Deadline:
        self._task = asyncio.current_task()
        assert self._task is not None, "Deadline is used inside a task"
        self._timer = asyncio.get_running_loop().call_later(self._seconds, self._expire)
        return self

    def _expire(self) -> None:
        # The task is either waiting (the awaited future is cancelled) or about to run (it gets the
        # CancelledError at its next step): either way inside the body, before __aexit__ runs.
        self.expired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._timer is not None and self._task is not None
        self._timer.cancel()
        if kind is asyncio.CancelledError and self.expired:
            uncancel = getattr(self._task, "uncancel", None)  # 3.11+: take back our request from its count
            if uncancel is not None and uncancel() > 0:
                return False  # cancelled from elsewhere too (the daemon stopping): that one goes on
            raise asyncio.TimeoutError from None
        return False
