"""SourceRegistry: the credentials that call STS, one provider per SourceSpec behind one interface, held in
memory and described (never revealed) for status.

Providers: BotocoreSource resolves a profile or credential_source with botocore's own machinery (reloaded
when ~/.aws/config or ~/.aws/credentials change); SessionTokenSource (stsd.daemon.session_token) keeps a
GetSessionToken session of such a source, with MFA when the spec names an mfa_serial; SsoSource
(stsd.daemon.sso) and ProcessSource (stsd.daemon.process) fetch an SSO profile's role credentials or run a
credential_process, each held by RenewAheadSource (stsd.daemon.renew_ahead) until due for renewal."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import botocore.config
import botocore.credentials
import botocore.session
from botocore import exceptions as boto_errors

from stsd import protocol
from stsd.daemon.clock import Clock, SystemClock
from stsd.daemon.config import DaemonConfig
from stsd.daemon.secret import Secret
from stsd.daemon.sts_calls import ClientFor, StsClients, client_environment
from stsd.daemon.sts_errors import FailureKind, classify, one_line

log = logging.getLogger(__name__)

# credential_source value (as in ~/.aws/config) -> the botocore provider that implements it.
CREDENTIAL_SOURCES = {
    "Environment": "env",
    "Ec2InstanceMetadata": "iam-role",
    "EcsContainer": "container-role",
}

# botocore's credential `method` -> the kind `status` shows.
_KINDS = {
    "shared-credentials-file": "static-keys",
    "config-file": "static-keys",
    "assume-role": "assume-role",
    "assume-role-with-web-identity": "web-identity",
    "sso": "sso",
    "login": "sso",
    "custom-process": "process",
    "iam-role": "instance-metadata",
    "env": "environment",
    "container-role": "container",
}

# Providers in botocore's default chain that do not come from the named profile: a profile source must
# not silently fall through to them (a typo'd profile would otherwise pick up the instance role).
_NOT_FROM_PROFILE = ("env", "container-role", "iam-role", "ec2-credentials-file", "boto-config")
# When a source profile holds static keys they win, even if it also names a role (AWS CLI semantics).
_NOT_WHEN_STATIC = ("assume-role", "assume-role-with-web-identity", "sso", "login", "custom-process")


@dataclass(frozen=True)
class SourceSpec:
    """Which credentials call STS: exactly one of a profile or a credential_source; with `session_token`,
    a GetSessionToken session of those (with MFA when `mfa_serial` is set, which implies it)."""

    profile: str | None = None
    credential_source: str | None = None
    mfa_serial: str | None = None
    session_token: bool = False

    def __post_init__(self) -> None:
        if (self.profile is None) == (self.credential_source is None):
            raise ValueError("SourceSpec needs exactly one of profile or credential_source")
        if self.mfa_serial is not None and not self.session_token:
            object.__setattr__(self, "session_token", True)  # MFA is only ever a GetSessionToken session

    @property
    def short_name(self) -> str:
        """The profile name (or credential_source), as messages to a person name it."""
        return str(self.profile if self.profile is not None else self.credential_source)

    @property
    def name(self) -> str:
        base = f"profile {self.profile}" if self.profile is not None else str(self.credential_source)
        if self.mfa_serial is not None:
            return f"{base} (MFA session)"
        return f"{base} (session token)" if self.session_token else base

    @property
    def base(self) -> SourceSpec:
        """The long-term credentials a GetSessionToken session is asked with."""
        return SourceSpec(profile=self.profile, credential_source=self.credential_source)


@dataclass(frozen=True)
class SourceCredentials:
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret | None
    kind: str
    # Known for sessions stsd keeps itself (GetSessionToken): the expiry STS stated, the deadline on the
    # daemon's own clock, and whether the provider can renew it without a person (no MFA code needed).
    expiration: datetime | None = None
    deadline: datetime | None = None
    renewable: bool = True
    # Set by a provider that holds credentials (RenewAheadSource): when it fetches new ones. Until then
    # asking again gives these same credentials, so a session serving them has nothing to renew.
    renews_at: datetime | None = None

    @property
    def temporary(self) -> bool:
        """Temporary credentials make AssumeRole "role chaining", capped at one hour."""
        return self.session_token is not None


@dataclass(frozen=True)
class SessionTokenStatus:
    """A GetSessionToken session as status shows it; `expires_at` is None while none is held."""

    mfa_serial: str | None
    expires_at: datetime | None
    needs_code: bool  # MFA without mfa_process and no usable session: `stsd mfa` is the way on
    ended_at: datetime | None  # when the last session ended, if it did
    mfa_process: bool
    last_error: str | None


@dataclass(frozen=True)
class SsoStatus:
    """An SSO source's sign-in as status shows it: the token `aws sso login` cached, never its value."""

    start_url: str | None
    sso_session: str | None  # None for a legacy profile (sso_start_url on the profile itself)
    token_expires_at: datetime | None  # None: no token cached
    needs_sign_in: bool  # no usable token, and none can be had without a person
    sign_in_command: str


