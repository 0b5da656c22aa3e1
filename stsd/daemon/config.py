"""DaemonConfig: the daemon's tunables, read strictly from $XDG_CONFIG_HOME/stsd/config.toml (optional).

Windows follow the SDKs' refresh windows (botocore: 15 min advisory, 10 min mandatory): renew at least 20 min ahead, never hand out less than 15 min while a
renewal is possible.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from stsd import aws_values
from stsd.variables import CREDENTIAL_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

FALLBACK_REGION = "us-east-1"


class ConfigError(Exception):
    """The config file is unreadable or invalid; str() is one line naming the file and the key."""


def default_role_session_name() -> str:
    """`stsd-<user>@<host>`, reduced to what STS accepts as a RoleSessionName."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        user = str(os.getuid())
    host = socket.gethostname().split(".")[0] or "host"
    return aws_values.session_name(f"stsd-{user}@{host}")


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or FALLBACK_REGION


@dataclass(frozen=True)
class SourceSettings:
    """How the daemon keeps one source profile's GetSessionToken (MFA) session."""

    mfa_session_duration: int = aws_values.SESSION_TOKEN_DEFAULT_SECONDS
    mfa_process: tuple[str, ...] | None = None  # argv of a program that prints a one-time code


@dataclass(frozen=True)
class DaemonConfig:
    renew_before_seconds: int = 1200
    renew_jitter_seconds: int = 120
    min_remaining_seconds: int = 900
    idle_timeout_seconds: int = 8 * 3600
    sts_connect_timeout: float = 3
    sts_read_timeout: float = 10
    backoff_initial_seconds: float = 5
    backoff_max_seconds: float = 300
    region: str = field(default_factory=default_region)
    role_session_name: str = field(default_factory=default_role_session_name)
    idle_exit_seconds: int | None = None
    # How projects that do not say hand out credentials: "env" (variables) or "endpoint" (the loopback
    # credentials endpoint); stsd.variables.CREDENTIAL_MODES.
    credentials: str = "env"
    forced_renewal_interval_seconds: int = 60  # `stsd renew`: at most one forced renewal per session per this
    endpoint_port: int = 0  # 0: a random free port at each start
    # Endpoint mode exports AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (a 0600 file) instead of the token itself;
    # only SDKs that read that variable can then use the endpoint (README: Credentials endpoint).
    endpoint_token_file: bool = False
    endpoint_requests_per_second: int = 200  # per project token; bursts of twice this (at least 400)
    mfa_session_duration: int = aws_values.SESSION_TOKEN_DEFAULT_SECONDS
    mfa_process: tuple[str, ...] | None = None
    profiles: Mapping[str, SourceSettings] = field(default_factory=lambda: MappingProxyType({}))

    def source_settings(self, profile: str | None) -> SourceSettings:
        """The [profiles.NAME] table of a source profile, else the top-level settings."""
        own = self.profiles.get(profile) if profile is not None else None
        return own or SourceSettings(self.mfa_session_duration, self.mfa_process)

    @property
    def sts_wait_seconds(self) -> float:
        """How long a caller waits for one STS round trip (source loading included) before giving up."""
        return self.sts_connect_timeout + self.sts_read_timeout + 5


