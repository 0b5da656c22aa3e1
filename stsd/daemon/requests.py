"""RoleRequest: one fully resolved, validated request for a session (one session per distinct request):
AssumeRole from a source, or a source's own temporary credentials when a profile without a role governs (a
GetSessionToken session of a profile with access keys, an SSO profile's role credentials, a
credential_process). Built from a project's RoleSettings or a ~/.aws/config profile, read through botocore."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from botocore import exceptions as boto_errors

from stsd import aws_values
from stsd.daemon.config import DaemonConfig
from stsd.daemon.sources import (
    PROCESS,
    SSO,
    STATIC_KEYS,
    SourceSpec,
    aws_profiles,
    has_static_keys,
    profile_kind,
)
from stsd.daemon.sts_errors import one_line
from stsd.protocol import INVALID_PROJECT, UNKNOWN_PROFILE, Refusal

if TYPE_CHECKING:
    from stsd.project.projectfile import RoleSettings

ROLE_KEYS = (
    "role_arn",
    "source_profile",
    "credential_source",
    "external_id",
    "role_session_name",
    "duration_seconds",
    "region",
    "mfa_serial",
)
_SOURCE_KEYS = ("source_profile", "credential_source")
# Keys that mean something only next to a role: refused for a profile without a role.
_ROLE_ONLY_KEYS = (
    "source_profile",
    "credential_source",
    "external_id",
    "role_session_name",
    "duration_seconds",
)


@dataclass(frozen=True)
class RoleRequest:
    """One session per distinct request; `label` only says what status shows, so it is not identity.

    With `role_arn` None there is no role: the session is the source's own temporary credentials (a
    GetSessionToken session when the source spec says so, an SSO profile's, a credential_process's), never
    long-term keys."""

    source: SourceSpec
    role_arn: str | None
    external_id: str | None
    session_name: str | None  # None without a role
    duration_seconds: int | None  # None = the STS default (3600 s)
    region: str
    label: str = field(default="", compare=False)
    # For a credential_source source only: the role profile it comes from (see sts_profile).
    role_profile: str | None = None

    @property
    def account(self) -> str | None:
        return self.role_arn.split(":")[4] if self.role_arn else None

    @property
    def mfa_serial(self) -> str | None:
        return self.source.mfa_serial

    @property
    def sts_profile(self) -> str | None:
        """The AWS config profile whose endpoint and CA settings (endpoint_url, [services], ca_bundle...)
        the STS calls follow. The source profile, as for `aws --profile SOURCE sts assume-role`. A
        credential_source has no profile of its own: the role profile it lives in, whose settings the AWS
        CLI's AssumeRole for that profile uses; a role with no profile at all (inline in .stsd.toml)
        gets None, botocore's default profile (AWS_PROFILE, else [default]), as the CLI with no --profile."""
        return self.source.profile if self.source.profile is not None else self.role_profile


@dataclass(frozen=True)
class _Value:
    """A setting and where it came from, so an error blames the right file with the right code."""

    value: Any
    origin: str  # "<project label>" or "profile NAME"
    code: str


def resolve_request(settings: RoleSettings, *, label: str, config: DaemonConfig) -> RoleRequest:
    """Merge a project's settings over the profile it names (`profile =`) and validate the result."""
    values: dict[str, _Value] = {}
    profiles: Mapping[str, Mapping[str, Any]] = {}
    if settings.profile is not None or settings.source_profile is not None:
        profiles = _load_profiles(label)
    inline = {key: getattr(settings, key) for key in ROLE_KEYS if getattr(settings, key, None) is not None}
    if (
        settings.profile is not None
        and "role_arn" not in inline
        and _serves_itself(profiles.get(settings.profile))
    ):
        own = {key: _Value(value, label, INVALID_PROJECT) for key, value in inline.items()}
        return _session_request(settings.profile, profiles, own, label=label, config=config)
    if settings.profile is not None:
        if _serves_itself(profiles.get(settings.profile)):
            # A role next to a profile with credentials but no role: the profile is meant as the source.
            raise Refusal(
                INVALID_PROJECT,
                f"{label}: profile: {settings.profile!r} has no role_arn to take settings from; to assume "
                f'role_arn with its credentials, write source_profile = "{settings.profile}" instead',
            )
        values = _profile_values(settings.profile, profiles, origin=label)
    if any(key in inline for key in _SOURCE_KEYS):
        # The project names its own source: the profile's source keys do not mix with it.
        for key in _SOURCE_KEYS:
            values.pop(key, None)
    values.update({key: _Value(value, label, INVALID_PROJECT) for key, value in inline.items()})
    if "role_arn" not in values:
        raise Refusal(
            INVALID_PROJECT, f"{label}: role_arn: expected a role ARN or a role profile (profile =)"
        )
    return _build(values, profiles, own_profile=settings.profile, label=label, config=config)


