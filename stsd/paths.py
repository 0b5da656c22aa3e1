"""Where stsd keeps things: XDG directories and the socket path (DESIGN.md). Standard library only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

APP = "stsd"


class UnsafeDirectoryError(Exception):
    """A directory stsd would use is owned by someone else or open to others."""


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / APP


def config_file() -> Path:
    return config_dir() / "config.toml"


def trust_dir() -> Path:
    return data_dir() / "trust"


def log_file() -> Path:
    return state_dir() / "stsd.log"


def pid_file() -> Path:
    return runtime_dir() / "stsd.pid"


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/stsd, else a private directory under /tmp named for the uid."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / APP
    return Path("/tmp") / f"{APP}-{os.getuid()}"


def socket_path() -> Path:
    explicit = os.environ.get("STSD_SOCKET", "")
    if explicit:
        return Path(explicit)
    return runtime_dir() / "stsd.sock"


def ensure_private_dir(path: Path) -> Path:
    """Create `path` as 0700 if missing; refuse it if another user owns it or others can reach it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectoryError(f"{path} is not a directory; remove it and retry")
    if info.st_uid != os.getuid():
        raise UnsafeDirectoryError(
            f"{path} is owned by uid {info.st_uid}, not you; remove it or set STSD_SOCKET"
        )
    if info.st_mode & 0o077:
        raise UnsafeDirectoryError(
            f"{path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):o}); run: chmod 700 {path}"
        )
    return path