# key -> (accepted types, what the error says is expected, extra check)
_NON_NEGATIVE_INT = ((int,), "a whole number of seconds >= 0", lambda v: v >= 0)
_POSITIVE_NUMBER = ((int, float), "a number of seconds > 0", lambda v: v > 0)
_RULES: dict[str, tuple[tuple[type, ...], str, Any]] = {
    "renew_before_seconds": _NON_NEGATIVE_INT,
    "renew_jitter_seconds": _NON_NEGATIVE_INT,
    "min_remaining_seconds": _NON_NEGATIVE_INT,
    "idle_timeout_seconds": ((int,), "a whole number of seconds > 0", lambda v: v > 0),
    "sts_connect_timeout": _POSITIVE_NUMBER,
    "sts_read_timeout": _POSITIVE_NUMBER,
    "backoff_initial_seconds": _POSITIVE_NUMBER,
    "backoff_max_seconds": _POSITIVE_NUMBER,
    "region": ((str,), aws_values.REGION.expected, aws_values.REGION.accepts),
    "role_session_name": ((str,), aws_values.SESSION_NAME.expected, aws_values.SESSION_NAME.accepts),
    "idle_exit_seconds": ((int,), "a whole number of seconds > 0", lambda v: v > 0),
    "forced_renewal_interval_seconds": ((int,), "a whole number of seconds > 0", lambda v: v > 0),
    "credentials": ((str,), " or ".join(f'"{m}"' for m in CREDENTIAL_MODES), CREDENTIAL_MODES.__contains__),
    "endpoint_port": ((int,), "a port number 0-65535 (0: random)", lambda v: 0 <= v <= 65535),
    "endpoint_token_file": ((bool,), "true or false", lambda v: True),
    "endpoint_requests_per_second": ((int,), "a whole number > 0", lambda v: v > 0),
}
# Settings a [profiles.NAME] table may hold too (they apply to that source profile only).
_SOURCE_RULES: dict[str, tuple[tuple[type, ...], str, Any]] = {
    "mfa_session_duration": (
        (int,),
        aws_values.SESSION_TOKEN_DURATION.expected,
        aws_values.SESSION_TOKEN_DURATION.accepts,
    ),
    "mfa_process": (
        (str, list),
        'a command that prints a one-time code: "program arg ..." or ["program", "arg", ...]',
        lambda v: bool(_command(v)),
    ),
}
_RULES.update(_SOURCE_RULES)


def load_config(path: Path) -> DaemonConfig:
    """Read `path` strictly; a missing file means defaults. Raises ConfigError (one line)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return DaemonConfig()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    try:
        table = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None
    profiles = table.pop("profiles", {})
    values = _checked(path, table, _RULES, where="")
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: profiles: expected tables like [profiles.NAME] with mfa_process = ...")
    config = DaemonConfig(**values)
    if config.backoff_initial_seconds > config.backoff_max_seconds:
        raise ConfigError(f"{path}: backoff_max_seconds: expected >= backoff_initial_seconds")
    own: dict[str, SourceSettings] = {}
    for name, settings in profiles.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: profiles.{name}: expected a table ([profiles.{name}])")
        checked = _checked(path, settings, _SOURCE_RULES, where=f"profiles.{name}.")
        own[name] = SourceSettings(
            mfa_session_duration=checked.get("mfa_session_duration", config.mfa_session_duration),
            mfa_process=checked.get("mfa_process", config.mfa_process),
        )
    return DaemonConfig(**values, profiles=MappingProxyType(own))


def _checked(
    path: Path,
    table: Mapping[str, Any],
    rules: Mapping[str, tuple[tuple[type, ...], str, Any]],
    *,
    where: str,
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in rules:
            known = ", ".join(sorted([*rules, *(("profiles",) if not where else ())]))
            raise ConfigError(f"{path}: {where}{key}: unknown setting; expected one of {known}")
        types, expected, check = rules[key]
        # bool is an int subclass in Python; `renew_before_seconds = true` is a mistake, not 1.
        if (
            (isinstance(value, bool) and bool not in types)
            or not isinstance(value, types)
            or not check(value)
        ):
            raise ConfigError(f"{path}: {where}{key}: expected {expected}")
        values[key] = _command(value) if key == "mfa_process" else value
    return values


def _command(value: str | list[Any]) -> tuple[str, ...] | None:
    """A command line as argv (run without a shell, like botocore runs credential_process)."""
    if isinstance(value, list):
        ok = value and all(isinstance(part, str) and part and "\0" not in part for part in value)
        return tuple(value) if ok else None
    try:
        argv = shlex.split(value)
    except ValueError:
        return None
    return tuple(argv) if argv and "\0" not in value else None
