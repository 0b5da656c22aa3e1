"""Where stsd keeps things: XDG directories and the socket path, and the one check that a directory stsd
trusts is yours and private. Standard library only, os.path rather than pathlib: the shell hook's fast
path imports this on every transition."""

from __future__ import annotations

import errno
import os
import stat

APP = "stsd"
SOCKET_NAME = "stsd.sock"


class UnsafeDirectoryError(Exception):
    """A directory stsd would use is owned by someone else, open to others, or not a plain directory."""


def _xdg(variable: str, default: str) -> str:
    value = os.environ.get(variable, "")
    # The XDG spec says relative values are invalid and must be ignored.
    if value and os.path.isabs(value):
        return value
    return os.path.join(os.path.expanduser("~"), default)


def config_dir() -> str:
    return os.path.join(_xdg("XDG_CONFIG_HOME", ".config"), APP)


def data_dir() -> str:
    return os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), APP)


def state_dir() -> str:
    return os.path.join(_xdg("XDG_STATE_HOME", ".local/state"), APP)


def config_file() -> str:
    return os.path.join(config_dir(), "config.toml")


def trust_dir() -> str:
    return os.path.join(data_dir(), "trust")


def log_file() -> str:
    return os.path.join(state_dir(), "stsd.log")


def runtime_dir() -> str:
    """$XDG_RUNTIME_DIR/stsd, else a private directory under /tmp named for the uid."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, APP)
    return os.path.join("/tmp", f"{APP}-{os.getuid()}")


def socket_path() -> str:
    explicit = os.environ.get("STSD_SOCKET", "")
    if explicit:
        return os.path.abspath(explicit)
    return os.path.join(runtime_dir(), SOCKET_NAME)


def pid_file() -> str:
    return os.path.join(runtime_dir(), "stsd.pid")


def endpoint_state_file() -> str:
    """The credentials endpoint's port and tokens, kept across a brief restart; `stsd stop` removes it."""
    return os.path.join(runtime_dir(), "endpoint.json")


def endpoint_tokens_dir() -> str:
    """0600 token files (AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) of the credentials endpoint."""
    return os.path.join(runtime_dir(), "tokens")


def shells_dir() -> str:
    """Per-shell files of the hook (stamps, saved values); inside the private runtime directory."""
    return os.path.join(runtime_dir(), "shells")


def check_private_dir(path: str) -> None:
    """Raise UnsafeDirectoryError unless `path` is a real directory (not a link), owned by this user and
    closed to everyone else. Another user who could create or open it could serve an impostor daemon on
    its socket or plant links where stsd writes."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectoryError(f"refusing {path}: it is not a directory; remove it and retry")
    if info.st_uid != os.getuid():
        raise UnsafeDirectoryError(
            f"refusing {path}: it is owned by uid {info.st_uid}, not you; remove it or set STSD_SOCKET"
        )
    if info.st_mode & 0o077:
        raise UnsafeDirectoryError(
            f"refusing {path}: other users can reach it (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run: chmod 700 {path}"
        )


def ensure_private_dir(path: str) -> str:
    """Create `path` (and missing parents) as 0700 if missing, then check it as check_private_dir does."""
    try:  # noqa: SIM105 (contextlib: one more import on every transition)
        os.makedirs(path, mode=0o700)
    except FileExistsError:
        pass
    check_private_dir(path)
    return path


def open_private_file(path: str, flags: int) -> int:
    """Open `path` for writing in a directory the caller checked is private, never through a link:
    a planted symlink is replaced, not followed. Returns a descriptor of a regular file of ours."""
    flags |= os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError as error:
        if not os.path.islink(path) and error.errno != errno.ENXIO:  # ENXIO: a FIFO with no reader
            raise
        os.unlink(path)  # a link or FIFO where a plain file of ours belongs
        descriptor = os.open(path, flags | os.O_EXCL, 0o600)
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(descriptor)
        raise UnsafeDirectoryError(f"refusing {path}: not a plain file of yours; remove it and retry")
    return descriptor
