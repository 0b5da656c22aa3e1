"""One request to the daemon (through stsd.wire, the only socket client), starting the daemon first when
none listens. The daemon is started isolated from whoever asked: an absolute interpreter in isolated mode
(`-I`, so neither the current directory nor PYTHONPATH can supply a module), working directory `/`, and
the environment the user had before entering any project, less credential and profile variables.
Standard library only: this runs on shell transitions."""

from __future__ import annotations

import os
import time

from stsd import paths, wire

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: start-up time
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping
    from typing import Any

AUTOSTART_WAIT_S = 2.0  # how long the socket may take to appear once `stsd start` has returned
_POLL_S = 0.02


class DaemonUnavailable(Exception):
    """The daemon could not be reached, could not be trusted, or did not answer in time; str() is one
    line saying what to do. `absent`: no daemon listens at all (`status` tells that apart: LSB's 3)."""

    def __init__(self, message: str, *, absent: bool = False) -> None:
        super().__init__(message)
        self.absent = absent


def request(
    message: dict[str, Any], *, timeout: float = 5.0, autostart: bool | None = None
) -> dict[str, Any]:
    """Send one request and return the daemon's reply (ok or error, as in docs/protocol.md).
    Raises DaemonUnavailable when no trustworthy daemon answers within `timeout`."""
    return request_with_peer(message, timeout=timeout, autostart=autostart).message


def request_with_peer(
    message: dict[str, Any], *, timeout: float = 5.0, autostart: bool | None = None
) -> wire.Reply:
    """As request(), with the pid the kernel reports for the daemon."""
    if autostart is None:
        autostart = os.environ.get("STSD_NO_AUTOSTART", "") != "1"
    deadline = time.monotonic() + timeout
    try:
        return wire.request(message, timeout)
    except wire.WireError as error:
        if not (error.startable and autostart):
            raise DaemonUnavailable(str(error), absent=error.startable) from None
    starter = _start_daemon()
    patience_until = time.monotonic() + AUTOSTART_WAIT_S
    while True:
        try:
            return wire.request(message, max(0.01, deadline - time.monotonic()))
        except wire.WireError as error:
            if not error.startable:
                raise DaemonUnavailable(str(error)) from None
        # poll() also reaps `stsd start` once it has detached, so no zombie lingers.
        started = starter.poll()
        if started not in (None, 0):
            raise DaemonUnavailable(_start_failure(starter))
        now = time.monotonic()
        # A cold start (botocore imports) can outlast AUTOSTART_WAIT_S on a busy machine: keep waiting
        # while `stsd start` is still at work (it gives up by itself), never past the caller's timeout.
        if now >= deadline or (now >= patience_until and started is not None):
            raise DaemonUnavailable(
                f"the daemon did not start in time; run stsd serve to see why (log: {paths.log_file()})"
            )
        time.sleep(_POLL_S)


def daemon_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a daemon started from `environ` gets: the user's as it was before the loaded
    project (if any), less credential and profile variables."""
    from stsd import variables
    from stsd.client import state

    return variables.daemon_environment(state.outside_environment(environ))


def _start_daemon() -> subprocess.Popen[bytes]:
    import subprocess  # only when starting: keeps every ordinary request's start-up light

    from stsd import launch

    try:
        return subprocess.Popen(
            launch.isolated_command("start"),
            cwd="/",
            env=daemon_environment(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # the daemon must outlive this process and its terminal
            close_fds=True,
        )
    except OSError as error:
        raise DaemonUnavailable(f"cannot start the daemon ({error.strerror}); run: stsd start") from None


def _start_failure(starter: subprocess.Popen[bytes]) -> str:
    """The reason `stsd start` gave (its last stderr line), so the user need not run it again to see it."""
    output = ""
    if starter.stderr is not None:
        # Non-blocking: a daemon that outlived a failed start may still hold the pipe open.
        os.set_blocking(starter.stderr.fileno(), False)
        try:  # noqa: SIM105
            output = (starter.stderr.read() or b"").decode(errors="replace")
        except OSError:
            pass
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    reason = lines[-1].removeprefix("stsd: ") if lines else "no reason given"
    return f"the daemon could not start: {reason}"
