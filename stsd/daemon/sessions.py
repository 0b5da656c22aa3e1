"""SessionManager: one session per distinct RoleRequest (a role assumed from a source, or a source's own
GetSessionToken session), fetched once for every concurrent caller, renewed ahead of expiry in the
background, backed off on transient failures, never served stale."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from stsd import aws_values, protocol
from stsd.daemon.clock import Clock, utc_text
from stsd.daemon.config import DaemonConfig
from stsd.daemon.requests import RoleRequest
from stsd.daemon.secret import Secret
from stsd.daemon.sources import FileStamp, SourceCredentials, SourceError, SourceRegistry, SourceSpec
from stsd.daemon.sts_calls import in_sts_pool
from stsd.daemon.sts_errors import (
    STS_DENIED,
    TIMEOUT,
    FailureKind,
    classify,
)

log = logging.getLogger(__name__)

STS_DEFAULT_DURATION_SECONDS = aws_values.ROLE_DEFAULT_SECONDS
CHAINED_MAX_DURATION_SECONDS = aws_values.CHAINED_MAX_SECONDS  # role chaining: STS refuses more
# Old credentials are still served after a failed renewal, but not in their last minute: a consumer
# needs a moment to use them, and clocks differ a little.
USABLE_MARGIN = timedelta(seconds=60)
# The renewal loop never sleeps longer than this, re-reading the wall clock each time, so a machine that
# was suspended past a renewal (monotonic time stood still) renews within this long of waking.
MAX_SLEEP_STEP_SECONDS = 30.0
# Sessions no project file or profile names any more are dropped by a sweep at least this often (and before
# any renewal): the loop wakes within MAX_SLEEP_STEP_SECONDS anyway, and a sweep costs a stat per referrer.
SWEEP_INTERVAL_SECONDS = MAX_SLEEP_STEP_SECONDS
# A forced renewal (the protocol's `renew`) can be asked for by anything running as the user, as often as
# it likes: at most one per session per this interval reaches STS (config.toml may set another).
FORCED_RENEWAL_INTERVAL = timedelta(seconds=60)
# A session too short to keep consumers outside their 15-minute refresh window is renewed this long after
# it was fetched at the earliest: each hand-out then has as much life as the duration permits, at the cost
# of an AssumeRole every few minutes (README: Short sessions).
SHORT_SESSION_MIN_LIFE_USED = timedelta(seconds=120)
SHORT_SESSION_MARGIN = timedelta(seconds=60)
SHORT_SESSION = timedelta(minutes=30)
CONSUMER_REFRESH_WINDOW = timedelta(
    minutes=15
)  # botocore's advisory window (AWS-FACTS.md)  # beyond min_remaining: a consumer's clock may run ahead


@dataclass(frozen=True)
class TemporaryCredentials:
    """A role session's credentials as STS issued them; the secret parts never show in repr."""

    access_key_id: str
    secret_access_key: Secret
    session_token: Secret
    expiration: datetime  # aware UTC, as STS stated it (what consumers are told)


@dataclass(frozen=True)
class RoleSession:
    """A snapshot of one session, for callers and for status."""

    request: RoleRequest
    credentials: TemporaryCredentials | None
    assumed_role_arn: str | None
    renew_at: datetime | None
    last_error: str | None
    capped_note: str | None
    expires_at: datetime | None = None  # deadline on the daemon's own clock; see _Slot.expires_at
    idle: bool = False
    retry_at: datetime | None = None  # next attempt after a failure
    error_code: str | None = None  # protocol code of last_error
    # Filled in by SessionManager.sessions(): a permanent failure holds until the AWS files change, and
    # when a forced renewal is possible again (None while blocked).
    blocked: bool = False
    forced_renewal_at: datetime | None = None
    cost_note: str | None = None  # what a short session costs (README: Short sessions)

    @property
    def label(self) -> str:
        return self.request.label

    @property
    def role_arn(self) -> str:
        return self.request.role_arn

    @property
    def account(self) -> str:
        return self.request.account

    @property
    def session_name(self) -> str:
        return self.request.session_name