def resolve_profile(name: str, *, config: DaemonConfig) -> RoleRequest:
    """The request a ~/.aws/config role profile describes (for `credential-process PROFILE`)."""
    label = f"profile {name}"
    profiles = _load_profiles(label)
    if _serves_itself(profiles.get(name)):
        return _session_request(name, profiles, {}, label=label, config=config)
    values = _profile_values(name, profiles, origin=label)
    return _build(values, profiles, own_profile=name, label=label, config=config)


def _serves_itself(profile: Mapping[str, Any] | None) -> bool:
    """A profile without a role whose own temporary credentials are served: access keys (as a
    GetSessionToken session), SSO, or a credential_process."""
    return (
        profile is not None
        and "role_arn" not in profile
        and profile_kind(profile) in (STATIC_KEYS, SSO, PROCESS)
    )


def _session_request(
    name: str,
    profiles: Mapping[str, Mapping[str, Any]],
    inline: Mapping[str, _Value],
    *,
    label: str,
    config: DaemonConfig,
) -> RoleRequest:
    """The request for a profile's own temporary credentials: a keys-only profile's GetSessionToken session
    (with MFA when it names one), an SSO profile's role credentials, a credential_process's answer."""
    where = f"profile {name}"
    profile = profiles[name]
    keys = has_static_keys(profile)
    what = {STATIC_KEYS: "has keys", SSO: "is an SSO profile", PROCESS: "runs a credential_process"}[
        str(profile_kind(profile))
    ]
    for key in _ROLE_ONLY_KEYS:
        if key in inline:
            _fail(
                inline[key],
                key,
                f"applies to a role; profile {name!r} {what} and no role_arn, so it gets a session of its own",
            )
    mfa_serial = inline.get("mfa_serial")
    if mfa_serial is None and "mfa_serial" in profile and keys:
        mfa_serial = _Value(profile["mfa_serial"], where, UNKNOWN_PROFILE)
    if mfa_serial is not None and not keys:
        _fail(
            mfa_serial,
            "mfa_serial",
            f"expected a profile with access keys; profile {name!r} {what}, and an MFA session "
            "(GetSessionToken) needs long-term keys",
        )
    region = inline.get("region")
    if region is None and "region" in profile:
        region = _Value(profile["region"], where, UNKNOWN_PROFILE)
    _check(region, "region", aws_values.REGION)
    return RoleRequest(
        source=SourceSpec(profile=name, session_token=keys, mfa_serial=_mfa_serial(mfa_serial)),
        role_arn=None,
        external_id=None,
        session_name=None,
        duration_seconds=None,
        region=str(region.value) if region else config.region,
        label=label,
    )


def _load_profiles(origin: str) -> Mapping[str, Mapping[str, Any]]:
    """The AWS files' profiles; a file botocore cannot parse is reported as a profile problem."""
    try:
        return aws_profiles()
    except boto_errors.BotoCoreError as error:
        raise Refusal(UNKNOWN_PROFILE, f"{origin}: cannot read the AWS config: {one_line(error)}") from None


def _profile_values(
    name: str, profiles: Mapping[str, Mapping[str, Any]], *, origin: str
) -> dict[str, _Value]:
    profile = profiles.get(name)
    if profile is None:
        raise Refusal(UNKNOWN_PROFILE, f"{origin}: profile {name!r} is not in your AWS config")
    if "role_arn" not in profile:
        raise Refusal(
            UNKNOWN_PROFILE,
            f"{origin}: profile {name!r} gives no credentials of its own: expected role_arn, access keys, "
            "an SSO account and role (sso_account_id, sso_role_name) or credential_process",
        )
    where = f"profile {name}"
    return {key: _Value(profile[key], where, UNKNOWN_PROFILE) for key in ROLE_KEYS if key in profile}


def _build(
    values: Mapping[str, _Value],
    profiles: Mapping[str, Mapping[str, Any]],
    *,
    own_profile: str | None,
    label: str,
    config: DaemonConfig,
) -> RoleRequest:
    role_arn = values["role_arn"]
    _check(role_arn, "role_arn", aws_values.ROLE_ARN)
    source = _source(values, profiles, own_profile=own_profile, label=label)
    external_id = values.get("external_id")
    _check(external_id, "external_id", aws_values.EXTERNAL_ID)
    session_name = values.get("role_session_name")
    _check(session_name, "role_session_name", aws_values.SESSION_NAME)
    region = values.get("region")
    _check(region, "region", aws_values.REGION)
    source = _with_mfa(source, values.get("mfa_serial"), profiles)
    return RoleRequest(
        source=source,
        role_arn=role_arn.value,
        external_id=str(external_id.value) if external_id else None,
        session_name=str(session_name.value) if session_name else config.role_session_name,
        duration_seconds=_duration(values.get("duration_seconds")),
        region=str(region.value) if region else config.region,
        label=label,
        role_profile=own_profile if source.credential_source is not None else None,
    )


