"""The detached daemon's log file ($XDG_STATE_HOME/stsd/stsd.log): mode 0600 in a private directory, never
opened through a link, capped in size and rotated to stsd.log.1 .. .N. The same file is the daemon's stdout
and stderr, and follows each rotation, so a crash traceback lands in the file `stsd start` and `stsd status`
name. Under systemd or in the foreground (`stsd serve`) the daemon logs to stderr and none of this applies."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from stsd import paths

LOG_MAX_BYTES = 1024 * 1024  # rotate once the file holds this much
LOG_BACKUPS = 3  # old files kept: stsd.log.1 (newest) .. stsd.log.3


def backup_path(path: str | os.PathLike[str], index: int) -> str:
    return f"{os.fspath(path)}.{index}"


def open_log_file(
    path: str | os.PathLike[str], *, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS
) -> int:
    """A descriptor appending to the log file, after rotating it if it is full already. The directory is
    made (or checked to be) the user's and private; a link planted at the file's name is not followed."""
    path = os.fspath(path)
    directory = os.path.dirname(path)
    try:
        paths.ensure_private_dir(directory)
    except OSError as error:  # named as the directory stsd wanted, whichever of its parents failed
        raise OSError(error.errno, error.strerror, directory) from None
    try:
        full = os.lstat(path).st_size >= max_bytes
    except FileNotFoundError:
        full = False
    if full:
        rotate(path, backups)
    descriptor = paths.open_private_file(path, os.O_APPEND)
    os.fchmod(descriptor, 0o600)  # an older file may have been created with looser rights
    return descriptor


def rotate(path: str | os.PathLike[str], backups: int = LOG_BACKUPS) -> None:
    """stsd.log -> stsd.log.1 -> ... -> stsd.log.<backups>; the oldest is replaced. Renames, in a directory
    only we can write to, move links rather than follow them."""
    path = os.fspath(path)
    for index in range(backups - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(backup_path(path, index), backup_path(path, index + 1))
    if backups > 0:
        os.replace(path, backup_path(path, 1))
    else:
        os.unlink(path)


class RotatingLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes records to stderr, which is the log file, and rotates the file once it holds `max_bytes`:
    a fresh file is opened and put in place of every descriptor in `fds` (stdout and stderr), so that what
    the interpreter itself writes there (a traceback) goes to the current file too."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = LOG_MAX_BYTES,
        backups: int = LOG_BACKUPS,
        fds: tuple[int, ...] = (1, 2),
    ) -> None:
        super().__init__(sys.stderr)
        self._path = os.fspath(path)
        self._max_bytes = max_bytes
        self._backups = backups
        self._fds = fds
        self._broken = False
        self._rotate_if_full()

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)  # writes and flushes
        self._rotate_if_full()

    def _rotate_if_full(self) -> None:
        if self._broken:
            return
        try:
            if os.fstat(self._fds[-1]).st_size < self._max_bytes:
                return
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            rotate(self._path, self._backups)
            descriptor = open_log_file(self._path, max_bytes=self._max_bytes, backups=self._backups)
            try:
                for target in self._fds:
                    os.dup2(descriptor, target)
            finally:
                os.close(descriptor)
        except (OSError, paths.UnsafeDirectoryError) as error:
            # Keep writing where we are rather than lose lines; say so once.
            self._broken = True
            sys.stderr.write(f"stsd: cannot rotate the log {self._path}: {error}; it grows unrotated\n")
            sys.stderr.flush()
