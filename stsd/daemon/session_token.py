"""SessionTokenSource: one GetSessionToken session of a source's long-term keys, with MFA when the spec
names an mfa_serial, shared by every role assumed from that source (and served as it is to a project with
no role). The daemon never prompts: a code comes from `stsd mfa` (unlock) or from the configured
mfa_process; without either, asking for credentials says a code is needed and calls nothing."""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from stsd import aws_values, protocol
from stsd.daemon.clock import Clock, Moment, utc_text
from stsd.daemon.config import DaemonConfig, SourceSettings
from stsd.daemon.renew_ahead import source_lead
from stsd.daemon.secret import Secret
from stsd.daemon.sources import (
    SessionTokenStatus,
    SourceCredentials,
    SourceError,
    SourceProvider,
    SourceSpec,
    SourceStatus,
)
from stsd.daemon.sts_errors import FailureKind, classify, one_line

log = logging.getLogger(__name__)

MFA_PROCESS_TIMEOUT_S = 30
# A session counts as ended this long before its expiry: what is built on it must see it end before its
# last minute (the session manager serves a source session until one minute before expiry).
ENDS_BEFORE_EXPIRY = timedelta(minutes=2)
# Status warns this long before an MFA session that cannot renew itself (no mfa_process) ends.
ENDING_SOON = timedelta(hours=1)
_MFA_HINTS = {
    "AccessDenied": "check the code your device shows now, and mfa_serial",
    "ValidationError": "check mfa_serial and mfa_session_duration",
}


@dataclass(frozen=True)
class _Held:
    credentials: SourceCredentials
    started: Moment  # when GetSessionToken was sent
    deadline: datetime  # started + the duration asked for, on the daemon's own clock


