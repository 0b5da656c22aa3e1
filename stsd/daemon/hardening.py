"""Process hardening for the daemon that holds long-term keys: private files, no core dumps, and no
ptrace or /proc/<pid>/mem access by other processes of the same user (PR_SET_DUMPABLE 0)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource

log = logging.getLogger("stsd.hardening")

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3


def harden_process() -> None:
    """Apply every measure this platform supports; an unsupported one is logged at debug level only,
    because the daemon is still correct without it (just less defended)."""
    os.umask(0o077)
    _disable_core_dumps()
    _disable_dumpable()


def _disable_core_dumps() -> None:
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as error:
        log.debug("could not set RLIMIT_CORE to 0: %s", error)


def _disable_dumpable() -> None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError) as error:
        log.debug("prctl is not available here: %s", error)
        return
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    if prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_DUMPABLE, 0) failed: %s", os.strerror(ctypes.get_errno()))


def is_dumpable() -> bool | None:
    """Whether this process is dumpable (None where prctl is unavailable); reported for checks."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    result = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if result < 0 else bool(result)
