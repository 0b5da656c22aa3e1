"""Service: the daemon's answer to each protocol request (docs/protocol.md): validates it, reads the
project file and its trust, resolves the role request and hands out the session's temporary credentials."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import psutil

from stsd import __version__, aws_values, paths, protocol, terminal
from stsd.daemon.clock import Clock, utc_text
from stsd.daemon.config import DaemonConfig
from stsd.daemon.deadline import Deadline
from stsd.daemon.endpoint import CredentialsEndpoint, Grant, Grants, content_digest
from stsd.daemon.environment import effective_environment
from stsd.daemon.project_cache import ProjectCache
from stsd.daemon.references import References, Referrer
from stsd.daemon.requests import RoleRequest, resolve_profile, resolve_request
from stsd.daemon.session_token import ENDING_SOON
from stsd.daemon.sessions import CONSUMER_REFRESH_WINDOW, RoleSession, SessionManager
from stsd.daemon.sources import (
    SessionTokenStatus,
    SourceRegistry,
    SourceStatus,
    SsoStatus,
    aws_profiles,
    default_profile_shadow,
)
from stsd.daemon.throttled_log import ThrottledLog
from stsd.project.governing import governing_project
from stsd.project.projectfile import (
    PROJECT_FILE_NAME,
    ProjectFile,
    ProjectFileError,
    find_project_file,
    load_project_file,
)
from stsd.project.trust import TrustState, TrustStore
from stsd.variables import (
    CLEARED_VARIABLES,
    CONTAINER_TOKEN_FILE_VARIABLE,
    CONTAINER_TOKEN_VARIABLE,
    CONTAINER_URI_VARIABLE,
    CONTAINER_VARIABLES,
    CREDENTIAL_MODES,
    ENDPOINT_CLEARED_VARIABLES,
    ENDPOINT_MODE,
    PROMPT_NAME_VARIABLE,
)

log = logging.getLogger("stsd.service")

MAX_ID_CHARS = 128
MAX_PATH_CHARS = 4096
# Ask again just after the daemon's planned renewal, so the client picks up the renewed credentials.
AFTER_RENEWAL = timedelta(seconds=5)
# When renewals fail and the credentials are already inside the window, ask at most this often.
MIN_REFRESH_DELAY = timedelta(seconds=30)


Operation = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ProjectTarget:
    """A trusted, valid project file and the role request it describes."""

    project: ProjectFile
    request: RoleRequest
    region: str | None  # only when the project or its profile names one


class Service:
    def __init__(
        self,
        *,
        sessions: SessionManager,
        sources: SourceRegistry,
        trust_store: TrustStore,
        config: DaemonConfig,
        clock: Clock,
        started_at: float,
        mode: str,
        socket_path: Path,
        log_location: str,
        throttled: ThrottledLog | None = None,
    ) -> None:
        self._sessions = sessions
        self._sources = sources
        self._trust = trust_store
        self._targets: ProjectCache[ProjectTarget] = ProjectCache(trust_store.record_directories)
        # A session lives while a project file or profile names it: the manager's sweeps ask these.
        self._references = References()
        sessions.watch(lambda: self._references.recheck(self._resolve_referrer))
        self._config = config
        self._clock = clock
        self._started_at = started_at
        self._mode = mode
        self._socket_path = socket_path
        self._log_location = log_location
        # Refused forced renewals are logged through this: a script can repeat them at will.
        self._throttled = throttled or ThrottledLog(log, monotonic=clock.monotonic)
        # Read once: the daemon's environment does not change while it runs.
        self._environment = effective_environment(os.environ)
        self._process = psutil.Process()
        grants = Grants(state_file=Path(paths.endpoint_state_file()))
        grants.restore(time.time())
        self.endpoint = CredentialsEndpoint(
            self.endpoint_credentials,
            grants,
            port=config.endpoint_port,
            rate_per_s=config.endpoint_requests_per_second,
            throttled=self._throttled,
        )
        self._operations: dict[str, Operation] = {
            "ping": self._ping,
            "env": self._env,
            "credentials": self._credentials,
            "status": self._status,
            "renew": self._renew,
            "mfa": self._mfa,
        }

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """One reply for one decoded request; never raises for bad input (the server catches bugs)."""
        request_id = request.get("id")
        valid_id = request_id is None or (
            isinstance(request_id, (str, int))
            and not isinstance(request_id, bool)
            and len(str(request_id)) <= MAX_ID_CHARS
        )
        try:
            if not valid_id:
                raise protocol.Refusal(
                    protocol.BAD_REQUEST,
                    f"id: expected a string or number of at most {MAX_ID_CHARS} characters",
                )
            operation = self._operation(request)
            reply = await operation(request)
        except protocol.Refusal as refusal:
            reply = refusal.reply()
        if valid_id and request_id is not None:
            reply["id"] = request_id
        if log.isEnabledFor(logging.DEBUG):
            outcome = "ok" if reply["ok"] else reply["error"]["code"]
            target = request.get("dir") or request.get("profile") or ""
            log.debug("%.40r %.300r -> %s", request.get("op"), target, outcome)  # repr: no forged log lines
        return reply

    def _operation(self, request: Mapping[str, Any]) -> Operation:
        version = request.get("v")
        if "v" not in request:
            raise protocol.Refusal(protocol.BAD_REQUEST, f'v: missing; expected "v": {protocol.VERSION}')
        if isinstance(version, bool) or version != protocol.VERSION:
            raise protocol.Refusal(
                protocol.UNSUPPORTED_VERSION,
                f"protocol version {version!r} is not supported (this daemon speaks {protocol.VERSION}); "
                "upgrade stsd",
            )
        op = request.get("op")
        if not isinstance(op, str):
            raise protocol.Refusal(protocol.BAD_REQUEST, f"op: expected one of {', '.join(protocol.OPS)}")
        operation = self._operations.get(op)
        if operation is None:
            shown = op if len(op) <= 40 else op[:40] + "..."
            raise protocol.Refusal(
                protocol.UNKNOWN_OP, f"unknown op {shown!r}; expected one of {', '.join(protocol.OPS)}"
            )
        return operation

    # -- operations ----------------------------------------------------------------------------------

    async def _ping(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return protocol.ok(pid=os.getpid(), version=__version__, protocol=protocol.VERSION)

    async def _env(self, request: Mapping[str, Any]) -> dict[str, Any]:
        directory = _directory_field(request)
        mode = _mode_field(request)
        wait = _wait_field(request)
        if wait is not None and wait.queued_out:
            # Queued past what its asker waits (a burst of shells, a cold start): it has moved on. Doing
            # nothing for it keeps the queue short for the askers still waiting.
            raise protocol.Refusal(
                protocol.PENDING, "the daemon is busy; ask again in a moment", **{protocol.BUSY_FIELD: True}
            )
        target = self._project_target(directory)
        if target is None:
            return protocol.ok(project=None, vars={}, expiration=None, refresh_at=None)
        if wait is None:
            session = await self._session(target.request)
        else:
            session = await self._session_within(target, wait.left_s)
        return await self._env_reply(target, session, mode)

    async def _credentials(self, request: Mapping[str, Any]) -> dict[str, Any]:
        role_request = self._credentials_target(request)
        session = await self._session(role_request)
        return protocol.ok(credentials=_credential_process_json(session))

    async def _renew(self, request: Mapping[str, Any]) -> dict[str, Any]:
        if "dir" in request and "profile" not in request:
            directory = _directory_field(request)
            target = self._project_target(directory)
            if target is None:
                raise protocol.Refusal(
                    protocol.INVALID_PROJECT, f"no {PROJECT_FILE_NAME} governs {directory}"
                )
            session = await self._session(target.request, renew=True)
            return await self._env_reply(target, session, _mode_field(request))
        role_request = self._credentials_target(request)
        session = await self._session(role_request, renew=True)
        return protocol.ok(credentials=_credential_process_json(session))

    async def _status(self, request: Mapping[str, Any]) -> dict[str, Any]:
        directory = _directory_field(request) if request.get("dir") is not None else None
        self._sessions.sweep()  # status never lists a session whose file was edited or removed meanwhile
        now = self._clock.wall()
        return protocol.ok(
            daemon=self._daemon_status(),
            sources=[_source_status(source, now) for source in self._sources.statuses()],
            sessions=[
                _session_status(
                    session,
                    now,
                    label=self._references.label(session.request) or session.label,
                    used_by=self._references.referrers(session.request),
                )
                for session in self._sessions.sessions()
            ],
            project=governing_project(directory, self._trust) if directory is not None else None,
            endpoint={
                "url": self.endpoint.url,
                "projects": len(self.endpoint.grants),
                "requests": self.endpoint.requests_served,
                "default_mode": self._config.credentials,
                "warning": default_profile_shadow(),
            },
        )

    async def _mfa(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """With `code`: start the MFA session of the target's source (one GetSessionToken), which every
        role and shell of that source then uses. Without: say which source and device it is about."""
        code = request.get("code")
        if code is not None and not aws_values.MFA_CODE.accepts(code):
            raise protocol.Refusal(protocol.BAD_REQUEST, f"code: {aws_values.MFA_CODE.problem}")
        role_request = self._credentials_target({k: v for k, v in request.items() if k != "code"})
        spec = role_request.source
        if spec.mfa_serial is None:
            raise protocol.Refusal(
                protocol.NO_MFA,
                f"{role_request.label}: its source ({spec.name}) has no mfa_serial; no MFA code is needed",
            )
        if code is not None:
            session = await asyncio.to_thread(self._sources.unlock, spec, code)  # or SourceError, a Refusal
            self._sessions.wake()  # sessions waiting for this source's code may renew now
        else:
            session = self._sources.provider(spec).status().session
        assert session is not None
        return protocol.ok(
            source=spec.short_name,
            session=_session_token_status(session, self._clock.wall()),
        )

    async def endpoint_credentials(self, grant: Grant) -> dict[str, Any]:
        """The credentials endpoint's answer for `grant`: the session of the project file it was issued
        for, checked again now (an edit, a denial or a file gone revokes the token), or protocol.Refusal."""
        path = grant.project_path
        try:
            target = self._file_target(path)
            if content_digest(target.project.content) != grant.content_digest:
                raise protocol.Refusal(protocol.UNTRUSTED, "changed")
            # A grant restored after a restart may be the first the daemon hears of this file.
            self._referenced(Referrer(path=path), target.request)
            session = await self._session(target.request)
        except protocol.Refusal as refusal:
            code, message = refusal.code, refusal.message
            if code in (protocol.UNTRUSTED, protocol.DENIED, protocol.INVALID_PROJECT):
                # The token was bound to the content trusted then: it ends here, whatever comes next.
                allow = terminal.allow_command(str(path), terminal.DEFAULT_SHELL)
                restart = "then start the process again from a shell in the project"
                if code == protocol.UNTRUSTED:
                    message = (
                        f"{path} changed since this process got its token; review it, run: {allow}, {restart}"
                    )
                elif code == protocol.DENIED:
                    message = f"{path} is denied; to trust it after all run: {allow}, {restart}"
                else:
                    message = f"{message}; fix it, run: {allow}, {restart}"
                self.endpoint.grants.revoke_grant(grant, protocol.Refusal(code, message))
            raise protocol.Refusal(code, message) from None
        credentials = session.credentials
        assert credentials is not None
        return {
            "AccessKeyId": credentials.access_key_id,
            "SecretAccessKey": credentials.secret_access_key.reveal(),
            "Token": credentials.session_token.reveal(),
            "Expiration": utc_text(credentials.expiration),
            "RoleArn": session.role_arn,
        }

    # -- parts ---------------------------------------------------------------------------------------

    def _credentials_target(self, request: Mapping[str, Any]) -> RoleRequest:
        has_profile, has_dir = "profile" in request, "dir" in request
        if has_profile == has_dir:
            raise protocol.Refusal(protocol.BAD_REQUEST, "expected exactly one of profile or dir")
        if has_dir:
            directory = _directory_field(request)
            target = self._project_target(directory)
            if target is None:
                raise protocol.Refusal(
                    protocol.INVALID_PROJECT, f"no {PROJECT_FILE_NAME} governs {directory}; nothing to assume"
                )
            return target.request
        profile = request.get("profile")
        if not aws_values.PROFILE_NAME.accepts(profile):
            raise protocol.Refusal(protocol.BAD_REQUEST, f"profile: {aws_values.PROFILE_NAME.problem}")
        referrer = Referrer(profile=profile)
        try:
            role_request = resolve_profile(profile, config=self._config)
        except protocol.Refusal:
            self._unreferenced(referrer)
            raise
        self._referenced(referrer, role_request)
        return role_request

    def _project_target(self, directory: Path) -> ProjectTarget | None:
        """The project governing `directory`, checked for validity and trust; reused while the file's
        stat, the trust records and the AWS files are unchanged (an edit is checked again at once)."""
        path = find_project_file(directory)
        if path is None:
            return None
        referrer = Referrer(path=path)
        try:
            target = self._targets.get(path, lambda: self._file_target(path))
        except protocol.Refusal:
            self._unreferenced(referrer)
            raise
        self._referenced(referrer, target.request)
        return target

    def _referenced(self, referrer: Referrer, request: RoleRequest) -> None:
        if self._references.note(referrer, request):
            self._sessions.sweep()  # what it named before may be named by nobody now

    def _unreferenced(self, referrer: Referrer) -> None:
        if self._references.drop(referrer):
            self._sessions.sweep()

    def _resolve_referrer(self, referrer: Referrer) -> RoleRequest | None:
        """The request `referrer` names now, or None. A project file is re-read and re-hashed only when
        its stat (or the trust records', or the AWS files') changed; a profile is resolved again from the
        AWS files, which are cached until they change."""
        try:
            if referrer.profile is not None:
                return resolve_profile(referrer.profile, config=self._config)
            path = referrer.path
            assert path is not None
            return self._targets.get(path, lambda: self._file_target(path)).request
        except protocol.Refusal:
            return None

    def _file_target(self, path: Path) -> ProjectTarget:
        where = {"project": str(path)}
        try:
            project = load_project_file(path)
        except ProjectFileError as error:
            if self._trust.state(path, b"") is TrustState.DENIED:
                raise _denied(path) from None
            raise protocol.Refusal(protocol.INVALID_PROJECT, str(error), **where) from None
        trust = self._trust.state(project.path, project.content)
        if trust is TrustState.DENIED:
            raise _denied(project.path)
        if trust is not TrustState.ALLOWED:
            # The words every client shows (it re-quotes the advice for the user's own shell).
            line = terminal.refusal_line(protocol.UNTRUSTED, str(project.path), None, terminal.DEFAULT_SHELL)
            raise protocol.Refusal(protocol.UNTRUSTED, line, **where)
        try:
            role_request = resolve_request(project.settings, label=str(project.path), config=self._config)
        except protocol.Refusal as refusal:
            refusal.fields.update(where)
            raise
        return ProjectTarget(project, role_request, _named_region(project))

    async def _session(self, request: RoleRequest, *, renew: bool = False) -> RoleSession:
        try:
            if renew:
                session = await self._sessions.renew(request)
            else:
                session = await self._sessions.credentials(request)
        except protocol.Refusal as refusal:
            if refusal.code == protocol.RENEW_LIMITED:
                self._throttled.info(
                    "refused forced renewals", "refused a forced renewal: %s", refusal.message
                )
            raise
        if session.credentials is None:
            raise protocol.Refusal(
                protocol.STS_UNAVAILABLE, session.last_error or "no credentials held; retry later"
            )
        return session

    async def _session_within(self, target: ProjectTarget, wait_s: float) -> RoleSession:
        """_session(), or protocol.Refusal(pending) once `wait_s` has passed without it: the asker (the hook,
        holding a prompt) asks again later. Only this wait is cancelled: the session's fetch is single-flight
        and shielded (SessionManager), so it goes on for the next ask and everyone else's."""
        try:
            # A timer, not a task: a held session (nearly every request) costs no more than without wait_ms.
            async with Deadline(wait_s):
                return await self._session(target.request)
        except asyncio.TimeoutError:
            path = target.project.path
            raise protocol.Refusal(
                protocol.PENDING,
                f"fetching credentials for {path.parent}; ask again in a moment",
                project=str(path),
            ) from None

    async def _env_reply(
        self, target: ProjectTarget, session: RoleSession, mode: str | None = None
    ) -> dict[str, Any]:
        credentials = session.credentials
        assert credentials is not None  # _session() refuses sessions without credentials
        mode = mode or target.project.credentials or self._config.credentials
        # Extras first, so no [env] entry can replace the credentials or the region.
        variables: dict[str, str | None] = dict(target.project.env)
        extra: dict[str, Any] = {}
        if mode == ENDPOINT_MODE:
            url = await self.endpoint.ensure_started()
            grant = self.endpoint.grants.issue(
                target.project.path, target.project.content, with_file=self._config.endpoint_token_file
            )
            variables[CONTAINER_URI_VARIABLE] = url
            variables["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = None  # it would win over FULL_URI
            if grant.token_file is not None:
                variables.update(
                    {CONTAINER_TOKEN_FILE_VARIABLE: str(grant.token_file), CONTAINER_TOKEN_VARIABLE: None}
                )
            else:
                variables.update({CONTAINER_TOKEN_VARIABLE: grant.token, CONTAINER_TOKEN_FILE_VARIABLE: None})
            for name in ENDPOINT_CLEARED_VARIABLES:
                variables[name] = None
            warning = default_profile_shadow()
            if warning:
                extra["warning"] = warning
        else:
            variables.update(
                AWS_ACCESS_KEY_ID=credentials.access_key_id,
                AWS_SECRET_ACCESS_KEY=credentials.secret_access_key.reveal(),
                AWS_SESSION_TOKEN=credentials.session_token.reveal(),
                AWS_CREDENTIAL_EXPIRATION=utc_text(credentials.expiration),
            )
            for name in (*CLEARED_VARIABLES, *CONTAINER_VARIABLES):
                variables[name] = None
        if target.region is not None:
            variables.update(AWS_REGION=target.region, AWS_DEFAULT_REGION=target.region)
        variables[PROMPT_NAME_VARIABLE] = target.project.name
        return protocol.ok(
            project={"path": str(target.project.path), "name": target.project.name, "credentials": mode},
            vars=variables,
            expiration=utc_text(credentials.expiration),
            refresh_at=self._refresh_at(session),
            **extra,
        )

    def _refresh_at(self, session: RoleSession) -> int:
        credentials = session.credentials
        assert credentials is not None
        expires = min(filter(None, (session.expires_at, credentials.expiration)))
        latest = expires - CONSUMER_REFRESH_WINDOW
        planned = session.renew_at + AFTER_RENEWAL if session.renew_at is not None else latest
        earliest = self._clock.wall() + MIN_REFRESH_DELAY
        return int(max(earliest, min(planned, latest)).timestamp())

    def _daemon_status(self) -> dict[str, Any]:
        # psutil of this process only: the daemon is not dumpable, so other processes cannot read it.
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            cpu = self._process.cpu_times()
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": int(self._started_at),
            "uptime_s": int(time.time() - self._started_at),
            "rss_bytes": rss,
            "cpu_s": round(cpu.user + cpu.system, 2),
            "socket": str(self._socket_path),
            "mode": self._mode,
            "log": self._log_location,
            "environment": dict(self._environment),
        }


