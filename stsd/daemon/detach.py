"""`stsd start` / `stsd stop`: the daemon in the background without systemd. A pid file, locked by the
daemon for its whole life, says who runs; psutil tells a stale pid file from a live daemon. Both talk to
the daemon only through stsd.wire, and `stop` signals only a pid the kernel vouches for: the pid file's
lock holder, or the peer of the daemon's socket, never a pid a reply names."""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

import psutil

from stsd import paths, wire

START_WAIT_S = 10.0  # the daemon imports botocore before it listens; a cold start can take seconds
KILL_WAIT_S = 3.0
LOG_TAIL_LINES = 10
SYSTEMD_STOP = "systemctl --user stop stsd.socket stsd.service"


# --- start -------------------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    """Start the daemon unless one already answers. Idempotent: "already running" is success (exit 0),
    because the client's autostart runs `stsd start` whenever it finds no daemon. The CLI has already
    re-run this isolated, from `/`, with the environment a daemon may have (stsd.cli, stsd.launch)."""
    socket_path = Path(paths.socket_path())
    try:
        running = probe_daemon(socket_path)
        if running is not None:
            print(f"stsd: already running (pid {running})")
            return 0
        paths.ensure_private_dir(paths.runtime_dir())
        log_path = _prepare_log_file()
        pid_path = Path(paths.pid_file())
        lock = PidFileLock.acquire(pid_path)
    except (wire.WireError, paths.UnsafeDirectoryError, OSError) as error:
        print(f"stsd: {_reason(error)}", file=sys.stderr)
        return 1
    if lock is None:
        # Another `stsd start` (or a daemon) holds the lock: wait for it to answer rather than race it.
        return _wait_for_other_start(socket_path, pid_path)
    stale = lock.recorded_pid()
    if stale is not None and not is_stsd_process(stale):
        print(f"stsd: replacing stale pid file {pid_path} (pid {stale} is not running stsd)", file=sys.stderr)
    log_offset = log_path.stat().st_size
    sys.stdout.flush()  # or the child would write our buffered output a second time
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _become_daemon(lock, log_path, args.log_level)  # never returns
    lock.close()  # the daemon holds its own copy of the locked file; ours must not keep the lock alive
    with contextlib.suppress(ChildProcessError):
        os.waitpid(child, 0)  # the first fork exits at once (python-daemon forks again)
    return _wait_until_serving(socket_path, pid_path, log_path, log_offset)


def _prepare_log_file() -> Path:
    """The log file, created (0600, in a private directory, not through a link) and rotated if full,
    before the offset whose tail a failed start shows is taken."""
    from stsd.daemon.logfile import open_log_file

    log_path = Path(paths.log_file())
    os.close(open_log_file(log_path))
    return log_path


def _become_daemon(lock: PidFileLock, log_path: Path, log_level: str) -> None:
    """In the forked child: detach with python-daemon, record our pid, serve, and exit."""
    code = 1
    try:
        import daemon

        from stsd.daemon.logfile import open_log_file

        # stdout and stderr too, so a crash traceback lands in the log `stsd start` names.
        log_file = os.fdopen(open_log_file(log_path), "a")
        context = daemon.DaemonContext(
            umask=0o077,
            working_directory="/",
            detach_process=True,
            stdout=log_file,
            stderr=log_file,
            files_preserve=[lock.fileno(), log_file.fileno()],
            signal_map={},  # the asyncio loop installs its own SIGTERM/SIGINT handling
        )
        context.open()
        log_file.close()  # stdout and stderr are its copies; this one would hold a rotated-away file open
        lock.record_pid(os.getpid())
        from stsd.daemon.run import serve

        code = serve(log_level=log_level, detached_log=log_path)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # last resort in a detached process: say why in the log
        import traceback

        print(f"stsd: the daemon failed: {error!r}", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
            sys.stdout.flush()
        with contextlib.suppress(Exception):
            lock.release()
        os._exit(code)


def _wait_for_answer(socket_path: Path, pid_path: Path) -> int | None:
    """The pid of the daemon once it answers; None if the pid file's holder exits first or time runs out."""
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline:
        pid = probe_daemon(socket_path)
        if pid is not None:
            return pid
        if not PidFileLock.is_held(pid_path):
            return None
        time.sleep(0.05)
    return None