@dataclass(frozen=True)
class SourceStatus:
    name: str
    kind: str | None
    identity_arn: str | None
    error: str | None
    temporary: bool | None
    session: SessionTokenStatus | None = None
    sso: SsoStatus | None = None
    expires_at: datetime | None = None  # the held temporary credentials' expiry (SSO, credential_process)


class SourceError(protocol.Refusal):
    """Source credentials could not be loaded: a refusal (`code` what a request that needed them gets,
    source_error unless said) that also carries the retry policy, which never goes on the wire:
    `transient` says whether retrying later may help, `kind` how the session manager treats it."""

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        kind: FailureKind | None = None,
        code: str = protocol.SOURCE_ERROR,
    ) -> None:
        super().__init__(code, message)
        self.transient = transient
        self.kind = kind or (FailureKind.TRANSIENT if transient else FailureKind.PERMANENT)


class SourceProvider(Protocol):
    """One source's credentials. The registry holds one provider per SourceSpec and asks only this."""

    spec: SourceSpec

    def credentials(self) -> SourceCredentials:
        """Current credentials (blocking: may call IMDS, SSO, a process or STS); raises SourceError."""
        ...

    def generation(self) -> int:
        """Changes whenever the provider holds new credentials obtained outside a files change (an MFA
        code), so a failure that "holds until something changes" knows to try again."""
        ...

    def status(self) -> SourceStatus:
        """What status shows; identity_arn is filled in by the registry. Never a secret."""
        ...


@dataclass(frozen=True)
class FileStamp:
    path: str
    mtime_ns: int
    size: int


