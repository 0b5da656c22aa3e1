"""SsoSource: an IAM Identity Center (SSO) profile's role credentials, fetched on every call by botocore's
own SSOProvider and SSOTokenProvider (the token `aws sso login` cached, refreshed with its refresh token
when botocore can); RenewAheadSource holds them until they are due.

Without a usable token the daemon calls nothing and retries nothing: one SourceError (sign_in_required)
says which `aws sso login` to run, and generation() changes as soon as the token cache file does, which
is what lets the sessions waiting on it go on."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import botocore.config
import botocore.credentials
import botocore.session
import botocore.tokens
from botocore import exceptions as boto_errors
from botocore.utils import JSONFileCache, SSOTokenLoader, parse_timestamp

from stsd import protocol
from stsd.daemon.clock import Clock, utc_text
from stsd.daemon.config import DaemonConfig
from stsd.daemon.sources import (
    SSO,
    SourceCredentials,
    SourceError,
    SourceSpec,
    SourceStatus,
    SsoStatus,
    aws_config,
    credentials_of,
    expiry_of,
    source_failure,
)

log = logging.getLogger(__name__)

# Where `aws sso login` caches tokens: <sha1 of the sso-session name, or of a legacy profile's start URL>.json
TOKEN_CACHE_DIR = os.path.join("~", ".aws", "sso", "cache")
# botocore's errors for a token that is missing, expired (and not refreshable) or refused by the portal
_SIGNED_OUT = (
    boto_errors.SSOTokenLoadError,
    boto_errors.UnauthorizedSSOTokenError,
    boto_errors.TokenRetrievalError,
)
# What botocore needs to refresh a token without a person (SSOTokenProvider._refresh_access_token).
_REFRESH_KEYS = ("refreshToken", "clientId", "clientSecret", "registrationExpiresAt")


@dataclass(frozen=True)
class SsoSettings:
    """Where an SSO profile signs in, from the profile and its [sso-session] section."""

    profile: str
    start_url: str | None
    sso_session: str | None  # None: a legacy profile with sso_start_url of its own

    @property
    def sign_in_command(self) -> str:
        if self.sso_session is not None:
            return f"aws sso login --sso-session {shlex.quote(self.sso_session)}"
        return f"aws sso login --profile {shlex.quote(self.profile)}"

    @property
    def token_file(self) -> str | None:
        """The cache file `aws sso login` writes (botocore's SSOTokenLoader key, JSONFileCache's name)."""
        key = self.sso_session if self.sso_session is not None else self.start_url
        if key is None:
            return None
        return os.path.join(token_cache_dir(), hashlib.sha1(key.encode()).hexdigest() + ".json")


def token_cache_dir() -> str:
    """Read on each use: botocore fixes its own default when imported, which may be before HOME is known."""
    return os.path.expanduser(TOKEN_CACHE_DIR)


def sign_in_line(source: str, command: str) -> str:
    """What every shell and status says when an SSO source needs its person to sign in again."""
    return f"{source} needs a new sign-in: run {command}"


def sso_settings(profile_name: str, config: Mapping[str, Any]) -> SsoSettings:
    profile = config.get("profiles", {}).get(profile_name) or {}
    session_name = profile.get("sso_session")
    if session_name is None:
        return SsoSettings(profile_name, profile.get("sso_start_url"), None)
    section = config.get("sso_sessions", {}).get(session_name) or {}
    return SsoSettings(profile_name, section.get("sso_start_url"), str(session_name))


def token_json(value: Any) -> str:
    """How a refreshed token is written back: the cache format `aws sso login` writes (Z times)."""

    def default(item: Any) -> Any:
        if isinstance(item, datetime):
            return utc_text(item)
        raise TypeError(type(item).__name__)

    return json.dumps(value, default=default)


class SsoSource:
    """A SourceProvider calling GetRoleCredentials (through botocore) each time it is asked."""

    def __init__(self, spec: SourceSpec, *, config: DaemonConfig, clock: Clock) -> None:
        assert spec.profile is not None
        self.spec = spec
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._error: str | None = None
        self._held = False
        self._stamp: tuple[int, int, int] | None = None
        self._generation = 0
        self._signed_out_at: tuple[int, int, int] | None = None  # the token file's stamp when refused
        self.fetches = 0  # GetRoleCredentials attempts, for tests

    # -- SourceProvider -------------------------------------------------------------------------------

    def generation(self) -> int:
        """Changes whenever the token cache file does (`aws sso login`, or a refresh by any SDK)."""
        stamp = self._token_stamp(self._settings_or_none())
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                self._generation += 1
            return self._generation

    def credentials(self) -> SourceCredentials:
        spec = self.spec
        settings = self._settings()
        token = _read_token(settings)
        if not self._usable(token, settings):
            raise self._signed_out(settings)
        session = botocore.session.Session(profile=spec.profile)
        cache_dir = token_cache_dir()
        token_provider = None
        if settings.sso_session is not None:
            token_provider = botocore.tokens.SSOTokenProvider(
                session,
                cache=JSONFileCache(cache_dir, dumps_func=token_json),
                time_fetcher=self._clock.wall,
                profile_name=spec.profile,
            )
        provider = botocore.credentials.SSOProvider(
            load_config=lambda: session.full_config,
            client_creator=self._client_creator(session),
            profile_name=spec.profile,
            cache={},  # never botocore's cache: what is held, and for how long, is RenewAheadSource's call
            token_cache=JSONFileCache(cache_dir),
            token_provider=token_provider,
        )
        with self._lock:
            self.fetches += 1
        try:
            loaded = provider.load()
            if loaded is None:
                raise SourceError(
                    f"source {spec.name}: not an SSO profile (no sso_account_id, sso_role_name)",
                    transient=False,
                )
            frozen = loaded.get_frozen_credentials()
        except _SIGNED_OUT:
            raise self._signed_out(settings) from None
        except SourceError as error:
            self._record(error.message, held=False)
            raise
        except Exception as error:
            failure = source_failure(spec, error)
            self._record(failure.message, held=False)
            raise failure from None
        expiration = expiry_of(loaded)
        self._record(None, held=True)
        return credentials_of(frozen, SSO, expiration)

    def status(self) -> SourceStatus:
        settings = self._settings_or_none()
        sso = None
        if settings is not None:
            token = _read_token(settings)
            expires = _token_expiry(token)
            with self._lock:
                refused = self._signed_out_at is not None and self._signed_out_at == self._token_stamp(
                    settings
                )
            sso = SsoStatus(
                start_url=settings.start_url,
                sso_session=settings.sso_session,
                token_expires_at=expires,
                needs_sign_in=refused or not self._usable(token, settings),
                sign_in_command=settings.sign_in_command,
            )
        with self._lock:
            return SourceStatus(self.spec.name, SSO, None, self._error, True if self._held else None, sso=sso)

    # -- internals -----------------------------------------------------------------------------------

    def _settings(self) -> SsoSettings:
        assert self.spec.profile is not None
        try:
            return sso_settings(self.spec.profile, aws_config())
        except Exception as error:
            raise source_failure(self.spec, error) from None

    def _settings_or_none(self) -> SsoSettings | None:
        try:
            return self._settings()
        except SourceError:
            return None

    def _usable(self, token: Mapping[str, Any] | None, settings: SsoSettings) -> bool:
        """A cached token not yet expired on the daemon's clock, or one botocore can refresh by itself."""
        if token is None:
            return settings.start_url is None  # no start URL: let botocore say what is missing
        expires = _token_expiry(token)
        now = self._clock.wall()
        if expires is not None and expires > now:
            return True
        if settings.sso_session is None or not all(key in token for key in _REFRESH_KEYS):
            return False
        try:
            return parse_timestamp(token["registrationExpiresAt"]) > now
        except (TypeError, ValueError):
            return False

    def _signed_out(self, settings: SsoSettings) -> SourceError:
        message = sign_in_line(self.spec.short_name, settings.sign_in_command)
        stamp = self._token_stamp(settings)
        with self._lock:
            first = self._signed_out_at != stamp
            self._signed_out_at = stamp
            self._error = message
            self._held = False
        if first:  # once per token: the sessions waiting on it log their own refusal
            log.warning(
                "SSO token for %s is missing, expired or refused; sign in again: %s",
                settings.start_url,
                settings.sign_in_command,
            )
        return SourceError(message, transient=False, code=protocol.SIGN_IN_REQUIRED)

    def _record(self, error: str | None, *, held: bool) -> None:
        with self._lock:
            self._error = error
            self._held = held
            if held:
                self._signed_out_at = None

    def _client_creator(self, session: botocore.session.Session) -> Any:
        """botocore's client creator with the daemon's short timeouts and no retries of its own."""
        limits = botocore.config.Config(
            connect_timeout=self._config.sts_connect_timeout,
            read_timeout=self._config.sts_read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        )

        def create_client(
            service_name: str, config: botocore.config.Config | None = None, **kwargs: Any
        ) -> Any:
            merged = config.merge(limits) if config is not None else limits
            return session.create_client(service_name, config=merged, **kwargs)

        return create_client

    @staticmethod
    def _token_stamp(settings: SsoSettings | None) -> tuple[int, int, int] | None:
        path = settings.token_file if settings is not None else None
        if path is None:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        return (info.st_ino, info.st_mtime_ns, info.st_size)


def _read_token(settings: SsoSettings) -> dict[str, Any] | None:
    """The cached token (botocore's loader and file cache), or None when there is none usable."""
    if settings.start_url is None:
        return None
    try:
        token = SSOTokenLoader(cache=JSONFileCache(token_cache_dir()))(
            settings.start_url, session_name=settings.sso_session
        )
    except (boto_errors.SSOTokenLoadError, KeyError, ValueError, OSError):
        return None
    return token if isinstance(token, dict) else None


def _token_expiry(token: Mapping[str, Any] | None) -> datetime | None:
    if token is None:
        return None
    try:
        return parse_timestamp(token["expiresAt"]).astimezone(timezone.utc)
    except (KeyError, TypeError, ValueError):
        return None
