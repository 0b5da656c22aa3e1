"""Which project files and profiles name which session: a session is kept (and renewed) only while one
of them still does, and status labels each session with them.

A referrer is re-checked by resolving it again (stsd/daemon/service.py): a project file through the
ProjectCache, so an unchanged file costs a stat and only a changed one is read and hashed again; a profile
through the AWS files, cached until they change. No inotify: a sweep every few seconds of the renewal loop
(and each status and request) sees edits, deletions and denials of files nobody asks about any more."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from stsd.daemon.requests import RoleRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Referrer:
    """A project file (`path`) or a ~/.aws/config profile (`profile`) that asked for a session."""

    path: Path | None = None
    profile: str | None = None

    def __str__(self) -> str:
        if self.profile is not None:
            return f"profile {self.profile}"
        return _home_relative(str(self.path))


class References:
    """The request each referrer resolved to when last seen; only the event loop thread touches it."""

    def __init__(self) -> None:
        self._requests: dict[Referrer, RoleRequest] = {}

    def note(self, referrer: Referrer, request: RoleRequest) -> bool:
        """`referrer` names `request` now; True when it named another one before (which may be named by
        nobody now)."""
        before = self._requests.get(referrer)
        self._requests[referrer] = request
        return before is not None and before != request

    def drop(self, referrer: Referrer) -> bool:
        """`referrer` names nothing now (gone, denied, untrusted, broken); True when it named a session."""
        return self._requests.pop(referrer, None) is not None

    def recheck(self, resolve: Callable[[Referrer], RoleRequest | None]) -> set[RoleRequest]:
        """Resolve every referrer again (None: it names nothing now); the requests still named."""
        for referrer in list(self._requests):
            try:
                request = resolve(referrer)
            except Exception:  # a bug must not drop every session, nor end the sweep
                log.exception("re-checking %s", referrer)
                continue
            if request is None:
                log.info("%s names no session any more", referrer)
                del self._requests[referrer]
            else:
                self._requests[referrer] = request
        return set(self._requests.values())

    def referrers(self, request: RoleRequest) -> list[str]:
        """Who names `request`, as status shows them, sorted."""
        return sorted(str(referrer) for referrer, named in self._requests.items() if named == request)

    def label(self, request: RoleRequest) -> str | None:
        """`~/proj/.stsd.toml → arn:aws:iam::1:role/x`: who names it and what it is. Unique: each referrer
        names one request. None for a session no referrer is known for."""
        names = self.referrers(request)
        if not names:
            return None
        what = request.role_arn or f"session of {request.source.name}"
        return f"{', '.join(names)} → {what}"


def _home_relative(path: str) -> str:
    home = os.path.expanduser("~")
    if home not in ("", "/") and path.startswith(home.rstrip("/") + "/"):
        return "~" + path[len(home.rstrip("/")) :]
    return path
