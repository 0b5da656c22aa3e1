"""`stsd serve`: harden the process, build sources -> sessions -> service -> server, serve until SIGTERM
or SIGINT, then shut down cleanly (systemd is told READY / STATUS / STOPPING along the way)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stsd import __version__, paths
from stsd.daemon import systemd
from stsd.daemon.hardening import HardeningError, harden_process
from stsd.daemon.server import (
    ServerLimits,
    SocketInUseError,
    SocketServer,
    SocketSetupError,
    bind_listener,
)

if TYPE_CHECKING:
    from stsd.daemon.config import DaemonConfig
    from stsd.daemon.sessions import SessionManager
    from stsd.daemon.throttled_log import ThrottledLog

log = logging.getLogger("stsd.daemon")

SHUTDOWN_GRACE_S = 2.0  # how long replies in progress may take once SIGTERM arrived
STATUS_POLL_S = 15.0  # sessions may also end on their own (idle); re-check the count this often
MAX_CONNECTIONS = 2000
SPARE_DESCRIPTORS = 100  # for STS connections, files and the listener, beyond client connections

MODE_SYSTEMD = "systemd"
MODE_DETACHED = "detached"
MODE_FOREGROUND = "foreground"


@dataclass(frozen=True)
class ServeContext:
    """How this daemon was started: what `status` reports and what shutdown may clean up."""

    socket_path: Path
    owns_socket_file: bool  # False for a systemd-passed socket: systemd owns that file
    mode: str
    log_location: str
    socket_activated: bool


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(log_level=args.log_level)


def serve(*, log_level: str, detached_log: Path | None = None) -> int:
    """Run the daemon in this process until it is told to stop; returns the exit code.

    `detached_log` is set by `stsd start`, whose stderr already points at that file."""
    try:
        harden_process()
    except HardeningError as error:
        # As ssh-agent: a process that will hold long-term keys and cannot be protected does not run.
        print(f"stsd: {error}", file=sys.stderr)
        return 1
    # SIGTERM may come while we still import and bind (the socket accepts connections before we serve
    # them): note it, and shut down cleanly as soon as the loop runs, instead of dying with the default.
    early_stop: list[int] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: early_stop.append(number))
    _configure_logging(
        log_level, journal=detached_log is None and systemd.logging_to_journal(), log_file=detached_log
    )
    # Imported after hardening: from here on the process may hold secrets.
    from stsd.daemon.config import ConfigError, load_config

    try:
        config = load_config(Path(paths.config_file()))
    except ConfigError as error:
        print(f"stsd: {error}", file=sys.stderr)
        return 2
    try:
        listener, context = _open_listener(detached_log)
    except (SocketInUseError, SocketSetupError, systemd.ActivationError) as error:
        print(f"stsd: {error}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(config, listener, context, early_stop=early_stop))
    finally:
        listener.close()
        _remove_socket_file(context)


def _configure_logging(level: str, *, journal: bool, log_file: Path | None = None) -> None:
    # The journal stamps each line itself. Only stsd's own loggers get the chosen level: botocore logs
    # whole STS responses (secret keys included) at DEBUG, so libraries stay at WARNING whatever it is.
    # Detached (`stsd start`), stderr is the log file: capped and rotated; otherwise stderr is left alone.
    fmt = (
        "%(levelname)s %(name)s: %(message)s"
        if journal
        else "%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler: logging.Handler
    if log_file is not None:
        from stsd.daemon.logfile import RotatingLogHandler

        handler = RotatingLogHandler(log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("stsd").setLevel(level.upper())


def _open_listener(detached_log: Path | None) -> tuple[socket.socket, ServeContext]:
    inherited = systemd.inherited_listener()
    if detached_log is not None:
        mode, log_location = MODE_DETACHED, str(detached_log)
    elif inherited is not None or systemd.started_by_systemd():
        mode, log_location = (
            MODE_SYSTEMD,
            f"journal ({systemd.JOURNAL_HINT})" if systemd.logging_to_journal() else "stderr",
        )
    else:
        mode, log_location = MODE_FOREGROUND, "stderr"
    if inherited is not None:
        name = inherited.getsockname()
        socket_path = Path(name) if isinstance(name, str) and name else Path(paths.socket_path())
        return inherited, ServeContext(socket_path, False, mode, log_location, socket_activated=True)
    socket_path = Path(paths.socket_path())
    listener = bind_listener(socket_path)
    return listener, ServeContext(socket_path, True, mode, log_location, socket_activated=False)


def _remove_socket_file(context: ServeContext) -> None:
    if context.owns_socket_file:
        with contextlib.suppress(FileNotFoundError):
            context.socket_path.unlink()


async def _serve(
    config: DaemonConfig, listener: socket.socket, context: ServeContext, *, early_stop: list[int]
) -> int:
    from stsd.daemon.clock import SystemClock
    from stsd.daemon.service import Service
    from stsd.daemon.sessions import SessionManager
    from stsd.daemon.sources import SourceRegistry
    from stsd.daemon.sts_calls import start_sts_pool
    from stsd.daemon.throttled_log import ThrottledLog
    from stsd.project.trust import TrustStore

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if early_stop:
        stop.set()

    clock = SystemClock()
    throttled = ThrottledLog(log, monotonic=clock.monotonic)  # for refusals anyone can repeat at will
    sources = SourceRegistry(config, clock)
    sessions = SessionManager(sources, clock, config)
    service = Service(
        sessions=sessions,
        sources=sources,
        trust_store=TrustStore(Path(paths.trust_dir())),
        config=config,
        clock=clock,
        started_at=time.time(),
        mode=context.mode,
        socket_path=context.socket_path,
        log_location=context.log_location,
        throttled=throttled,
    )
    status = SessionCountNotifier(sessions)

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        try:
            return await service.handle(request)
        finally:
            status.update()

    start_sts_pool()
    server = SocketServer(handle, ServerLimits(max_connections=_connection_budget()), throttled=throttled)
    await server.start(listener)
    try:
        await service.endpoint.resume()
    except OSError as error:
        log.warning("cannot start the credentials endpoint: %s", error.strerror)
    renewals = asyncio.create_task(sessions.run())
    renewals.add_done_callback(_log_unexpected_end)
    watchers = [
        asyncio.create_task(_poll_session_count(status)),
        asyncio.create_task(_flush_throttled_log(throttled)),
    ]
    if context.socket_activated and config.idle_exit_seconds:
        # Socket activation starts us again on the next connection, so an unused daemon may leave.
        watchers.append(asyncio.create_task(_exit_when_idle(server, float(config.idle_exit_seconds), stop)))

    systemd.notify("READY=1")
    status.update(force=True)
    log.info(
        "serving on %s (pid %d, %s mode, version %s)",
        context.socket_path,
        os.getpid(),
        context.mode,
        __version__,
    )
    await stop.wait()

    log.info("shutting down")
    systemd.notify("STOPPING=1")
    await server.close(SHUTDOWN_GRACE_S)
    await service.endpoint.close()  # tokens stay saved for a brief restart; `stsd stop` revokes them
    for task in [renewals, *watchers]:
        task.cancel()
    await asyncio.gather(renewals, *watchers, return_exceptions=True)
    with contextlib.suppress(Exception):
        await sessions.close()
    throttled.flush(everything=True)
    log.info("stopped")
    return 0


class SessionCountNotifier:
    """Tells systemd "STATUS=<n> sessions" whenever the number of sessions changes."""

    def __init__(self, sessions: SessionManager) -> None:
        self._sessions = sessions
        self._last: int | None = None

    def update(self, *, force: bool = False) -> None:
        count = self._sessions.session_count()
        if force or count != self._last:
            self._last = count
            systemd.notify(f"STATUS={count} session{'' if count == 1 else 's'}")


async def _poll_session_count(status: SessionCountNotifier) -> None:
    while True:
        await asyncio.sleep(STATUS_POLL_S)
        status.update()


async def _flush_throttled_log(throttled: ThrottledLog) -> None:
    """Sum up repeated refusals once their interval is over, even if no further one comes."""
    while True:
        await asyncio.sleep(throttled.interval_s / 2)
        throttled.flush()


async def _exit_when_idle(server: SocketServer, idle_exit_s: float, stop: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(min(idle_exit_s, 5.0))
        if server.idle_for() >= idle_exit_s:
            log.info("no connections for %.0f s; exiting until the socket is used again", idle_exit_s)
            stop.set()
            return


def _log_unexpected_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the renewal loop stopped: %r", task.exception())


def _connection_budget() -> int:
    """Connections we can really hold: raise the soft descriptor limit (often 1024) toward the hard one,
    so the refusal at the limit is our clear reply rather than a failed accept()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = MAX_CONNECTIONS + SPARE_DESCRIPTORS
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.debug("could not raise the descriptor limit: %s", error)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft - SPARE_DESCRIPTORS))
