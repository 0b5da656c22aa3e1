"""systemd integration without libsystemd: the socket-activation handshake (LISTEN_FDS, fd 3) and
sd_notify datagrams (READY=1, STATUS=..., STOPPING=1). Standard library only."""

from __future__ import annotations

import os
import socket
import stat

# sd_listen_fds(3): passed sockets start at fd 3.
LISTEN_FDS_START = 3
# What `stsd status` tells users to run when the daemon logs to the journal.
JOURNAL_HINT = "journalctl --user -u stsd.service"

_ACTIVATION_VARIABLES = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


class ActivationError(Exception):
    """systemd passed us something we cannot serve on (not a listening Unix stream socket)."""


def inherited_listener() -> socket.socket | None:
    """The listening socket systemd passed as fd 3, non-blocking; None when nothing was passed to us.

    The activation variables are removed either way, so processes we start never believe the socket
    is theirs (sd_listen_fds's unset_environment)."""
    listen_pid = os.environ.get("LISTEN_PID", "")
    listen_fds = os.environ.get("LISTEN_FDS", "")
    for name in _ACTIVATION_VARIABLES:
        os.environ.pop(name, None)
    # LISTEN_PID guards against variables leaked from a parent that was itself activated.
    if not listen_pid.isdigit() or int(listen_pid) != os.getpid():
        return None
    if not listen_fds.isdigit() or int(listen_fds) < 1:
        return None
    try:
        mode = os.fstat(LISTEN_FDS_START).st_mode
    except OSError:
        raise ActivationError(
            f"LISTEN_FDS={listen_fds} but fd {LISTEN_FDS_START} is not open; check stsd.socket"
        ) from None
    if not stat.S_ISSOCK(mode):
        raise ActivationError(f"fd {LISTEN_FDS_START} passed by systemd is not a socket; check stsd.socket")
    listener = socket.socket(fileno=LISTEN_FDS_START)
    if listener.family != socket.AF_UNIX or listener.type != socket.SOCK_STREAM:
        listener.detach()  # not ours to close: leave systemd's fd as it was
        raise ActivationError(
            "the socket passed by systemd is not a Unix stream socket; use ListenStream=%t/stsd/stsd.sock"
        )
    listener.set_inheritable(False)
    listener.setblocking(False)
    return listener


def notify(state: str) -> bool:
    """Send one sd_notify datagram (e.g. "READY=1", "STATUS=2 sessions") to $NOTIFY_SOCKET.

    Returns False when there is no service manager to tell or the send failed; notifications are
    advisory for us, so a failure never stops the daemon."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        # Abstract namespace: the leading '@' stands for a NUL byte.
        target: str | bytes = b"\0" + address[1:].encode()
    elif address.startswith("/"):
        target = address
    else:
        return False  # vsock: and other transports are for VMs, not user services
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode(), target)
    except OSError:
        return False
    return True


def logging_to_journal() -> bool:
    """True when stderr is the journal stream systemd connected (JOURNAL_STREAM = "dev:inode")."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        info = os.fstat(2)
    except OSError:
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def started_by_systemd() -> bool:
    """True when a service manager started this process (a unit's INVOCATION_ID, or one to notify)."""
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("NOTIFY_SOCKET"))
