"""Which project files the user allowed or denied. Trust is sha256(absolute path + NUL + content), so any
edit needs a new `stsd allow`; a denial is keyed by the path alone so it survives edits. Standard library
only: the client writes records, the daemon (same uid) reads them."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from enum import Enum
from pathlib import Path

_ALLOWED = "allowed"
_DENIED = "denied"


class TrustState(Enum):
    ALLOWED = "allowed"
    UNTRUSTED = "untrusted"
    DENIED = "denied"


class TrustStoreError(Exception):
    """A trust record could not be written; str() is one line saying what to do."""


class TrustStore:
    """Trust records under `root` (paths.trust_dir()): one file per allowed (path, content), one per denied
    path. Files are 0600 in 0700 directories and written atomically, so a crash never leaves half a record."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def record_directories(self) -> tuple[Path, Path]:
        """Where records are added and removed: their stat changes with every allow and deny."""
        return (self.root / _ALLOWED, self.root / _DENIED)

    def state(self, path: Path, content: bytes) -> TrustState:
        # A denial wins over an allow record of an older content: the user's latest word was "no".
        if (self.root / _DENIED / _path_digest(path)).exists():
            return TrustState.DENIED
        if (self.root / _ALLOWED / _content_digest(path, content)).exists():
            return TrustState.ALLOWED
        return TrustState.UNTRUSTED

    def allow(self, path: Path, content: bytes) -> None:
        """Trust exactly this content at this path; clears a denial of the path."""
        self._write(_ALLOWED, _content_digest(path, content), _record(path, "allowed_at"))
        # The allow record is durable before the denial goes: a failure in between leaves it denied.
        self._remove(_DENIED, _path_digest(path))

    def deny(self, path: Path) -> None:
        """Refuse the file at this path, whatever it holds now or later, until allowed again."""
        self._write(_DENIED, _path_digest(path), _record(path, "denied_at"))

    def _write(self, kind: str, name: str, data: bytes) -> None:
        directory = self.root / kind
        temporary: str | None = None
        try:
            self._ensure_directory(directory)
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # created 0600
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, directory / name)
            temporary = None
            _fsync_directory(directory)
        except OSError as error:
            raise TrustStoreError(_cannot_write(directory, error)) from None
        finally:
            if temporary is not None:
                _unlink_quietly(temporary)

    def _remove(self, kind: str, name: str) -> None:
        directory = self.root / kind
        try:
            os.unlink(directory / name)
        except FileNotFoundError:
            return
        except OSError as error:
            raise TrustStoreError(_cannot_write(directory, error)) from None
        _fsync_directory(directory)

    def _ensure_directory(self, directory: Path) -> None:
        self.root.parent.mkdir(parents=True, exist_ok=True)
        for private in (self.root, directory):
            try:
                private.mkdir(mode=0o700)
            except FileExistsError:
                if private.stat().st_mode & 0o077:
                    private.chmod(0o700)  # our own directory, opened up by hand or a loose umask


def _path_digest(path: Path) -> str:
    return hashlib.sha256(_path_bytes(path)).hexdigest()


def _content_digest(path: Path, content: bytes) -> str:
    return hashlib.sha256(_path_bytes(path) + b"\0" + content).hexdigest()


def _path_bytes(path: Path) -> bytes:
    # The logical absolute path, as find_project_file gives it: not resolved through symlinks.
    return os.fsencode(os.path.abspath(path))


def _record(path: Path, stamp: str) -> bytes:
    # The digest is the file name; the body is for a person looking in the directory.
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({"path": os.path.abspath(path), stamp: when}).encode() + b"\n"


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some filesystems refuse fsync on a directory, which is harmless.
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _cannot_write(directory: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"cannot record trust in {directory}: {reason}; free disk space or fix its permissions, then retry"