@dataclass(frozen=True)
class _Assumed:
    credentials: TemporaryCredentials
    assumed_role_arn: str | None
    lifetime_seconds: int
    capped_note: str | None
    # A source's own session: its deadline on our clock, and whether its provider can renew it unasked.
    deadline: datetime | None = None
    renewable: bool = True
    # When the source holding these credentials fetches new ones (RenewAheadSource); asked again before
    # then, it gives the same credentials.
    source_renews_at: datetime | None = None


class _Failure(Exception):
    def __init__(self, code: str, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


class _Slot:
    """The mutable state behind one request's session; only the event loop thread touches it."""

    def __init__(self, request: RoleRequest, now: datetime) -> None:
        self.request = request
        self.credentials: TemporaryCredentials | None = None
        self.assumed_role_arn: str | None = None
        self.capped_note: str | None = None
        self.cost_note: str | None = None
        # Decisions use a deadline on our own clock: when we sent the request plus the lifetime STS
        # granted. It is never later than the real expiry whatever the skew between us and AWS (and it
        # lets tests drive a fake clock against a real local STS).
        self.expires_at: datetime | None = None
        self.renew_at: datetime | None = None
        self.fetched_wall: datetime | None = None  # when the held credentials were asked for, on both clocks
        self.fetched_monotonic: float | None = None
        self.last_used = now
        self.idle = False
        self.last_error: str | None = None
        self.error_code: str | None = None
        self.failures = 0
        self.retry_at: datetime | None = None
        # Permanent failure: the source's generation (AWS files, MFA session) as it was then.
        self.blocked_at: tuple[tuple[FileStamp, ...], int] | None = None
        self.forced_wall: datetime | None = None  # the last forced renewal, on both clocks
        self.forced_monotonic: float | None = None
        self.inflight: asyncio.Future[None] | None = None

    def snapshot(self) -> RoleSession:
        return RoleSession(
            request=self.request,
            credentials=self.credentials,
            assumed_role_arn=self.assumed_role_arn,
            renew_at=self.renew_at,
            last_error=self.last_error,
            capped_note=self.capped_note,
            expires_at=self.expires_at,
            idle=self.idle,
            retry_at=self.retry_at,
            error_code=self.error_code,
            cost_note=self.cost_note,
        )

    def now(self, wall: datetime, monotonic: float) -> datetime:
        """Now as this session's deadlines see it. The wall clock, which keeps running through a suspend;
        but if it was stepped back since the fetch (an NTP correction), the monotonic time elapsed since
        then says how late it really is, so expired credentials never look valid."""
        if self.fetched_wall is None or self.fetched_monotonic is None:
            return wall
        return max(wall, self.fetched_wall + timedelta(seconds=monotonic - self.fetched_monotonic))

    def forced_renewal_at(
        self, wall: datetime, monotonic: float, interval: timedelta = FORCED_RENEWAL_INTERVAL
    ) -> datetime:
        """When a forced renewal is possible again (`wall` or earlier: now). Time since the last one is the
        longer of what the two clocks say: a suspend does not prolong the wait, nor does a clock set back."""
        if self.forced_wall is None or self.forced_monotonic is None:
            return wall
        elapsed = max(wall - self.forced_wall, timedelta(seconds=monotonic - self.forced_monotonic))
        return wall + max(timedelta(0), interval - elapsed)

    def usable(self, now: datetime) -> bool:
        return (
            self.expires_at is not None
            and self.credentials is not None
            and self.expires_at - now >= USABLE_MARGIN
        )

    def fresh(self, now: datetime) -> bool:
        """Held credentials not yet due for renewal (renew_at keeps at least min_remaining left)."""
        return self.credentials is not None and self.renew_at is not None and now < self.renew_at


def backoff_delay(failures: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after `failures` consecutive transient failures: exponential ceiling, full jitter
    above a floor of `initial` (so many daemons hitting one outage spread out, and none spins)."""
    ceiling = min(maximum, initial * 2.0 ** max(1, failures))
    return rng.uniform(initial, max(initial, ceiling))


class SessionManager:
    """Holds every role session; the only caller of AssumeRole. Runs on one asyncio loop (STS calls go
    to worker threads); `rng` is injectable so tests can fix the jitter."""

    def __init__(
        self,
        sources: SourceRegistry,
        clock: Clock,
        config: DaemonConfig,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self._sources = sources
        self._clock = clock
        self._config = config
        self._rng = rng or random.SystemRandom()
        self._slots: dict[RoleRequest, _Slot] = {}
        self._wake: asyncio.Event | None = None  # created inside the loop (Python 3.9 binds it at creation)
        self._closing = False
        self._background: set[asyncio.Future[Any]] = set()
        self._identifying: set[SourceSpec] = set()  # identity lookups in flight: one per source
        self._count_lock = threading.Lock()
        self.assume_role_calls = 0  # AssumeRole calls sent, for tests and benchmarks
        self.loop_checked_at: datetime | None = None  # wall time the renewal loop last looked at
        self._forced_interval = timedelta(seconds=config.forced_renewal_interval_seconds)
        # Which requests some project file or profile still names (stsd/daemon/references.py); None keeps
        # every session (a manager used without the service).
        self._referenced: Callable[[], Collection[RoleRequest]] | None = None
        self._swept_at: float | None = None  # monotonic

    # -- callers -------------------------------------------------------------------------------------

    async def credentials(self, request: RoleRequest) -> RoleSession:
        """Credentials with at least the minimum remaining (renewing first when due), or protocol.Refusal.

        After a failed renewal the old credentials are served until shortly before they expire."""
        slot = self._touch(request)
        now = self._slot_now(slot)
        if slot.fresh(now):
            return slot.snapshot()
        if self._blocked(slot) or (slot.retry_at is not None and now < slot.retry_at and slot.usable(now)):
            # Permanent failure with nothing changed, or backing off: asking STS again now would not help.
            if slot.usable(now):
                return slot.snapshot()
            raise protocol.Refusal(slot.error_code or STS_DENIED, slot.last_error or "renewal failed")
        try:
            await self._refresh(slot)
        except protocol.Refusal:
            if slot.usable(self._slot_now(slot)):
                return slot.snapshot()
            raise
        return slot.snapshot()

    async def renew(self, request: RoleRequest) -> RoleSession:
        """Renew now, ahead of the schedule or a backoff; raises protocol.Refusal on failure. At most once per
        FORCED_RENEWAL_INTERVAL per session (else renew_limited), and never past a permanent failure: that
        holds until the AWS config or credentials files change, however often anyone asks."""
        slot = self._touch(request)
        if self._blocked(slot):
            raise protocol.Refusal(
                slot.error_code or STS_DENIED,
                f"{slot.last_error or 'renewal failed'} (not retried until the AWS config or credentials "
                "files change)",
            )
        wall, monotonic = self._clock.wall(), self._clock.monotonic()
        possible_at = slot.forced_renewal_at(wall, monotonic, self._forced_interval)
        if possible_at > wall:
            wait = math.ceil((possible_at - wall).total_seconds())
            raise protocol.Refusal(
                protocol.RENEW_LIMITED,
                f"{slot.request.label or slot.request.role_arn} was renewed on request less than "
                f"{self._forced_interval.total_seconds():.0f} s ago; a forced renewal is possible again in "
                f"{wait} s (at {utc_text(possible_at)}); the daemon renews ahead of expiry on its own",
                forced_renewal_at=utc_text(possible_at),
            )
        slot.forced_wall, slot.forced_monotonic = wall, monotonic
        slot.retry_at = None
        if slot.inflight is not None:
            # A fetch already running started before this call: wait for it, then fetch anew.
            await asyncio.wait({slot.inflight})
        await self._refresh(slot)
        return slot.snapshot()

    def watch(self, referenced: Callable[[], Collection[RoleRequest]]) -> None:
        """Keep only sessions whose request is in `referenced()`, asked at each sweep (see sweep())."""
        self._referenced = referenced

    def sweep(self) -> None:
        """Forget every session nothing references any more: it stops renewing, its credentials are
        dropped and it leaves status. Run by the renewal loop every SWEEP_INTERVAL_SECONDS and before any
        renewal, and by the service when a request or status shows a referrer changed."""
        self._swept_at = self._clock.monotonic()
        if self._referenced is None:
            return
        referenced = self._referenced()
        for request in [request for request in self._slots if request not in referenced]:
            self._forget(request)

    def wake(self) -> None:
        """Have the renewal loop look again now (a source changed: sessions waiting on it may go on)."""
        self._wake_event().set()

    def fetches_in_flight(self) -> int:
        """STS fetches running now (a test waits for zero before looking at the outcome)."""
        return sum(1 for slot in self._slots.values() if slot.inflight is not None)

    def session_count(self) -> int:
        """How many sessions are held, without a snapshot of each (asked after every request)."""
        return len(self._slots)

    def sessions(self) -> list[RoleSession]:
        wall, monotonic = self._clock.wall(), self._clock.monotonic()
        self._mark_idle(wall)
        snapshots = []
        for slot in self._slots.values():
            blocked = self._blocked(slot)
            snapshots.append(
                replace(
                    slot.snapshot(),
                    blocked=blocked,
                    forced_renewal_at=None
                    if blocked
                    else slot.forced_renewal_at(wall, monotonic, self._forced_interval),
                )
            )
        return snapshots

    # -- background ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Renew due sessions until close(). Never returns early on a failure."""
        wake = self._wake_event()
        while not self._closing:
            now = self._clock.wall()
            self.loop_checked_at = now
            try:
                next_check = self._start_due_renewals(now)
            except Exception:  # a bug must not end renewals for every session
                log.exception("renewal loop error")
                next_check = now + timedelta(seconds=MAX_SLEEP_STEP_SECONDS)
            wake.clear()
            await self._sleep_or_wake((next_check - now).total_seconds(), wake)

    def _start_due_renewals(self, now: datetime) -> datetime:
        """Start a fetch for every session that is due; return when the loop should look again."""
        self._mark_idle(now)
        next_check = now + timedelta(seconds=MAX_SLEEP_STEP_SECONDS)
        monotonic = self._clock.monotonic()
        if (
            self._swept_at is None
            or monotonic - self._swept_at >= SWEEP_INTERVAL_SECONDS
            or any(self._is_due(slot, now, monotonic) for slot in self._slots.values())
        ):
            self.sweep()  # before renewing: a session nobody names must not cost an AssumeRole
        for slot in list(self._slots.values()):
            due_at = self._due_at(slot)
            if due_at is None:
                continue
            slot_now = slot.now(now, monotonic)
            if due_at <= slot_now:
                log.debug("renewing %s (%s)", slot.request.role_arn, slot.request.label)
                self._start_fetch(slot)
            else:
                next_check = min(next_check, now + (due_at - slot_now))
        return next_check

    async def close(self) -> None:
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        pending = [slot.inflight for slot in self._slots.values() if slot.inflight is not None]
        pending += list(self._background)
        for future in pending:
            future.cancel()  # the worker thread finishes on its own (short botocore timeouts)
        if pending:
            await asyncio.wait(pending)

    # -- internals -----------------------------------------------------------------------------------

    def _is_due(self, slot: _Slot, now: datetime, monotonic: float) -> bool:
        due_at = self._due_at(slot)
        return due_at is not None and due_at <= slot.now(now, monotonic)

    def _forget(self, request: RoleRequest) -> None:
        slot = self._slots.pop(request)
        log.info("session %s: no project file or profile names it any more; forgotten", slot.request.label)
        slot.credentials = None
        if slot.inflight is not None:
            # Callers waiting on it still get its outcome; close() must still see it through.
            self._background.add(slot.inflight)
            slot.inflight.add_done_callback(self._background.discard)

    def _slot_now(self, slot: _Slot) -> datetime:
        return slot.now(self._clock.wall(), self._clock.monotonic())

    def _touch(self, request: RoleRequest) -> _Slot:
        now = self._clock.wall()
        slot = self._slots.get(request)
        if slot is None:
            slot = _Slot(request, now)
            self._slots[request] = slot
        slot.request = request  # equal, but the label may differ: status shows the latest asker
        slot.last_used = now
        slot.idle = False
        return slot

    def _blocked(self, slot: _Slot) -> bool:
        """A permanent failure holds until its source changes: the AWS config/credentials files, or a new
        MFA session (`stsd mfa`)."""
        if slot.blocked_at is None:
            return False
        if slot.blocked_at != self._sources.generation(slot.request.source):
            log.info("source %s changed: retrying %s", slot.request.source.name, slot.request.label or "-")
            slot.blocked_at = None
            return False
        return True

    def _mark_idle(self, now: datetime) -> None:
        idle_after = timedelta(seconds=self._config.idle_timeout_seconds)
        for slot in self._slots.values():
            if not slot.idle and now - slot.last_used >= idle_after:
                log.info("session %s idle: renewals stop until it is asked for again", slot.request.label)
                slot.idle = True
            if (
                slot.idle
                and slot.credentials is not None
                and slot.expires_at is not None
                and now >= slot.expires_at
            ):
                slot.credentials = None  # expired and unwanted: no reason to keep the secret in memory

    def _due_at(self, slot: _Slot) -> datetime | None:
        """When the loop should next fetch this session, or None for "not the loop's business"."""
        if slot.idle or slot.inflight is not None or self._blocked(slot):
            return None
        if slot.retry_at is not None:
            return slot.retry_at
        return slot.renew_at if slot.credentials is not None else None  # None: never fetched yet

    async def _sleep_or_wake(self, seconds: float, wake: asyncio.Event) -> None:
        if wake.is_set():
            return
        sleeper = asyncio.ensure_future(self._clock.sleep(max(0.0, seconds)))
        waiter = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waiter):
                task.cancel()

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _start_fetch(self, slot: _Slot) -> asyncio.Future[None]:
        """Start the one fetch for this slot, or return the one already running (single flight)."""
        if slot.inflight is None:
            future = asyncio.ensure_future(self._fetch(slot))
            slot.inflight = future

            def finished(done: asyncio.Future[None]) -> None:
                if slot.inflight is done:
                    slot.inflight = None
                if not done.cancelled():
                    done.exception()  # retrieved here; callers get it through their own await
                self._wake_event().set()

            future.add_done_callback(finished)
        return slot.inflight

    async def _refresh(self, slot: _Slot) -> None:
        future = self._start_fetch(slot)
        try:
            # shield: a caller that gives up (or is cancelled) does not cancel the fetch others wait on.
            await asyncio.wait_for(asyncio.shield(future), timeout=self._config.sts_wait_seconds)
        except asyncio.TimeoutError:
            raise protocol.Refusal(
                TIMEOUT,
                f"AssumeRole {slot.request.role_arn}: no answer from STS within {self._config.sts_wait_seconds:g} s",
            ) from None

    async def _fetch(self, slot: _Slot) -> None:
        request = slot.request
        started = self._clock.wall()
        started_monotonic = self._clock.monotonic()
        files = self._sources.generation(request.source)
        try:
            assumed = await in_sts_pool(self._fetch_credentials, request)
        except _Failure as failure:
            self._record_failure(slot, failure, files)
            raise protocol.Refusal(failure.code, failure.message) from None
        self._record_success(slot, assumed, started, started_monotonic)
        # The source's identity is for status only: look it up without holding anyone up, and once
        # for all the fetches that end while it is asked (afterwards the registry's cache answers).
        source = request.source
        if source in self._identifying:
            return
        self._identifying.add(source)
        task = asyncio.ensure_future(in_sts_pool(self._sources.identify, source))
        self._background.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self._identifying.discard(source))

    def _record_success(
        self, slot: _Slot, assumed: _Assumed, started: datetime, started_monotonic: float
    ) -> None:
        if assumed.deadline is not None:
            lifetime = assumed.deadline - started
        else:
            lifetime = timedelta(seconds=assumed.lifetime_seconds)
        slot.fetched_wall, slot.fetched_monotonic = started, started_monotonic
        slot.credentials = assumed.credentials
        slot.assumed_role_arn = assumed.assumed_role_arn
        slot.capped_note = assumed.capped_note
        slot.expires_at = started + lifetime
        if assumed.renewable:
            slot.renew_at = self._schedule(slot.expires_at, lifetime)
            if assumed.source_renews_at is not None:
                # The source's own credentials served as they are: renewing before the source fetches new
                # ones would only get these again, and a short session (whose schedule is a fixed time
                # after each fetch) would re-fetch them every SHORT_SESSION_MIN_LIFE_USED while its
                # lifetime shrinks, catching the source's renewal only at its next step. Renew when the
                # source does (never earlier than the schedule says, so never at or before the fetch).
                slot.renew_at = max(
                    slot.renew_at, min(assumed.source_renews_at, slot.expires_at - USABLE_MARGIN)
                )
            slot.cost_note = _short_session_cost(lifetime, slot.expires_at - slot.renew_at)
        else:
            # Nobody can renew it (an MFA session without mfa_process): serve it to its last minute. Its
            # source counts it as ended before that, so the fetch then fails (the code is needed) once.
            slot.renew_at = slot.expires_at - USABLE_MARGIN
            slot.cost_note = None
        slot.last_error = slot.error_code = None
        slot.failures = 0
        slot.retry_at = None
        slot.blocked_at = None
        log.info(
            "%s for %s; renewing at %s",
            f"assumed {slot.request.role_arn} as {assumed.assumed_role_arn}"
            if slot.request.role_arn
            else f"session of {slot.request.source.name}",
            slot.request.label or "-",
            slot.renew_at.strftime("%H:%M:%S"),
        )

    def _schedule(self, expires_at: datetime, lifetime: timedelta) -> datetime:
        """When fresh credentials are renewed; until then they are served as they are.

        Renew `renew_before` (+ jitter 0..renew_jitter, spreading renewals) ahead of expiry, and never
        later than the point where less than `min_remaining` would be left: so nobody is handed less
        while a renewal is possible. A session too short for that (under about 25 min) cannot keep
        consumers outside their 15-minute window for long: it is renewed once 16 min are left, or once
        SHORT_SESSION_MIN_LIFE_USED is used up if that comes later. Every hand-out then has as much of
        the duration left as it permits (a 1200 s session at least 16 min, a 900 s one at least 13 min),
        and a failed renewal has the rest of the life to retry in."""
        lead = timedelta(
            seconds=self._config.renew_before_seconds
            + self._rng.uniform(0, self._config.renew_jitter_seconds)
        )
        lead = max(lead, timedelta(seconds=self._config.min_remaining_seconds))
        if lifetime - lead < SHORT_SESSION_MIN_LIFE_USED:
            short_lead = timedelta(seconds=self._config.min_remaining_seconds) + SHORT_SESSION_MARGIN
            lead = min(short_lead, lifetime - SHORT_SESSION_MIN_LIFE_USED)
        return expires_at - lead

    def _record_failure(
        self, slot: _Slot, failure: _Failure, files: tuple[tuple[FileStamp, ...], int]
    ) -> None:
        now = self._clock.wall()
        slot.last_error = failure.message
        slot.error_code = failure.code
        if failure.transient:
            slot.failures += 1
            delay = backoff_delay(
                slot.failures,
                initial=self._config.backoff_initial_seconds,
                maximum=self._config.backoff_max_seconds,
                rng=self._rng,
            )
            slot.retry_at = now + timedelta(seconds=delay)
            log.warning("%s (attempt %d; next in %.0f s)", failure.message, slot.failures, delay)
        else:
            slot.failures = 0
            slot.retry_at = None
            slot.blocked_at = files
            # A code to type or a sign-in is the normal course of the day, not a fault.
            level = logging.INFO if failure.code in protocol.ASK_AGAIN_AT_NEXT_PROMPT else logging.ERROR
            log.log(level, "%s (not retried until its source or the AWS files change)", failure.message)

    # -- worker thread -------------------------------------------------------------------------------

    def _fetch_credentials(self, request: RoleRequest) -> _Assumed:
        """Blocking: the source's credentials, then AssumeRole with them (or, with no role, the source's own
        session as it is). Raises _Failure. Runs in a worker thread."""
        try:
            source = self._sources.credentials(request.source)
        except SourceError as error:
            raise _Failure(error.code, error.message, transient=error.transient) from None
        if request.role_arn is None:
            return _source_session(request, source)
        return self._assume_role(request, source)

    def _assume_role(self, request: RoleRequest, source: SourceCredentials) -> _Assumed:
        assert request.role_arn is not None and request.session_name is not None
        action = f"AssumeRole {request.role_arn}"
        duration, note = _effective_duration(request.duration_seconds, source)
        params: dict[str, Any] = {"RoleArn": request.role_arn, "RoleSessionName": request.session_name}
        if request.external_id is not None:
            params["ExternalId"] = request.external_id
        if duration is not None:
            params["DurationSeconds"] = duration
        with self._count_lock:
            self.assume_role_calls += 1
        try:
            client = self._sources.sts_client(source, request.region, request.sts_profile)
            reply = client.assume_role(**params)
        except Exception as error:
            failure = classify(error, action=action)
            if not _is_botocore(error):
                log.exception("unexpected error during %s", action)
            raise _Failure(
                failure.error_code, failure.message, transient=failure.kind is FailureKind.TRANSIENT
            ) from None
        issued = reply["Credentials"]
        return _Assumed(
            credentials=TemporaryCredentials(
                access_key_id=issued["AccessKeyId"],
                secret_access_key=Secret(issued["SecretAccessKey"]),
                session_token=Secret(issued["SessionToken"]),
                expiration=issued["Expiration"].astimezone(timezone.utc),
            ),
            assumed_role_arn=reply["AssumedRoleUser"]["Arn"],
            lifetime_seconds=duration or STS_DEFAULT_DURATION_SECONDS,
            capped_note=note,
        )