def _directory_field(request: Mapping[str, Any]) -> Path:
    value = request.get("dir")
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or len(value) > MAX_PATH_CHARS
        or "\0" in value
    ):
        raise protocol.Refusal(
            protocol.BAD_REQUEST, f"dir: expected an absolute path of at most {MAX_PATH_CHARS} characters"
        )
    return Path(value)


class _Wait(NamedTuple):
    left_s: float  # of the wait the request states, what is left now
    queued_out: bool  # it all went by before the daemon read the request


def _wait_field(request: Mapping[str, Any]) -> _Wait | None:
    """The wait an `env` request states (wait_ms, counted from its asked_at if given); None if none."""
    value = request.get(protocol.WAIT_FIELD)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= protocol.MAX_WAIT_MS:
        raise protocol.Refusal(
            protocol.BAD_REQUEST,
            f"{protocol.WAIT_FIELD}: expected an integer number of milliseconds from 0 to {protocol.MAX_WAIT_MS}",
        )
    wait = value / 1000
    asked_at = request.get(protocol.ASKED_AT_FIELD)
    if asked_at is None:
        return _Wait(wait, False)
    if not isinstance(asked_at, (int, float)) or isinstance(asked_at, bool) or not math.isfinite(asked_at):
        raise protocol.Refusal(
            protocol.BAD_REQUEST, f"{protocol.ASKED_AT_FIELD}: expected the time of asking in epoch seconds"
        )
    # Clamped: a wall clock stepped meanwhile can shorten the wait to nothing, never lengthen it.
    left = wait - min(max(time.time() - asked_at, 0.0), wait)
    return _Wait(left, wait > 0 and left <= 0)


