"""What an `env` request needs from an unchanged project, kept between requests: the project file read,
its trust checked and its role request resolved are reused while the file's stat, the trust records'
directories and the AWS files are unchanged, so the hook's request neither re-reads nor re-hashes them."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from stsd.daemon.sources import aws_files_fingerprint

Target = TypeVar("Target")
_Stat = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns: any write changes ctime
_MISSING: _Stat = (-1, -1, -1, -1)


def _stat(path: Path | str) -> _Stat:
    try:
        info = os.stat(path)
    except OSError:
        return _MISSING
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


class ProjectCache(Generic[Target]):
    """The last value computed per project file, valid while nothing it was computed from changed.

    Trust is keyed on the stat of the record directories (`trust_dirs`): `stsd allow` and `stsd deny`
    add or remove a record file, which changes its directory's mtime. A failed computation (untrusted,
    invalid) is not kept: it is asked again, as before."""

    def __init__(self, trust_dirs: tuple[Path, ...], *, max_entries: int = 1024) -> None:
        self._trust_dirs = trust_dirs
        self._max_entries = max_entries
        self._entries: OrderedDict[Path, tuple[tuple[object, ...], Target]] = OrderedDict()
        self._lock = threading.Lock()

    def key(self, path: Path) -> tuple[object, ...]:
        """Taken before the computation reads anything: an edit during it leaves a key that no longer
        matches, so the next request computes again."""
        return (_stat(path), *(_stat(d) for d in self._trust_dirs), aws_files_fingerprint())

    def get(self, path: Path, compute: Callable[[], Target]) -> Target:
        key = self.key(path)
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and entry[0] == key:
                self._entries.move_to_end(path)
                return entry[1]
        value = compute()
        with self._lock:
            self._entries[path] = (key, value)
            self._entries.move_to_end(path)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value