def _wait_until_serving(socket_path: Path, pid_path: Path, log_path: Path, log_offset: int) -> int:
    pid = _wait_for_answer(socket_path, pid_path)
    if pid is not None:
        print(f"stsd: started (pid {pid}), logs: {log_path}")
        return 0
    if not PidFileLock.is_held(pid_path):
        print("stsd: the daemon exited during start-up:", file=sys.stderr)
    else:
        print(
            f"stsd: the daemon did not answer on {socket_path} within {START_WAIT_S:.0f} s; see {log_path}",
            file=sys.stderr,
        )
    _print_log_tail(log_path, log_offset)
    return 1


def _wait_for_other_start(socket_path: Path, pid_path: Path) -> int:
    pid = _wait_for_answer(socket_path, pid_path)
    if pid is not None:
        print(f"stsd: already running (pid {pid})")
        return 0
    holder = read_pid(pid_path)
    print(
        f"stsd: another stsd (pid {holder}) holds {pid_path} but does not answer on {socket_path}; run: stsd stop",
        file=sys.stderr,
    )
    return 1


def _print_log_tail(log_path: Path, offset: int) -> None:
    try:
        with log_path.open("rb") as log_file:
            log_file.seek(offset)
            lines = log_file.read().decode(errors="replace").splitlines()
    except OSError:
        return
    for line in lines[-LOG_TAIL_LINES:]:
        print(f"  {line}", file=sys.stderr)


# --- stop --------------------------------------------------------------------------------------------


def cmd_stop(args: argparse.Namespace) -> int:
    """SIGTERM the daemon, wait up to --timeout, then SIGKILL; "not running" is success."""
    socket_path = Path(paths.socket_path())
    pid_path = Path(paths.pid_file())
    try:
        pid = _running_pid(pid_path, socket_path)
    except SystemdManaged:
        print(f"stsd: the daemon is run by systemd; run: {SYSTEMD_STOP}", file=sys.stderr)
        return 1
    except (wire.WireError, RefusedToSignal) as error:
        print(f"stsd: {error}", file=sys.stderr)
        return 1
    from stsd.daemon.endpoint import forget_saved_state

    if pid is None:
        _remove_stale_files(pid_path, socket_path)
        forget_saved_state()  # tokens a daemon left for a restart that is not coming: revoked
        print("stsd: not running")
        return 0
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_for_exit(pid, args.timeout):
        message = f"stsd: stopped (pid {pid})"
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if not _wait_for_exit(pid, KILL_WAIT_S):
            print(f"stsd: pid {pid} survived SIGKILL; check it with: ps -p {pid}", file=sys.stderr)
            return 1
        message = f"stsd: the daemon (pid {pid}) did not stop within {args.timeout:g} s; killed it (SIGKILL)"
    _remove_stale_files(pid_path, socket_path)
    forget_saved_state()  # `stsd stop` revokes every credentials-endpoint token, for good
    print(message)
    return 0


def _running_pid(pid_path: Path, socket_path: Path) -> int | None:
    """The live daemon's pid, as the kernel tells it: the process holding the pid file's lock, else the
    process serving the socket (SO_PEERCRED), provided it is ours, runs stsd and says the same pid.
    Raises SystemdManaged for a daemon that systemd would only start again, RefusedToSignal or
    wire.WireError (another user's socket) when no pid can be trusted."""
    recorded = read_pid(pid_path)
    if recorded is not None and PidFileLock.is_held(pid_path) and is_stsd_process(recorded):
        return recorded
    try:
        reply = wire.request({"op": "status"}, 3.0, str(socket_path))
    except wire.WireError as error:
        if error.kind == wire.UNTRUSTED:
            raise
        return None
    daemon = reply.message.get("daemon")
    daemon = daemon if isinstance(daemon, dict) else {}
    if daemon.get("mode") == "systemd":
        raise SystemdManaged()
    named, peer = daemon.get("pid"), reply.peer_pid
    if named != peer or not is_stsd_process(peer):
        raise RefusedToSignal(
            f"refusing to signal: the process serving {socket_path} (pid {peer}) names pid {named!r} "
            "and is not a daemon in stsd's pid file; stop it yourself after checking it with: ps -p "
            f"{peer}"
        )
    return peer