def _with_mfa(
    source: SourceSpec, mfa_serial: _Value | None, profiles: Mapping[str, Mapping[str, Any]]
) -> SourceSpec:
    """The source as an MFA session when the role (project or role profile) or the source profile names an
    mfa_serial: the daemon holds one GetSessionToken session with MFA per source and assumes roles from it."""
    source_profile = profiles.get(source.profile) if source.profile is not None else None
    if (
        mfa_serial is None
        and source_profile is not None
        and has_static_keys(source_profile)
        and "mfa_serial" in source_profile
    ):
        mfa_serial = _Value(source_profile["mfa_serial"], f"profile {source.profile}", UNKNOWN_PROFILE)
    serial = _mfa_serial(mfa_serial)
    if serial is None or mfa_serial is None:
        return source
    if source.credential_source is not None:
        _fail(
            mfa_serial,
            "mfa_serial",
            "expected a source_profile with access keys; an MFA session (GetSessionToken) needs long-term "
            "keys, which credential_source does not give",
        )
    if source_profile is None or not has_static_keys(source_profile):
        _fail(
            mfa_serial,
            "mfa_serial",
            f"expected source profile {source.profile!r} to hold access keys; an MFA session "
            "(GetSessionToken) needs long-term keys",
        )
    return SourceSpec(profile=source.profile, mfa_serial=serial)


def _mfa_serial(value: _Value | None) -> str | None:
    if value is None:
        return None
    _check(value, "mfa_serial", aws_values.MFA_SERIAL)
    return str(value.value)


def _source(
    values: Mapping[str, _Value],
    profiles: Mapping[str, Mapping[str, Any]],
    *,
    own_profile: str | None,
    label: str,
) -> SourceSpec:
    source_profile = values.get("source_profile")
    credential_source = values.get("credential_source")
    if source_profile is not None and credential_source is not None:
        _fail(
            credential_source,
            "credential_source",
            "expected either source_profile or credential_source, not both",
        )
    if credential_source is not None:
        _check(credential_source, "credential_source", aws_values.CREDENTIAL_SOURCE)
        return SourceSpec(credential_source=str(credential_source.value))
    if source_profile is None:
        role_arn = values["role_arn"]
        _fail(role_arn, "source_profile", "expected source_profile or credential_source next to role_arn")
    name = str(source_profile.value)
    _check_source_chain(name, profiles, source_profile, own_profile=own_profile)
    return SourceSpec(profile=name)


def _check_source_chain(
    start: str, profiles: Mapping[str, Mapping[str, Any]], blame: _Value, *, own_profile: str | None
) -> None:
    """Follow source_profile links the way botocore will, so a missing link or a cycle is reported now,
    in one line, rather than as botocore's error at the first AssumeRole."""
    chain: list[str] = []
    own = profiles.get(own_profile) if own_profile is not None else None
    if own_profile is not None and own is not None and not has_static_keys(own):
        chain.append(own_profile)  # a role profile sourcing itself without keys would loop
    name = start
    while True:
        if name in chain:
            _fail(blame, "source_profile", f"expected no cycle, found {' -> '.join([*chain, name])}")
        chain.append(name)
        profile = profiles.get(name)
        if profile is None:
            _fail(blame, "source_profile", f"profile {name!r} is not in your AWS config or credentials file")
        if not has_static_keys(profile) and "role_arn" in profile and "mfa_serial" in profile:
            # botocore would want to prompt for a code on each load; the daemon never prompts.
            _fail(
                blame,
                "source_profile",
                f"profile {name!r} is a role that needs MFA; put mfa_serial on the role you use "
                "(or on the profile with the keys), not on a role used as a source",
            )
        if has_static_keys(profile) or "role_arn" not in profile or "source_profile" not in profile:
            return
        name = str(profile["source_profile"])


def _duration(value: _Value | None) -> int | None:
    if value is None:
        return None
    raw = value.value
    try:
        seconds = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw).strip())
    except ValueError:
        seconds = None
    if not aws_values.ROLE_DURATION.accepts(seconds):
        _fail(value, "duration_seconds", aws_values.ROLE_DURATION.problem)
    return seconds


def _check(value: _Value | None, key: str, rule: aws_values.Rule) -> None:
    """Refuse `value` unless `rule` accepts it as text (as ~/.aws/config holds every value)."""
    if value is not None and not rule.accepts(str(value.value)):
        _fail(value, key, rule.problem)


def _fail(value: _Value, key: str, what: str) -> NoReturn:
    raise Refusal(value.code, f"{value.origin}: {key}: {what}")
