"""Find a project's `.stsd.toml` and parse it strictly: every problem is one line naming file, line and
key. Standard library only: the thin client and the daemon both use it."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from stsd import aws_values
from stsd.project import discovery
from stsd.variables import (
    CREDENTIAL_MODES,
    MANAGED_PREFIXES,
    MANAGED_VARIABLES,
    REGION_VARIABLES,
    is_aws_variable,
)

PROJECT_FILE_NAME = discovery.PROJECT_FILE_NAME
MAX_FILE_BYTES = 64 * 1024  # a project file is a dozen lines; anything bigger is a mistake or an attack

# key -> what its value must be (stsd.aws_values: one definition for project files, profiles and config)
_RULES = {
    "profile": aws_values.PROFILE_NAME,
    "source_profile": aws_values.PROFILE_NAME,
    "role_arn": aws_values.ROLE_ARN,
    "role_session_name": aws_values.SESSION_NAME,
    "external_id": aws_values.EXTERNAL_ID,
    "mfa_serial": aws_values.MFA_SERIAL,
    "region": aws_values.REGION,
    "credential_source": aws_values.CREDENTIAL_SOURCE,
    "duration_seconds": aws_values.ROLE_DURATION,
}
_TOML_POSITION = re.compile(
    r"^(?P<message>.*?) \(at (?:line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$"
)
_TABLE_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]*?)\s*\]")


@dataclass(frozen=True)
class RoleSettings:
    """The role keys of a project file, named as in ~/.aws/config; all optional here."""

    profile: str | None = None
    role_arn: str | None = None
    source_profile: str | None = None
    credential_source: str | None = None
    external_id: str | None = None
    role_session_name: str | None = None
    duration_seconds: int | None = None
    region: str | None = None
    mfa_serial: str | None = None


SETTING_KEYS = tuple(f.name for f in fields(RoleSettings))
ALLOWED_KEYS = (*SETTING_KEYS, "credentials", "env")


@dataclass(frozen=True)
class ProjectFile:
    """One parsed, validated `.stsd.toml` and the exact bytes it was parsed from (trust hashes those)."""

    path: Path  # absolute, not resolved through symlinks
    content: bytes
    settings: RoleSettings
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    credentials: str | None = None  # "env" or "endpoint"; None: the daemon's default (config.toml)

    @property
    def name(self) -> str:
        """A short name for prompts (STSD_PROFILE): the profile, else the role's name."""
        if self.settings.profile:
            return self.settings.profile
        return (self.settings.role_arn or "").rsplit("/", 1)[-1]


class ProjectFileError(Exception):
    """A project file that cannot be used; str() is one line: "<file>:<line>: <key>: <what is expected>"."""

    def __init__(self, path: Path, problem: str, *, line: int | None = None, key: str | None = None) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.problem = problem
        location = f"{path}:{line}" if line is not None else f"{path}"
        subject = f" {_printable(key)}:" if key is not None else ""
        super().__init__(_one_line(f"{location}:{subject} {problem}"))


def find_project_file(start: Path) -> Path | None:
    """The `.stsd.toml` governing `start` (stsd.project.discovery.discover: nearest walking up, logical
    path, another user's file passed over), or None."""
    found = discovery.find_project_file(os.fspath(start))
    return Path(found) if found else None


def load_project_file(path: Path) -> ProjectFile:
    """Read and strictly validate a project file; raises ProjectFileError (one line)."""
    path = Path(os.path.abspath(path))
    content = _read_regular_file(path)
    text = _decode(path, content)
    document = _parse_toml(path, text)
    locate = _KeyLocator(path, text)
    settings = _role_settings(document, locate)
    env = _env_extras(document.get("env", {}), locate)
    mode = document.get("credentials")
    if mode is not None and (not isinstance(mode, str) or mode not in CREDENTIAL_MODES):
        expected = " or ".join(f'"{m}"' for m in CREDENTIAL_MODES)
        got = f'"{mode}"' if isinstance(mode, str) else _toml_type(mode)
        raise locate.error("credentials", f"expected {expected}, got {_printable_value(got)}")
    return ProjectFile(
        path=path, content=content, settings=settings, env=MappingProxyType(env), credentials=mode
    )