def aws_files_fingerprint() -> tuple[FileStamp, ...]:
    """Identify the current contents of the AWS config and credentials files (mtime + size)."""
    stamps = []
    for variable, default in (
        ("AWS_CONFIG_FILE", "~/.aws/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    ):
        path = os.path.expanduser(os.environ.get(variable) or default)
        try:
            info = os.stat(path)
            stamps.append(FileStamp(path, info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append(FileStamp(path, -1, -1))
    return tuple(stamps)


_config_lock = threading.Lock()
_config_cache: tuple[tuple[FileStamp, ...], dict[str, Any]] | None = None


def aws_config() -> Mapping[str, Any]:
    """The AWS files as botocore merges them (credentials win): `profiles`, `sso_sessions`, ...

    Cached until the files change, so resolving a request does not re-read them each time.
    Raises botocore's ConfigParseError for a broken file.
    """
    global _config_cache
    fingerprint = aws_files_fingerprint()
    with _config_lock:
        if _config_cache is None or _config_cache[0] != fingerprint:
            _config_cache = (fingerprint, botocore.session.Session().full_config)
        return _config_cache[1]


def aws_profiles() -> Mapping[str, Mapping[str, Any]]:
    """Every profile of the config and credentials files, merged by botocore (credentials win)."""
    profiles: Mapping[str, Mapping[str, Any]] = aws_config().get("profiles", {})
    return profiles


# Keys of a [default] profile that make an SDK take credentials from it, ahead of the container provider
# (botocore's chain: env, assume-role, web identity, sso, credentials file, process, config file, ...).
_SHADOWING_KEYS = (
    "aws_access_key_id",
    "role_arn",
    "web_identity_token_file",
    "sso_session",
    "sso_start_url",
    "credential_process",
    "login_session",
)
_shadow_cache: tuple[tuple[FileStamp, ...], str | None] | None = None


def default_profile_shadow() -> str | None:
    """One line when the user's [default] profile holds credentials or a role that SDKs use before the
    credentials endpoint (the container provider comes after the profile providers in every SDK), naming
    the file and section to move; None when nothing shadows it. Read through botocore, never written."""
    global _shadow_cache
    fingerprint = aws_files_fingerprint()
    with _config_lock:
        if _shadow_cache is not None and _shadow_cache[0] == fingerprint:
            return _shadow_cache[1]
    import botocore.configloader

    found: str | None = None
    credentials_path, config_path = fingerprint[1].path, fingerprint[0].path
    for path, section, read in (
        (credentials_path, "[default]", lambda p: botocore.configloader.raw_config_parse(p).get("default")),
        (config_path, "[default]", lambda p: botocore.configloader.load_config(p)["profiles"].get("default")),
    ):
        try:
            profile = read(path) if os.path.exists(path) else None
        except Exception:  # a broken file is reported where it is used as a source, not here
            profile = None
        keys = [key for key in _SHADOWING_KEYS if profile and key in profile]
        if keys:
            found = (
                f"{path} {section} holds {', '.join(keys)}: AWS SDKs use it before the stsd endpoint; "
                "move it to a named section (e.g. [personal]) and name that as source_profile"
            )
            break
    with _config_lock:
        _shadow_cache = (fingerprint, found)
    return found


def has_static_keys(profile: Mapping[str, Any]) -> bool:
    return "aws_access_key_id" in profile


# What a profile's credentials are, decided as botocore's chain decides for a named profile: static keys
# win (see _NOT_WHEN_STATIC), then a role, then SSO (botocore's SSOProvider: either sso_ key of a role),
# then credential_process.
STATIC_KEYS = "static-keys"
ROLE = "assume-role"
SSO = "sso"
PROCESS = "process"
_SSO_ROLE_KEYS = ("sso_account_id", "sso_role_name")


def profile_kind(profile: Mapping[str, Any]) -> str | None:
    """STATIC_KEYS, ROLE, SSO or PROCESS; None when the profile gives no credentials by itself."""
    if has_static_keys(profile):
        return STATIC_KEYS
    if "role_arn" in profile:
        return ROLE
    if any(key in profile for key in _SSO_ROLE_KEYS):
        return SSO
    if "credential_process" in profile:
        return PROCESS
    return None


def credentials_of(
    frozen: botocore.credentials.ReadOnlyCredentials, kind: str, expiration: datetime | None = None
) -> SourceCredentials:
    """What botocore loaded, as a source's credentials; a stated `expiration` is also their deadline."""
    return SourceCredentials(
        access_key_id=frozen.access_key,
        secret_access_key=Secret(frozen.secret_key),
        session_token=Secret(frozen.token) if frozen.token else None,
        kind=kind,
        expiration=expiration,
        deadline=expiration,
    )


def expiry_of(credentials: botocore.credentials.Credentials) -> datetime | None:
    """When refreshable credentials botocore loaded expire (aware UTC), None for static ones. botocore
    keeps it in `_expiry_time` and offers no public accessor."""
    expiry = getattr(credentials, "_expiry_time", None)
    return expiry.astimezone(timezone.utc) if isinstance(expiry, datetime) else None


@dataclass(frozen=True)
class _Loaded:
    """A source as botocore resolved it; `credentials` refreshes itself if botocore made it refreshable."""

    credentials: botocore.credentials.Credentials
    kind: str
    fingerprint: tuple[FileStamp, ...]


class BotocoreSource:
    """A profile or credential_source resolved by botocore; loaded once, again when the AWS files change."""

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._error: str | None = None
        self._temporary: bool | None = None

    def generation(self) -> int:
        return 0  # only the files change botocore sources, and the registry watches those

    def credentials(self) -> SourceCredentials:
        spec = self.spec
        loaded = self._load()
        try:
            # Refreshable sources (a chained role, SSO, a process, IMDS) refresh themselves here.
            frozen = loaded.credentials.get_frozen_credentials()
            if not frozen.access_key or not frozen.secret_key:
                raise SourceError(f"source {spec.name}: no credentials", transient=False)
        except Exception as error:
            failure = error if isinstance(error, SourceError) else source_failure(spec, error)
            with self._lock:
                self._error = failure.message
            raise failure from None
        with self._lock:
            self._error = None
            self._temporary = bool(frozen.token)
        return credentials_of(frozen, loaded.kind)

    def status(self) -> SourceStatus:
        with self._lock:
            kind = self._loaded.kind if self._loaded else None
            return SourceStatus(self.spec.name, kind, None, self._error, self._temporary)

    def _load(self) -> _Loaded:
        # One load at a time: two sessions sharing a chained source assume it once.
        with self._load_lock:
            fingerprint = aws_files_fingerprint()
            with self._lock:
                loaded = self._loaded
            if loaded is not None and loaded.fingerprint == fingerprint:
                return loaded
            try:
                fresh = self._resolve(fingerprint)
            except SourceError as error:
                with self._lock:
                    self._loaded = None
                    self._error = error.message
                raise
            with self._lock:
                if self._loaded is not None:
                    log.info("source %s reloaded: the AWS config or credentials file changed", self.spec.name)
                self._loaded = fresh
                self._error = None
            return fresh

    def _resolve(self, fingerprint: tuple[FileStamp, ...]) -> _Loaded:
        spec = self.spec
        try:
            if spec.profile is not None:
                credentials = _resolve_profile(spec.profile)
            else:
                credentials = _resolve_credential_source(str(spec.credential_source))
        except SourceError:
            raise
        except Exception as error:
            raise source_failure(spec, error) from None
        if credentials is None:
            # botocore answers None both for "not configured" and for an instance-metadata or container
            # endpoint that did not answer; only the latter can come right on its own.
            from_endpoint = spec.credential_source in ("Ec2InstanceMetadata", "EcsContainer")
            raise SourceError(f"source {spec.name}: no credentials found", transient=from_endpoint)
        kind = _KINDS.get(str(credentials.method), str(credentials.method))
        return _Loaded(credentials, kind, fingerprint)


@dataclass
class _Identity:
    fingerprint: tuple[FileStamp, ...]
    arn: str | None
    error: str | None


@dataclass
class _Entry:
    provider: SourceProvider
    kind: str | None = None  # the profile's kind when the provider was made (profile_kind)
    asked: bool = False  # asked for directly (not only as the base of a session): status lists it
    identity: _Identity | None = field(default=None)


class SourceRegistry:
    """One provider per source, created on first use; hands out current credentials and STS clients."""

    def __init__(self, config: DaemonConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._entries: dict[SourceSpec, _Entry] = {}
        self._client_lock = threading.Lock()  # botocore sessions are not thread-safe; clients are
        self._client_sessions: dict[str | None, botocore.session.Session] = {}
        self._client_sessions_under: object = None
        self._loader: tuple[object, Any] | None = None  # (data path, botocore's loader of it)
        self._clients = StsClients(self._new_sts_client, settings=self._client_settings)

    def fingerprint(self) -> tuple[FileStamp, ...]:
        return aws_files_fingerprint()

    def generation(self, spec: SourceSpec) -> tuple[tuple[FileStamp, ...], int]:
        """Identifies the source's state: changes when the AWS files change or the provider holds new
        credentials obtained otherwise (a session started with an MFA code)."""
        return self.fingerprint(), self._entry(spec).provider.generation()

    def provider(self, spec: SourceSpec) -> SourceProvider:
        return self._entry(spec).provider

    def credentials(self, spec: SourceSpec) -> SourceCredentials:
        """The source's current credentials (blocking: may call IMDS, SSO, a process or STS)."""
        entry = self._entry(spec)
        entry.asked = True
        return entry.provider.credentials()

    def unlock(self, spec: SourceSpec, code: str) -> SessionTokenStatus:
        """Start the MFA session of `spec` with a code from `stsd mfa` (blocking: calls STS)."""
        from stsd.daemon.session_token import SessionTokenSource

        entry = self._entry(spec)
        if not isinstance(entry.provider, SessionTokenSource) or spec.mfa_serial is None:
            raise SourceError(
                f"source {spec.name} has no mfa_serial; no MFA code is needed",
                transient=False,
                code=protocol.NO_MFA,
            )
        entry.asked = True
        return entry.provider.unlock(code)

    def sts_client(self, source: SourceCredentials, region: str, profile: str | None) -> Any:
        """An STS client signing with `source`, built once per source credentials, region and profile.

        `profile` is the AWS config profile whose endpoint and CA settings the call follows, as the AWS
        CLI's `aws --profile PROFILE sts ...` would: the source profile whose keys sign it (a role with a
        credential_source: the profile the role lives in). None is botocore's default profile
        (AWS_PROFILE, else [default]): what the CLI does with no --profile, for a role with no profile."""
        token = source.session_token.reveal() if source.session_token else None
        return self._clients.client(
            source.access_key_id, source.secret_access_key.reveal(), token, region, profile
        )

    def _client_settings(self) -> tuple[object, ...]:
        """What else decides how botocore builds a client: the AWS files as they are now (their stamps,
        the same ones that reload sources) and the variables botocore reads."""
        return (aws_files_fingerprint(), client_environment())

    def _new_sts_client(self, order: ClientFor) -> Any:
        """Built by botocore from a session of the profile, so endpoint_url, [services] sections,
        ignore_configured_endpoint_urls, sts_regional_endpoints and ca_bundle (and their AWS_* variables)
        apply as botocore applies them. Short timeouts and no botocore retries: the session manager
        retries with its own backoff, and a caller waiting on a prompt must not wait for both."""
        client_config = botocore.config.Config(
            connect_timeout=self._config.sts_connect_timeout,
            read_timeout=self._config.sts_read_timeout,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
        with self._client_lock:
            session = self._client_session(order.profile, order.settings)
            return session.create_client(
                "sts",
                region_name=order.region,  # without one botocore would use the global endpoint
                aws_access_key_id=order.access_key_id,
                aws_secret_access_key=order.secret,
                aws_session_token=order.token,
                config=client_config,
            )

    def _client_session(self, profile: str | None, settings: object) -> botocore.session.Session:
        """One botocore session per profile, made again when the settings change (a session reads the
        AWS files once). All share one loader while the data path stays (botocore's AWS_DATA_PATH or
        data_path): a new session then costs milliseconds, not the service models' load."""
        if self._client_sessions_under != settings:
            self._client_sessions = {}
            self._client_sessions_under = settings
        session = self._client_sessions.get(profile)
        if session is None:
            session = botocore.session.Session(profile=profile)
            data_path = session.get_config_variable("data_path")
            if self._loader is not None and self._loader[0] == data_path:
                session.register_component("data_loader", self._loader[1])
            else:
                self._loader = (data_path, session.get_component("data_loader"))
            self._client_sessions[profile] = session
        return session

    def identify(self, spec: SourceSpec) -> str | None:
        """The source's identity ARN (GetCallerIdentity), cached until the AWS files change. A session of
        a source is the same identity as the source, so it is asked with the long-term credentials (no
        MFA session needed). Failures are recorded for status, never raised."""
        self._entry(spec).asked = True
        entry = self._entry(spec.base)
        fingerprint = self.fingerprint()
        cached = entry.identity
        if cached is not None and cached.fingerprint == fingerprint and cached.arn is not None:
            return cached.arn
        try:
            source = entry.provider.credentials()
            # The long-term source's profile decides where GetCallerIdentity goes; a credential_source
            # is asked through the default profile (status only: the role's own calls follow its profile).
            reply = self.sts_client(source, self._config.region, spec.base.profile).get_caller_identity()
            arn, error = str(reply["Arn"]), None
        except SourceError as failure:
            arn, error = None, failure.message
        except Exception as failure:
            arn, error = None, classify(failure, action=f"GetCallerIdentity for {spec.base.name}").message
        with self._lock:
            entry.identity = _Identity(fingerprint, arn, error)
        return arn

    def statuses(self) -> list[SourceStatus]:
        """What status shows per source asked for so far; never a secret."""
        with self._lock:
            entries = [(spec, entry) for spec, entry in self._entries.items() if entry.asked]
        result = []
        for spec, entry in entries:
            status = entry.provider.status()
            base = self._entries.get(spec.base)
            identity = base.identity if base is not None else None
            result.append(
                SourceStatus(
                    name=status.name,
                    kind=status.kind,
                    identity_arn=identity.arn if identity else None,
                    error=status.error or (identity.error if identity else None),
                    temporary=status.temporary,
                    session=status.session,
                    sso=status.sso,
                    expires_at=status.expires_at,
                )
            )
        return result

    def _entry(self, spec: SourceSpec) -> _Entry:
        kind = self._kind(spec)
        with self._lock:
            entry = self._entries.get(spec)
            if entry is not None and entry.kind == kind:
                return entry
        if spec.session_token:
            from stsd.daemon.session_token import SessionTokenSource

            base = self._entry(spec.base).provider
            provider: SourceProvider = SessionTokenSource(
                spec,
                base=base,
                settings=self._config.source_settings(spec.profile),
                config=self._config,
                clock=self._clock,
                sts_client=self.sts_client,
            )
        elif kind in (SSO, PROCESS):
            from stsd.daemon.process import ProcessSource
            from stsd.daemon.renew_ahead import RenewAheadSource
            from stsd.daemon.sso import SsoSource

            fetching = (
                SsoSource(spec, config=self._config, clock=self._clock)
                if kind == SSO
                else ProcessSource(spec)
            )
            provider = RenewAheadSource(fetching, config=self._config, clock=self._clock)
        else:
            provider = BotocoreSource(spec)
        with self._lock:
            entry = self._entries.get(spec)
            if entry is None or entry.kind != kind:
                if entry is not None:
                    log.info("source %s is now of another kind (%s): the AWS config changed", spec.name, kind)
                entry = self._entries[spec] = _Entry(provider, kind=kind)
            return entry

    def _kind(self, spec: SourceSpec) -> str | None:
        """The profile's kind as the AWS files say now (cached until they change), which picks its provider."""
        if spec.profile is None or spec.session_token:
            return None
        try:
            profile = aws_profiles().get(spec.profile)
        except Exception:  # a broken file: BotocoreSource reports it in one line
            return None
        return profile_kind(profile) if profile is not None else None


def _resolve_profile(name: str) -> botocore.credentials.Credentials | None:
    session = botocore.session.Session(profile=name)
    profile = session.full_config.get("profiles", {}).get(name)
    if profile is None:
        raise SourceError(
            f"source profile {name!r} is not in your AWS config or credentials file", transient=False
        )
    resolver = botocore.credentials.create_credential_resolver(session)
    for method in _NOT_FROM_PROFILE + (_NOT_WHEN_STATIC if has_static_keys(profile) else ()):
        resolver.remove(method)
    return resolver.load_credentials()


def _resolve_credential_source(source: str) -> botocore.credentials.Credentials | None:
    method = CREDENTIAL_SOURCES.get(source)
    if method is None:
        expected = ", ".join(CREDENTIAL_SOURCES)
        raise SourceError(f"credential_source {source!r}: expected one of {expected}", transient=False)
    # A profile-less session: its resolver carries botocore's configured providers (IMDS endpoint and
    # IMDSv2 settings, container URIs) exactly as an SDK on this machine would use them.
    session = botocore.session.Session()
    resolver = botocore.credentials.create_credential_resolver(session)
    return resolver.get_provider(method).load()


def source_failure(spec: SourceSpec, error: BaseException) -> SourceError:
    """A botocore error loading `spec` as one SourceError: permanent for configuration, transient else."""
    name = type(error).__name__
    if isinstance(error, boto_errors.ProfileNotFound):
        return SourceError(f"source {spec.name}: profile not found: {one_line(error)}", transient=False)
    if isinstance(
        error, (boto_errors.ClientError, boto_errors.HTTPClientError, boto_errors.EndpointConnectionError)
    ):
        # A chained source (a role profile) failed its own AssumeRole.
        failure = classify(error, action=f"source {spec.name}")
        return SourceError(
            failure.message, transient=failure.kind is FailureKind.TRANSIENT, kind=failure.kind
        )
    if isinstance(
        error,
        (
            boto_errors.ConfigParseError,
            boto_errors.PartialCredentialsError,
            boto_errors.InvalidConfigError,
            boto_errors.InfiniteLoopConfigError,
            boto_errors.UnknownCredentialError,
        ),
    ):
        return SourceError(f"source {spec.name}: {one_line(error)}", transient=False)
    if isinstance(error, (boto_errors.BotoCoreError, OSError)):
        # SSO token missing or expired, credential_process failed, IMDS/container unreachable: the user
        # may fix these outside the watched files (aws sso login), so keep retrying with backoff.
        return SourceError(f"source {spec.name}: {one_line(error)}", transient=True)
    log.exception("unexpected error loading source %s", spec.name)
    return SourceError(f"source {spec.name}: {name}; see the daemon log", transient=True)
