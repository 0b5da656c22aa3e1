"""Helpers for the attack tests: the installed `stsd` command, another local user (setpriv), a fake daemon
that answers whatever a test scripts, the /tmp fallback socket directory, and cleanup of autostarted
daemons. The pty shell harness is tests/shells/conftest.py's, imported (its fixtures re-exported here)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import STSD, World, ask_daemon
from other_user import NOBODY, SYSTEM_PYTHON, as_root, as_user
from shells.conftest import InteractiveShell, open_shell, shell_kind

__all__ = [
    "NOBODY",
    "SYSTEM_PYTHON",
    "as_root",
    "open_shell",
    "shell_kind",
]  # the pty harness's fixtures, visible to tests in this package

# The installed console script, as a user runs it: `python -m stsd` would itself put the cwd first on
# sys.path, which is exactly what the hostile-repository tests must not excuse.
STSD_BIN = str(Path(sys.executable).parent / "stsd")

ALICE = 'profile = "alice-sts"\n'


def role_project(session_name: str, region: str = "eu-west-1", extra: str = "") -> str:
    """A project for the demo role with its own session name (so its credentials differ from ALICE's)."""
    from stsd.demo.local_aws import ROLE_ARN

    return (
        f'role_arn = "{ROLE_ARN}"\nsource_profile = "alice"\nexternal_id = "alice"\n'
        f'role_session_name = "{session_name}"\nregion = "{region}"\n{extra}'
    )


def trusted_project(world: World, name: str, body: str) -> Path:
    directory = world.project(name, body)
    result = world.stsd("allow", str(directory))
    assert result.returncode == 0, result.stderr
    return directory


def run_stsd(
    *args: str, env: dict[str, str], cwd: Path | str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """The installed `stsd` command, no shell in between (as botocore runs credential_process)."""
    return subprocess.run(
        [STSD_BIN, *args], env=env, cwd=str(cwd) if cwd else None, capture_output=True, text=True, timeout=timeout
    )  # fmt: skip


def no_autostart_removed(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name != "STSD_NO_AUTOSTART"}


def fallback_env(world: World) -> dict[str, str]:
    """The world's environment without XDG_RUNTIME_DIR and STSD_SOCKET: the socket is /tmp/stsd-<uid>."""
    return {k: v for k, v in world.env.items() if k not in ("XDG_RUNTIME_DIR", "STSD_SOCKET")}


def shell_environment(shell: InteractiveShell) -> dict[str, str]:
    """The shell's exported environment as a child sees it; by absolute path, in case PATH was hijacked."""
    target = shell.scratch / "environ.dump"
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    shell.run(f"/bin/cat /proc/self/environ > {target}")
    return parse_environ(target.read_bytes())


def parse_environ(raw: bytes) -> dict[str, str]:
    entries = raw.decode("utf-8", "surrogateescape").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def proc_environ(pid: int) -> dict[str, str]:
    return parse_environ(Path(f"/proc/{pid}/environ").read_bytes())


def decoded_state(environment: dict[str, str]) -> str:
    """__STSD_STATE as the JSON text inside its hex encoding; fails the test when it is not that."""
    text = bytes.fromhex(environment["__STSD_STATE"]).decode()
    assert '"saved":' in text, text  # really decoded: a check on garbage could not fail
    return text


def lines_with(text: str, words: str) -> list[str]:
    return [line for line in text.splitlines() if words in line]


# -- the real daemon, autostarted ----------------------------------------------------------------------


def daemon_pid(world: World, timeout: float = 5) -> int | None:
    """The pid the daemon on the world's socket answers a ping with; None when none answers in time."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            [reply] = ask_daemon(world.socket, {"op": "ping"}, timeout=2)
            if reply.get("ok") and isinstance(reply.get("pid"), int):
                return int(reply["pid"])
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def stop_world_daemons(world: World) -> None:
    """Stop whatever daemon a test left in `world`: `stsd stop`, then SIGKILL to any stsd process still
    serving this world's socket (found by its environment, so a daemon that answers nothing is found too)."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([*STSD, "stop", "--timeout", "3"], env=world.env, capture_output=True, timeout=30)
    mine = os.getpid()
    for process in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if process.pid == mine or process.info["uids"].real != os.getuid():
                continue
            if not any("stsd" in part for part in process.info["cmdline"] or ()):
                continue
            environment = process.environ()
            ours = (
                environment.get("XDG_RUNTIME_DIR") == str(world.runtime)
                or environment.get("STSD_SOCKET") == str(world.socket)
                or environment.get("HOME") == str(world.home)
            )
            if ours:
                process.kill()
        except (psutil.Error, OSError):
            continue


@pytest.fixture
def autostart(world: World) -> Iterator[dict[str, str]]:
    """The world's environment with autostart on (STSD_NO_AUTOSTART dropped); daemons stopped afterwards."""
    yield no_autostart_removed(world.env)
    stop_world_daemons(world)


# -- an impostor daemon ----------------------------------------------------------------------------------

_FAKE_DAEMON = textwrap.dedent(
    """
    import json, os, socket, sys
    path, replies = sys.argv[1], json.loads(sys.argv[2].replace('"SELF"', str(os.getpid())))
    log = open(sys.argv[3], "a") if len(sys.argv) > 3 else None
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o666)
    server.listen(64)
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        try:
            conn.settimeout(5)
            line = conn.makefile("rb").readline()
            try:
                op = json.loads(line).get("op")
            except ValueError:
                op = None
            if log:
                log.write(str(op) + "\\n")
                log.flush()
            reply = replies.get(op, replies["*"])
            conn.sendall(json.dumps(reply).encode() + b"\\n")
        except OSError:
            pass
        finally:
            conn.close()
    """
)


class FakeDaemon:
    """A socket server that answers each request by its op ("*" = any other), as `uid` when given."""

    def __init__(self, socket_path: Path, replies: dict[str, Any], uid: int | None = None) -> None:
        self.socket_path = socket_path
        argv = [SYSTEM_PYTHON, "-I", "-c", _FAKE_DAEMON, str(socket_path), json.dumps(replies)]
        if uid is not None:
            argv = as_user(argv, uid)
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().strip()
        if ready != "ready":
            self.process.kill()
            _, err = self.process.communicate(timeout=10)
            raise RuntimeError(f"fake daemon did not start: {err}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=10)


def fake_replies(project_file: Path | str, variables: dict[str, str], *, pid: int | str = "SELF") -> dict:
    """Replies as the real daemon shapes them: a pong and a status naming `pid`, an env reply with `variables`."""
    env_reply = {
        "v": 1,
        "ok": True,
        "project": {"path": str(project_file), "name": "x"},
        "vars": variables,
        "expiration": "2099-01-01T00:00:00Z",
        "refresh_at": 0,
        "pid": pid,
    }
    return {
        "ping": {"v": 1, "ok": True, "pid": pid},
        "status": {
            "v": 1,
            "ok": True,
            "daemon": {"pid": pid, "mode": "detached"},
            "sources": [],
            "sessions": [],
            "project": None,
        },
        "*": env_reply,
    }


@pytest.fixture
def fake_daemons() -> Iterator[list[FakeDaemon]]:
    """A list the test appends its FakeDaemons to; all killed afterwards."""
    servers: list[FakeDaemon] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def tmp_fallback(fake_daemons: list[FakeDaemon]) -> Iterator[Path]:
    """/tmp/stsd-<our uid>, the socket directory when neither XDG_RUNTIME_DIR nor STSD_SOCKET is set.
    Skips when it exists already (someone's real daemon may use it); always removed afterwards."""
    directory = Path(f"/tmp/stsd-{os.getuid()}")
    if os.path.lexists(directory):
        pytest.skip(f"{directory} exists already; this test must own it")
    try:
        yield directory
    finally:
        for server in fake_daemons:
            server.stop()
        fake_daemons.clear()
        if directory.is_symlink():
            directory.unlink()
        shutil.rmtree(directory, ignore_errors=True)


def plant_as_nobody(directory: Path, mode: int, replies: dict, fake_daemons: list[FakeDaemon]) -> FakeDaemon:
    """Another user (nobody) creates `directory` with `mode` and serves `replies` on stsd.sock in it."""
    directory.mkdir()
    os.chown(directory, NOBODY, NOBODY)
    os.chmod(directory, mode)
    server = FakeDaemon(directory / "stsd.sock", replies, uid=NOBODY)
    fake_daemons.append(server)
    return server


@pytest.fixture
def victim_process() -> Iterator[subprocess.Popen]:
    """A process of ours that an impostor will name as "the daemon": it must survive `stsd stop`."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(10)