def _mode_field(request: Mapping[str, Any]) -> str | None:
    """An `env` request's optional `credentials`: a mode that overrides the project's (`stsd exec --endpoint`)."""
    mode = request.get("credentials")
    if mode is not None and mode not in CREDENTIAL_MODES:
        raise protocol.Refusal(
            protocol.BAD_REQUEST, f"credentials: expected one of {', '.join(CREDENTIAL_MODES)}"
        )
    return mode


def _denied(path: Path) -> protocol.Refusal:
    line = terminal.refusal_line(protocol.DENIED, str(path), None, terminal.DEFAULT_SHELL)
    return protocol.Refusal(protocol.DENIED, line, project=str(path))


def _named_region(project: ProjectFile) -> str | None:
    """The region the project or its profile names; None leaves the shell's own region alone."""
    if project.settings.region:
        return project.settings.region
    if project.settings.profile:
        region = aws_profiles().get(project.settings.profile, {}).get("region")
        return str(region) if region else None
    return None


def _credential_process_json(session: RoleSession) -> dict[str, Any]:
    credentials = session.credentials
    assert credentials is not None
    return {
        "Version": 1,
        "AccessKeyId": credentials.access_key_id,
        "SecretAccessKey": credentials.secret_access_key.reveal(),
        "SessionToken": credentials.session_token.reveal(),
        "Expiration": utc_text(credentials.expiration),
    }