class SystemdManaged(Exception):
    """The daemon runs under systemd: stopping it by signal would be undone by a restart or activation."""


class RefusedToSignal(Exception):
    """No pid could be tied to stsd's daemon by the kernel; str() says what to check."""


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if not _is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _is_alive(pid: int) -> bool:
    try:
        # A detached daemon is not our child: when no init reaps it, it lingers as a zombie after exit.
        process = psutil.Process(pid)
        if process.status() != psutil.STATUS_ZOMBIE:
            return True
        # Killed, its main thread can be a zombie while its other threads (the STS pool's) still exit,
        # the socket still listening: not gone until they are.
        return process.num_threads() > 1
    except psutil.NoSuchProcess:
        return False


def _remove_stale_files(pid_path: Path, socket_path: Path) -> None:
    if pid_path.exists() and not PidFileLock.is_held(pid_path):
        with contextlib.suppress(FileNotFoundError):
            pid_path.unlink()
    if socket_path.is_socket() and not _answers(socket_path):
        with contextlib.suppress(FileNotFoundError):
            socket_path.unlink()


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error)


# --- shared ------------------------------------------------------------------------------------------


def is_stsd_process(pid: int) -> bool:
    """True when `pid` is ours and runs stsd (its command line names it): a recycled pid belongs to
    someone else."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE or process.uids().real != os.getuid():
            return False
        return any("stsd" in part for part in process.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def read_pid(pid_path: Path) -> int | None:
    try:
        text = pid_path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def probe_daemon(socket_path: Path, timeout: float = 1.0) -> int | None:
    """The pid a trustworthy daemon on `socket_path` reports to a ping, or None when none answers.
    Raises wire.WireError when the socket is another user's: that is never "not running"."""
    try:
        reply = wire.request({"op": "ping"}, timeout, str(socket_path))
    except wire.WireError as error:
        if error.kind == wire.UNTRUSTED:
            raise
        return None
    pid = reply.message.get("pid")
    return pid if reply.message.get("ok") is True and isinstance(pid, int) else None


def _answers(socket_path: Path) -> bool:
    """Whether anything of ours accepts connections on the socket (a daemon still starting, perhaps)."""
    try:
        connection, _pid = wire.connect(str(socket_path), time.monotonic() + 0.5)
    except wire.WireError as error:
        return error.kind != wire.ABSENT  # someone else's socket is never ours to remove
    connection.close()
    return True


class PidFileLock:
    """The pid file, opened and exclusively locked (flock). The kernel drops the lock when the last
    holder exits, however it exits, so a lock nobody holds always means the pid inside is stale."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor = descriptor

    @classmethod
    def acquire(cls, path: Path) -> PidFileLock | None:
        """The lock, or None when a live process holds it."""
        while True:
            # O_NOFOLLOW: never lock, truncate or write through a link planted in the pid file's place.
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(descriptor)
                if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    return None
                raise
            # A daemon that exited may have unlinked the file between our open and our lock; then we
            # would hold a lock on a file nobody else can find. Start over on the current one.
            try:
                same_file = os.stat(path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same_file = False
            if same_file:
                return cls(path, descriptor)
            os.close(descriptor)

    @staticmethod
    def is_held(path: Path) -> bool:
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError:  # a link where the pid file belongs: no daemon of ours holds that
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(descriptor)
        return False

    def fileno(self) -> int:
        return self._descriptor

    def recorded_pid(self) -> int | None:
        os.lseek(self._descriptor, 0, os.SEEK_SET)
        text = os.read(self._descriptor, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None

    def record_pid(self, pid: int) -> None:
        os.ftruncate(self._descriptor, 0)
        os.pwrite(self._descriptor, f"{pid}\n".encode(), 0)
        os.fsync(self._descriptor)

    def close(self) -> None:
        os.close(self._descriptor)

    def release(self) -> None:
        """Remove the pid file, then drop the lock (in that order, so no one locks a file being removed)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()