def _read_regular_file(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses anything not a plain file.
    # O_NOFOLLOW: a link would make the project's credentials depend on a file elsewhere, perhaps writable
    # by others, while the user reviewed and trusted what is in the project.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ELOOP and not path.exists():
            raise ProjectFileError(path, "cannot be read: a symbolic link to a missing file") from None
        if error.errno == errno.ELOOP:
            raise ProjectFileError(
                path, "is a symbolic link; expected a plain file in the project (copy it instead of linking)"
            ) from None
        raise ProjectFileError(path, f"cannot be read: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        # Discovery passes such files over; this also covers a path given by hand and a file swapped in
        # between discovery and this open.
        if info.st_uid not in (os.getuid(), discovery.ROOT_UID):
            raise ProjectFileError(
                path, f"is owned by uid {info.st_uid}, not you or root; expected your own file (copy it)"
            )
        if stat.S_ISDIR(info.st_mode):
            raise ProjectFileError(path, "is a directory; expected a plain TOML file")
        if not stat.S_ISREG(info.st_mode):
            raise ProjectFileError(
                path, "is not a regular file (FIFO, socket or device); expected a plain TOML file"
            )
        if info.st_size > MAX_FILE_BYTES:
            raise ProjectFileError(path, f"is {info.st_size} bytes; expected at most {MAX_FILE_BYTES}")
        chunks = []
        remaining = MAX_FILE_BYTES + 1  # the file may grow after fstat
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as error:
        raise ProjectFileError(path, f"cannot be read: {error.strerror}") from None
    finally:
        os.close(fd)
    content = b"".join(chunks)
    if len(content) > MAX_FILE_BYTES:
        raise ProjectFileError(path, f"is over {MAX_FILE_BYTES} bytes; expected at most {MAX_FILE_BYTES}")
    return content


def _decode(path: Path, content: bytes) -> str:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as error:
        line = content[: error.start].count(b"\n") + 1
        raise ProjectFileError(
            path, f"not valid UTF-8 (byte 0x{content[error.start]:02x}); expected UTF-8 text", line=line
        ) from None
    return text.removeprefix("\ufeff")  # a BOM some editors add is not content


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text)
    except RecursionError:  # tomllib recurses per nesting level; a hostile file must not crash the reader
        raise ProjectFileError(
            path, "nested too deeply; expected a flat file of keys and one [env] table"
        ) from None
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = _TOML_POSITION.match(message)
        if match is None:
            raise ProjectFileError(path, f"invalid TOML: {message}", line=1) from None
        if match["line"] is None:
            line, where = text.count("\n") + 1, "at end of file"
        else:
            line, where = int(match["line"]), f"at column {match['column']}"
        problem = f"invalid TOML: {match['message']} {where}"
        hint = _quote_hint(text, line) if match["message"] == "Invalid value" else ""
        raise ProjectFileError(path, problem + hint, line=line) from None


# `key = bare-word`, as pasted from ~/.aws/config (INI needs no quotes, TOML does).
_UNQUOTED_VALUE = re.compile(r"^\s*(?P<key>[A-Za-z0-9_-]+)\s*=\s*(?P<value>[^\s\"'\[{#][^#]*?)\s*(?:#.*)?$")


def _quote_hint(text: str, line: int) -> str:
    lines = text.split("\n")
    match = _UNQUOTED_VALUE.match(lines[line - 1]) if 0 < line <= len(lines) else None
    if match is None:
        return ""
    value = match["value"].replace("\\", "\\\\").replace('"', '\\"')
    return f'; values are quoted in TOML: {match["key"]} = "{value}"'


class _KeyLocator:
    """Finds the line a key is written on, so errors point at it (tomllib keeps no positions)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.split("\n")  # TOML newlines only; str.splitlines also splits on \x0c etc.

    def error(self, key: str, problem: str, *, table: str | None = None) -> ProjectFileError:
        shown = f"{table}.{key}" if table else key
        return ProjectFileError(self.path, problem, line=self.line_of(key, table), key=shown)

    def line_of(self, key: str, table: str | None = None) -> int:
        """Best effort: the first line that assigns `key` (in `table`), else 1."""
        name = _quoted_key(key)
        assignment = re.compile(rf"^\s*{name}\s*[=.]")
        if table is None:
            header = re.compile(rf"^\s*\[\[?\s*{name}\s*[\].]")
            outside = re.compile(r"(?!)")  # top-level keys are only written at the top level
        else:
            parent = _quoted_key(table)
            header = re.compile(rf"^\s*\[\[?\s*{parent}\s*\.\s*{name}\s*[\].]")  # [env.KEY]
            # env.KEY = ... or env = { ..., KEY = ... } written at the top level
            outside = re.compile(rf"^\s*{parent}\s*\.\s*{name}\s*=|^\s*{parent}\s*=.*[{{,]\s*{name}\s*=")
        current: str | None = None
        for number, line in enumerate(self.lines, 1):
            found = _TABLE_HEADER.match(line)
            if found:
                if header.match(line):
                    return number
                current = found["name"].strip("\"'")
            elif (current == table and assignment.match(line)) or (current is None and outside.match(line)):
                return number
        return 1


def _quoted_key(key: str) -> str:
    escaped = re.escape(key)
    return rf"(?:{escaped}|\"{escaped}\"|'{escaped}')"


def _role_settings(document: Mapping[str, Any], locate: _KeyLocator) -> RoleSettings:
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key == "env":
            if not isinstance(value, dict):
                raise locate.error(key, 'expected a table of variables: [env] then AWS_NAME = "value" lines')
            continue
        if key == "credentials":
            continue  # not a role setting: checked by load_project_file
        if key not in SETTING_KEYS:
            raise locate.error(key, f"unknown key; {_suggestion(key)}")
        problem = _check_setting(key, value)
        if problem:
            raise locate.error(key, problem)
        values[key] = value
    settings = RoleSettings(**values)
    if settings.source_profile is not None and settings.credential_source is not None:
        raise locate.error(
            "credential_source", "expected either source_profile or credential_source, not both"
        )
    if settings.profile is None and settings.role_arn is None:
        raise locate.error(
            "role_arn", 'expected role_arn = "arn:aws:iam::<account>:role/<name>" or profile = "<name>"'
        )
    if settings.profile is None and settings.source_profile is None and settings.credential_source is None:
        raise locate.error(
            "role_arn",
            "expected source_profile (or credential_source) to say which credentials assume the role",
        )
    return settings


def _check_setting(key: str, value: Any) -> str | None:
    """What is wrong with one setting's value, or None."""
    rule = _RULES[key]
    if rule.accepts(value):
        return None
    if rule.pattern is not None or rule.choices:
        if not isinstance(value, str):
            return f"expected a string, got {_toml_type(value)}"
        return rule.problem
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{rule.problem}, got {value}"
    return f"{rule.problem}, got {_toml_type(value)}"


def _env_extras(table: Mapping[str, Any], locate: _KeyLocator) -> dict[str, str]:
    env: dict[str, str] = {}
    for name, value in table.items():
        if not is_aws_variable(name):
            problem = "expected an AWS_* variable name (capitals, digits, _); stsd sets only AWS variables"
            raise locate.error(name, problem, table="env")
        if name in REGION_VARIABLES:
            raise locate.error(name, 'set by stsd from region; expected region = "..." instead', table="env")
        if name in MANAGED_VARIABLES or name.startswith(MANAGED_PREFIXES):
            raise locate.error(name, "managed by stsd (credentials or their source); remove it", table="env")
        if not isinstance(value, str):
            raise locate.error(name, f"expected a string, got {_toml_type(value)}", table="env")
        if "\x00" in value:
            raise locate.error(name, "expected a string without NUL characters", table="env")
        env[name] = value
    return env


def _suggestion(key: str) -> str:
    import difflib  # only on this error path: keeps the client's start-up light

    close = difflib.get_close_matches(key.lower().replace("-", "_"), ALLOWED_KEYS, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return f"expected one of {', '.join(ALLOWED_KEYS)}"


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    return "a date/time"


def _printable_value(text: str) -> str:
    return _one_line(text[:64] + ("..." if len(text) > 64 else ""))


def _printable(text: str) -> str:
    return text if text.isprintable() and " " not in text and text else repr(text)


def _one_line(text: str) -> str:
    # Error lines reach terminals and logs: never let a file's content break them into several lines.
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