def _source_status(source: SourceStatus, now: datetime) -> dict[str, Any]:
    expires = source.expires_at
    return {
        "name": source.name,
        "kind": source.kind,
        "identity_arn": source.identity_arn,
        "error": source.error,
        "session": _session_token_status(source.session, now) if source.session else None,
        "sso": _sso_status(source.sso, now) if source.sso else None,
        # The source's own temporary credentials held now (SSO, credential_process): when they expire.
        "expires_at": utc_text(expires) if expires else None,
        "expires_in_s": int((expires - now).total_seconds()) if expires else None,
    }


def _sso_status(sso: SsoStatus, now: datetime) -> dict[str, Any]:
    """An SSO source's sign-in: where, until when its cached token lasts, and whether one is needed."""
    expires = sso.token_expires_at
    return {
        "start_url": sso.start_url,
        "sso_session": sso.sso_session,
        "token_expires_at": utc_text(expires) if expires else None,
        "token_expires_in_s": int((expires - now).total_seconds()) if expires else None,
        "needs_sign_in": sso.needs_sign_in,
        "sign_in_command": sso.sign_in_command,
    }


def _session_token_status(session: SessionTokenStatus, now: datetime) -> dict[str, Any]:
    """A source's GetSessionToken (MFA) session: held until when, ending soon, or a code needed."""
    expires = session.expires_at
    left = int((expires - now).total_seconds()) if expires else None
    return {
        "mfa_serial": session.mfa_serial,
        "held": expires is not None,
        "expires_at": utc_text(expires) if expires else None,
        "expires_in_s": left,
        # Only a session a person must renew "ends"; one with mfa_process (or no MFA) renews itself.
        "ending_soon": bool(
            left is not None
            and session.mfa_serial is not None
            and not session.mfa_process
            and left < ENDING_SOON.total_seconds()
        ),
        "needs_code": session.needs_code,
        "ended_at": utc_text(session.ended_at) if session.ended_at else None,
        "mfa_process": session.mfa_process,
        "last_error": session.last_error,
    }


