"""DaemonConfig: the daemon's tunables, read strictly from $XDG_CONFIG_HOME/stsd/config.toml (optional).

Windows follow AWS-FACTS.md: renew at least 20 min ahead, never hand out less than 15 min while a
renewal is possible.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stsd import aws_values
from stsd.variables import CREDENTIAL_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on older Pythons only
    import tomli as tomllib

FALLBACK_REGION = "us-east-1"
_SESSION_NAME_BAD_CHARS = re.compile(r"[^\w+=,.@-]")


class ConfigError(Exception):
    """The config file is unreadable or invalid; str() is one line naming the file and the key."""


def default_role_session_name() -> str:
    """`stsd-<user>@<host>`, reduced to what STS accepts as a RoleSessionName (2-64 of [\\w+=,.@-])."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        user = str(os.getuid())
    host = socket.gethostname().split(".")[0] or "host"
    name = _SESSION_NAME_BAD_CHARS.sub("-", f"stsd-{user}@{host}")
    return name[:64]


def default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or FALLBACK_REGION


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
    "region": ((str,), 'a region name like "eu-west-1"', aws_values.REGION.fullmatch),
    "role_session_name": (
        (str,),
        "2-64 characters of letters, digits and +=,.@_-",
        aws_values.SESSION_NAME.fullmatch,
    ),
    "idle_exit_seconds": ((int,), "a whole number of seconds > 0", lambda v: v > 0),
    "forced_renewal_interval_seconds": ((int,), "a whole number of seconds > 0", lambda v: v > 0),
    "credentials": ((str,), " or ".join(f'"{m}"' for m in CREDENTIAL_MODES), CREDENTIAL_MODES.__contains__),
    "endpoint_port": ((int,), "a port number 0-65535 (0: random)", lambda v: 0 <= v <= 65535),
    "endpoint_token_file": ((bool,), "true or false", lambda v: True),
    "endpoint_requests_per_second": ((int,), "a whole number > 0", lambda v: v > 0),
}


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
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in _RULES:
            known = ", ".join(sorted(_RULES))
            raise ConfigError(f"{path}: {key}: unknown setting; expected one of {known}")
        types, expected, check = _RULES[key]
        # bool is an int subclass in Python; `renew_before_seconds = true` is a mistake, not 1.
        if (
            (isinstance(value, bool) and bool not in types)
            or not isinstance(value, types)
            or not check(value)
        ):
            raise ConfigError(f"{path}: {key}: expected {expected}")
        values[key] = value
    config = DaemonConfig(**values)
    if config.backoff_initial_seconds > config.backoff_max_seconds:
        raise ConfigError(f"{path}: backoff_max_seconds: expected >= backoff_initial_seconds")
    return config
