"""Process hardening for the daemon that holds long-term keys: private files, no core dumps, and no
ptrace or /proc/<pid>/mem access by other processes of the same user (PR_SET_DUMPABLE 0)."""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import sys
from typing import Any

log = logging.getLogger("stsd.hardening")

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


class HardeningError(Exception):
    """A protection could not be applied; str() is one line saying which and why. The daemon does not run
    without it (as ssh-agent): it is about to hold long-term keys."""


def harden_process() -> None:
    """Private files, no core dumps, no ptrace or /proc/<pid>/mem by other processes of the user.
    Raises HardeningError when one of them fails."""
    os.umask(0o077)  # cannot fail
    _disable_core_dumps()
    _disable_dumpable()


def _disable_core_dumps() -> None:
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise HardeningError(
            f"cannot disable core dumps (setrlimit RLIMIT_CORE 0): {reason}; the daemon does not run "
            "without it"
        ) from None


def _prctl() -> Any:
    # dlopen(NULL): prctl as this process resolves it, the same function any C code in it would call
    # (a handle of "libc.so.6" would be a second path, past what the dynamic linker put first).
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


def _disable_dumpable() -> None:
    if not sys.platform.startswith("linux"):
        log.debug("PR_SET_DUMPABLE: not on %s", sys.platform)
        return
    try:
        prctl = _prctl()
    except (OSError, AttributeError) as error:
        raise HardeningError(f"cannot make the daemon undumpable: prctl is not available: {error}") from None
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise HardeningError(
            f"cannot make the daemon undumpable: prctl(PR_SET_DUMPABLE, 0) failed: {reason}; "
            "the daemon does not run without it (other processes of yours could read its memory)"
        )
    if prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise HardeningError(
            "cannot make the daemon undumpable: it is still dumpable after PR_SET_DUMPABLE 0"
        )


def is_dumpable() -> bool | None:
    """Whether this process is dumpable (None where prctl is unavailable); reported for checks."""
    try:
        prctl = _prctl()
    except (OSError, AttributeError):
        return None
    result = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if result < 0 else bool(result)