def _session_status(session: RoleSession, now: datetime, *, label: str, used_by: list[str]) -> dict[str, Any]:
    expires = session.expires_at or (session.credentials.expiration if session.credentials else None)
    # The expiry shown is the one AWS_CREDENTIAL_EXPIRATION carries (STS's own); the time left counts
    # down to the daemon's deadline, which is never later than that.
    shown = session.credentials.expiration if session.credentials else expires
    forced = session.forced_renewal_at
    return {
        "label": label,  # who names it and which role: unique (stsd/daemon/references.py)
        "used_by": used_by,  # the project files and profiles that name it
        "source": session.request.source.name,
        "role_arn": session.role_arn,
        "account": session.account,
        "assumed_role_arn": session.assumed_role_arn,
        "session_name": session.session_name,
        "expires_at": utc_text(shown) if shown else None,
        "expires_in_s": int((expires - now).total_seconds()) if expires else None,
        "renews_in_s": int((session.renew_at - now).total_seconds()) if session.renew_at else None,
        "last_error": session.last_error,
        "note": session.capped_note,
        "cost": session.cost_note,
        "idle": session.idle,
        # When `renew` may force a renewal again: now or later; null while a permanent failure blocks it.
        "blocked": session.blocked,
        "forced_renewal_at": utc_text(forced) if forced else None,
        "forced_renewal_in_s": max(0, math.ceil((forced - now).total_seconds())) if forced else None,
    }