def _short_session_cost(lifetime: timedelta, lead: timedelta) -> str | None:
    """One line on what a session under 30 min costs, or None for longer ones."""
    if lifetime >= SHORT_SESSION:
        return None
    every = (lifetime - lead).total_seconds() / 60
    text = f"a {lifetime.total_seconds() / 60:.0f} min session: an AssumeRole every {every:.0f} min"
    if lead < CONSUMER_REFRESH_WINDOW:
        return (
            text + "; SDKs fetch credentials again on every call (under 15 min left), so use 20 min or more"
        )
    return text + "; each hand-out keeps 15 min or more"


def _effective_duration(asked: int | None, source: SourceCredentials) -> tuple[int | None, str | None]:
    """Role chaining (temporary source credentials, an MFA session's too) caps a session at one hour; ask
    for that instead of failing with ValidationError, and say so in status."""
    if source.temporary and asked is not None and asked > CHAINED_MAX_DURATION_SECONDS:
        if source.kind in ("mfa-session", "session-token"):
            note = "roles assumed from a GetSessionToken (MFA) session are capped at 1 h"
        else:
            note = "role chaining caps sessions at 1 h"
        return CHAINED_MAX_DURATION_SECONDS, f"{note}; asked {asked} s"
    return asked, None


def _source_session(request: RoleRequest, source: SourceCredentials) -> _Assumed:
    """A source's own temporary credentials served as they are (a GetSessionToken session, an SSO
    profile's, a credential_process's); only credentials with a session token and an expiry qualify, so
    long-term keys are never handed out."""
    if source.session_token is None or source.expiration is None or source.deadline is None:
        raise _Failure(
            protocol.SOURCE_ERROR,
            f"{request.label}: {request.source.name} gave no temporary credentials (a session token and an "
            "expiry); stsd never hands out long-term keys: name this profile as source_profile of a role",
            transient=False,
        )
    return _Assumed(
        credentials=TemporaryCredentials(
            access_key_id=source.access_key_id,
            secret_access_key=source.secret_access_key,
            session_token=source.session_token,
            expiration=source.expiration,
        ),
        assumed_role_arn=None,
        lifetime_seconds=0,  # the deadline says it
        capped_note=None,
        deadline=source.deadline,
        renewable=source.renewable,
        source_renews_at=source.renews_at,
    )


def _is_botocore(error: BaseException) -> bool:
    return type(error).__module__.startswith("botocore")
