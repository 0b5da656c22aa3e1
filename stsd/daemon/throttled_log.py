"""ThrottledLog: a kind of event that anyone can repeat at will (a refused connection, a refused request)
is logged once per interval; the repeats are counted and summed up in one line, so a flood cannot fill
the log or bury what matters in it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

LOG_INTERVAL_S = 60.0  # at most one line per kind of event, plus one summary line, per interval


@dataclass
class _Window:
    started: float  # monotonic time of the event that was logged
    level: int
    repeats: int = 0


class ThrottledLog:
    """Logs the first event of a kind, then at most one per `interval_s`; the rest are counted and reported
    as "<kind>: N more ..." when the interval is over (flush) or the next event of that kind is logged.

    `kind` is a fixed phrase from the code (never request data), so the set of kinds stays small."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = LOG_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._windows: dict[str, _Window] = {}

    @property
    def interval_s(self) -> float:
        return self._interval_s

    def log(self, level: int, kind: str, message: str, *args: object) -> None:
        """Log `message % args` unless an event of `kind` was logged less than an interval ago."""
        if not self._logger.isEnabledFor(level):
            return
        now = self._monotonic()
        window = self._windows.get(kind)
        if window is not None and now - window.started < self._interval_s:
            window.repeats += 1
            window.level = max(window.level, level)
            return
        if window is not None:
            self._summarize(kind, window)
        self._windows[kind] = _Window(started=now, level=level)
        self._logger.log(level, message, *args)

    def warning(self, kind: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, kind, message, *args)

    def info(self, kind: str, message: str, *args: object) -> None:
        self.log(logging.INFO, kind, message, *args)

    def flush(self, *, everything: bool = False) -> None:
        """Write the summary of every interval that is over (all of them with `everything`, at shutdown)."""
        now = self._monotonic()
        for kind, window in list(self._windows.items()):
            if everything or now - window.started >= self._interval_s:
                self._summarize(kind, window)
                del self._windows[kind]

    def _summarize(self, kind: str, window: _Window) -> None:
        if window.repeats:
            self._logger.log(
                window.level,
                "%s: %d more not logged one by one (at most one line per %.0f s)",
                kind,
                window.repeats,
                self._interval_s,
            )