class SessionTokenSource:
    """A SourceProvider over another provider's long-term keys."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        base: SourceProvider,
        settings: SourceSettings,
        config: DaemonConfig,
        clock: Clock,
        sts_client: Callable[[SourceCredentials, str, str | None], Any],
    ) -> None:
        self.spec = spec
        self._base = base
        self._settings = settings
        self._config = config
        self._clock = clock
        self._sts_client = sts_client
        self._fetch_lock = threading.Lock()  # one GetSessionToken (or mfa_process run) at a time
        self._lock = threading.Lock()
        self._held: _Held | None = None
        self._generation = 0
        self._ended_at: datetime | None = None
        self._last_error: str | None = None
        self.get_session_token_calls = 0  # sent, for tests and status

    @property
    def renewable(self) -> bool:
        """Whether a new session can start without a person: no MFA, or an mfa_process for the code."""
        return self.spec.mfa_serial is None or self._settings.mfa_process is not None

    @property
    def kind(self) -> str:
        return "mfa-session" if self.spec.mfa_serial is not None else "session-token"

    def generation(self) -> int:
        return self._generation

    def credentials(self) -> SourceCredentials:
        with self._fetch_lock:
            held = self._current()
            if held is not None and not self._due(held):
                return held.credentials
            if not self.renewable:
                raise self._code_needed()
            code = self._code_from_process() if self.spec.mfa_serial is not None else None
            return self._start(code)

    def unlock(self, code: str) -> SessionTokenStatus:
        """Start a new MFA session with `code` (from `stsd mfa`); raises SourceError with STS's reason.
        A refused code changes nothing held: the next code may succeed."""
        if self.spec.mfa_serial is None:
            raise SourceError(
                f"source {self.spec.name} has no mfa_serial; no code is needed",
                transient=False,
                code=protocol.NO_MFA,
            )
        with self._fetch_lock:
            self._start(code)
        session = self.status().session
        assert session is not None
        return session

    def status(self) -> SourceStatus:
        base = self._base.status()
        held = self._current()
        with self._lock:
            session = SessionTokenStatus(
                mfa_serial=self.spec.mfa_serial,
                expires_at=held.deadline if held else None,
                needs_code=held is None and not self.renewable,
                ended_at=self._ended_at,
                mfa_process=self._settings.mfa_process is not None,
                last_error=self._last_error,
            )
        return SourceStatus(self.spec.name, self.kind, None, base.error, True if held else None, session)

    # -- internals -----------------------------------------------------------------------------------

    def _current(self) -> _Held | None:
        """The held session, unless it has ended: then it is dropped, and that is logged once."""
        with self._lock:
            held = self._held
            if held is None:
                return None
            if held.deadline - held.started.later(self._clock) > ENDS_BEFORE_EXPIRY:
                return held
            self._held = None
            self._ended_at = held.deadline
        if self.renewable:
            log.info("session of %s ended", self.spec.name)
        else:
            log.warning(
                "MFA session of %s ended at %s; its roles and shells need a new code: stsd mfa",
                self.spec.short_name,
                utc_text(held.deadline),
            )
        return None

    def _due(self, held: _Held) -> bool:
        """A renewable session is renewed ahead, just before the sessions built on it renew; one that
        needs a person is used until it ends."""
        if not self.renewable:
            return False
        lead = source_lead(self._config, held.deadline - held.started.wall)
        return held.deadline - held.started.later(self._clock) <= lead

    def _code_needed(self) -> SourceError:
        return SourceError(
            f"{self.spec.short_name} needs an MFA code: run stsd mfa",
            transient=False,
            code=protocol.MFA_REQUIRED,
        )

    def _code_from_process(self) -> str:
        """Run mfa_process (no shell, no stdin) for a code; failures are reported like a credential_process
        and retried with backoff by whoever asked. The code itself is never logged."""
        argv = self._settings.mfa_process
        assert argv is not None
        what = f"mfa_process for {self.spec.short_name}"
        try:
            done = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=MFA_PROCESS_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise SourceError(f"{what}: no code within {MFA_PROCESS_TIMEOUT_S} s", transient=True) from None
        except OSError as error:
            raise SourceError(
                f"{what}: cannot run {argv[0]}: {error.strerror or error}", transient=True
            ) from None
        if done.returncode != 0:
            said = one_line(done.stderr.decode("utf-8", "replace"), limit=200) or "no message"
            raise SourceError(f"{what} failed (exit {done.returncode}): {said}", transient=True)
        lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
        code = lines[0].strip() if lines else ""
        if not aws_values.MFA_CODE.accepts(code):
            raise SourceError(
                f"{what} printed no code; {aws_values.MFA_CODE.problem}, on the first line of stdout",
                transient=True,
            )
        return code

    def _start(self, code: str | None) -> SourceCredentials:
        spec = self.spec
        base = self._base.credentials()
        if base.temporary:
            raise SourceError(
                f"source {spec.name}: GetSessionToken needs long-term keys, but {spec.base.name} gives "
                f"temporary credentials ({base.kind}); set mfa_serial next to aws_access_key_id instead",
                transient=False,
            )
        duration = self._settings.mfa_session_duration
        params: dict[str, Any] = {"DurationSeconds": duration}
        action = f"GetSessionToken for {spec.short_name}"
        if spec.mfa_serial is not None:
            assert code is not None
            params.update(SerialNumber=spec.mfa_serial, TokenCode=code)
            action += f" with MFA {spec.mfa_serial}"
        started = Moment.now(self._clock)
        with self._lock:
            self.get_session_token_calls += 1
        try:
            # The source profile's endpoint and CA settings apply, as to `aws --profile SOURCE sts ...`.
            client = self._sts_client(base, self._config.region, spec.profile)
            reply = client.get_session_token(**params)
        except Exception as error:
            failure = classify(error, action=action, hints=_MFA_HINTS)
            if not type(error).__module__.startswith("botocore"):
                log.exception("unexpected error during %s", action)
            with self._lock:
                self._last_error = failure.message
            raise SourceError(
                failure.message,
                transient=failure.kind is FailureKind.TRANSIENT,
                kind=failure.kind,
                code=failure.error_code,
            ) from None
        issued = reply["Credentials"]
        deadline = started.wall + timedelta(seconds=duration)
        credentials = SourceCredentials(
            access_key_id=issued["AccessKeyId"],
            secret_access_key=Secret(issued["SecretAccessKey"]),
            session_token=Secret(issued["SessionToken"]),
            kind=self.kind,
            expiration=issued["Expiration"].astimezone(timezone.utc),
            deadline=deadline,
            renewable=self.renewable,
        )
        with self._lock:
            self._held = _Held(credentials, started, deadline)
            self._generation += 1
            self._ended_at = None
            self._last_error = None
        log.info("%s: session held until %s", action, utc_text(deadline))
        return credentials
