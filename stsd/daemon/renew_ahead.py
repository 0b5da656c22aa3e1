"""RenewAheadSource: holds the temporary credentials of a provider that fetches anew on every call (an SSO
profile's role credentials, a credential_process) and asks it again only when they are due, so every
role and project of that source shares one fetch per renewal."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stsd.daemon.clock import Clock, Moment, utc_text
from stsd.daemon.config import DaemonConfig
from stsd.daemon.sources import SourceCredentials, SourceProvider, SourceStatus

log = logging.getLogger(__name__)

# A source's own credentials are renewed this much earlier than the sessions built on them (or serving
# them) would renew themselves, so that their renewal finds new ones.
LEAD_MARGIN = timedelta(seconds=60)


def source_lead(config: DaemonConfig, lifetime: timedelta) -> timedelta:
    """How long before its expiry a source's renewable credentials are fetched again: LEAD_MARGIN before
    the sessions built on them renew (SessionManager._schedule: at the latest renew_before + jitter ahead,
    at most half their life)."""
    lead = timedelta(
        seconds=max(config.renew_before_seconds + config.renew_jitter_seconds, config.min_remaining_seconds)
    )
    return min(min(lead, lifetime / 2) + LEAD_MARGIN, lifetime)


@dataclass(frozen=True)
class _Held:
    credentials: SourceCredentials
    started: Moment  # when the fetch was asked for


class RenewAheadSource:
    """A SourceProvider over one that fetches on every call; credentials without an expiry are not held."""

    def __init__(self, inner: SourceProvider, *, config: DaemonConfig, clock: Clock) -> None:
        self.spec = inner.spec
        self.inner = inner
        self._config = config
        self._clock = clock
        self._fetch_lock = threading.Lock()  # one fetch at a time: concurrent askers share it
        self._lock = threading.Lock()
        self._held: _Held | None = None

    def generation(self) -> int:
        return self.inner.generation()

    def credentials(self) -> SourceCredentials:
        with self._fetch_lock:
            with self._lock:
                held = self._held
            if held is not None and not self._due(held):
                return replace(held.credentials, renews_at=self._renews_at(held))
            started = Moment.now(self._clock)
            credentials = self.inner.credentials()  # raises SourceError; the old ones stay held
            if credentials.expiration is None:
                with self._lock:
                    self._held = None
                return credentials
            held = _Held(credentials, started)
            with self._lock:
                self._held = held
            log.info("source %s: credentials held until %s", self.spec.name, utc_text(credentials.expiration))
            return replace(credentials, renews_at=self._renews_at(held))

    def status(self) -> SourceStatus:
        status = self.inner.status()
        with self._lock:
            held = self._held
        expires = held.credentials.expiration if held is not None else None
        return replace(status, expires_at=expires)

    def _renews_at(self, held: _Held) -> datetime:
        """When the held credentials are due (on the wall clock): asked before then, they are given again."""
        expires = held.credentials.deadline or held.credentials.expiration
        assert expires is not None
        return expires - source_lead(self._config, expires - held.started.wall)

    def _due(self, held: _Held) -> bool:
        return held.started.later(self._clock) >= self._renews_at(held)
