"""systemd integration: the user units verify, and a real socket-activated daemon (systemd-socket-activate
from the systemd package) serves through the inherited socket, notifies READY/STATUS/STOPPING and stops
cleanly on SIGTERM."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STSD, Daemon, World

from stsd.daemon import systemd
from stsd.install_service import install, shipped_units_dir

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
needs_socket_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None, reason="systemd-socket-activate is not installed"
)


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # unit keys are case-sensitive
    parser.read(shipped_units_dir() / name)
    return parser


def verify(paths: list[Path], runtime: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        ["systemd-analyze", "verify", "--user", *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- the unit files -------------------------------------------------------------------------------


@needs_systemd_analyze
@pytest.mark.parametrize("sandbox", [False, True], ids=["plain", "with-sandbox-drop-in"])
def test_installed_units_pass_systemd_analyze_verify(tmp_path: Path, sandbox: bool) -> None:
    unit_dir = tmp_path / "systemd" / "user"
    written = install(unit_dir, sandbox=sandbox)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)

    result = verify([unit_dir / "stsd.socket", unit_dir / "stsd.service"], runtime)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert (unit_dir / "stsd.service.d" / "sandbox.conf" in written) == sandbox


@needs_systemd_analyze
def test_verify_rejects_a_broken_unit(tmp_path: Path) -> None:
    """The verify test above can fail: a misspelt option in the same place is reported."""
    unit_dir = tmp_path / "systemd" / "user"
    install(unit_dir, sandbox=False)
    service = unit_dir / "stsd.service"
    service.write_text(service.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes"))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)

    result = verify([unit_dir / "stsd.socket", service], runtime)

    assert "NoNewPrivilegez" in result.stderr


def test_socket_unit_keeps_the_socket_private_to_the_user() -> None:
    socket_section = read_unit("stsd.socket")["Socket"]
    assert socket_section["ListenStream"] == "%t/stsd/stsd.sock"
    # systemd's defaults (0666 socket, 0755 directory) would let other users connect or look in.
    assert socket_section["SocketMode"] == "0600"
    assert socket_section["DirectoryMode"] == "0700"


def test_service_neither_deletes_the_socket_directory_nor_forks_away() -> None:
    service = read_unit("stsd.service")["Service"]
    # A RuntimeDirectory= would be removed on stop, taking stsd.socket's directory with it.
    assert "RuntimeDirectory" not in service
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["ExecStart"].split()[-1] == "serve"  # foreground; `start` would detach from systemd


# --- systemd.py on its own ------------------------------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = Path(f"/tmp/stsd-notify-{os.getpid()}-{id(tmp_path)}")
    receiver.bind(str(path))
    receiver.settimeout(20)
    yield receiver, str(path)
    receiver.close()
    path.unlink(missing_ok=True)


def test_notify_sends_the_state_to_notify_socket(
    notify_socket: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver, path = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)

    assert systemd.notify("STATUS=3 sessions") is True
    assert receiver.recv(4096) == b"STATUS=3 sessions"


def test_notify_reaches_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"stsd-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert systemd.notify("READY=1") is True
        assert receiver.recv(4096) == b"READY=1"


def test_notify_without_a_service_manager_reports_false(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_notify_to_a_vanished_socket_reports_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert systemd.notify("READY=1") is False


def test_listener_variables_meant_for_another_process_are_ignored_and_cleared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "stsd.socket")

    assert systemd.inherited_listener() is None
    assert not {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} & os.environ.keys()


_SERVE_ONE_LINE = textwrap.dedent(
    """
    import os, sys
    from stsd.daemon.systemd import inherited_listener
    listener = inherited_listener()
    leaked = [name for name in ("LISTEN_PID", "LISTEN_FDS") if name in os.environ]
    listener.setblocking(True)
    connection, _ = listener.accept()
    connection.sendall(f"blocking={listener.gettimeout()} leaked={leaked}\\n".encode())
    """
)


@needs_socket_activate
def test_inherited_listener_accepts_on_the_socket_systemd_passed(tmp_path: Path) -> None:
    path = Path(f"/tmp/stsd-sa-{os.getpid()}.sock")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(
        [
            "systemd-socket-activate",
            "-l",
            str(path),
            "-E",
            "PYTHONPATH",
            sys.executable,
            "-c",
            _SERVE_ONE_LINE,
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(20)
            _connect_when_bound(client, path, process)
            reply = client.makefile().readline()
        assert reply == "blocking=None leaked=[]\n"
        assert process.wait(20) == 0
    finally:
        process.kill()
        path.unlink(missing_ok=True)


# --- the real daemon, socket-activated ------------------------------------------------------------


def _connect_when_bound(client: socket.socket, path: Path, process: subprocess.Popen) -> None:
    for _ in range(400):
        if process.poll() is not None:
            raise AssertionError(f"systemd-socket-activate exited {process.returncode}")
        try:
            client.connect(str(path))
            return
        except (FileNotFoundError, ConnectionRefusedError):
            time.sleep(0.05)
    raise AssertionError(f"{path} never accepted a connection")


def _request(client: socket.socket, message: dict) -> dict:
    client.sendall(json.dumps({"v": 1, **message}).encode() + b"\n")
    return json.loads(client.makefile().readline())


def _activated_daemon(world: World, notify_path: str) -> subprocess.Popen:
    """`stsd serve` behind systemd-socket-activate, which binds the socket and execs stsd on first use."""
    world.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log = (world.home / "daemon-stderr.log").open("ab")
    # systemd marks the journal stream it connects to stderr; here stderr is a file, marked the same way.
    stderr = os.fstat(log.fileno())
    env = {**world.env, "NOTIFY_SOCKET": notify_path, "JOURNAL_STREAM": f"{stderr.st_dev}:{stderr.st_ino}"}
    passed = [arg for name in env for arg in ("-E", name)]  # it passes on only what it is told to
    return subprocess.Popen(
        ["systemd-socket-activate", "-l", str(world.socket), *passed, *STSD, "serve", "--log-level", "debug"],
        env=env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def _next_notification(receiver: socket.socket, prefix: bytes) -> bytes:
    while True:
        for line in receiver.recv(4096).splitlines():
            if line.startswith(prefix):
                return line


@needs_socket_activate
def test_socket_activated_daemon_serves_through_the_inherited_socket(
    world: World, notify_socket: tuple[socket.socket, str]
) -> None:
    receiver, notify_path = notify_socket
    process = _activated_daemon(world, notify_path)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(30)
            _connect_when_bound(client, world.socket, process)
            # Started on first use: systemd-socket-activate has exec'd the daemon in its own process.
            pong = _request(client, {"op": "ping"})
            assert pong["ok"] is True
            assert pong["pid"] == process.pid
            assert _next_notification(receiver, b"READY=") == b"READY=1"
            assert _next_notification(receiver, b"STATUS=").endswith(b"sessions")
            status = _request(client, {"op": "status"})
        assert status["daemon"]["mode"] == "systemd"
        assert "journal" in status["daemon"]["log"]

        process.send_signal(signal.SIGTERM)
        assert _next_notification(receiver, b"STOPPING=") == b"STOPPING=1"
        assert process.wait(20) == 0
        # The socket file belongs to the socket unit: the daemon must leave it for the next activation.
        assert world.socket.exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@needs_socket_activate
def test_socket_activated_daemon_exits_by_itself_when_idle(
    world: World, notify_socket: tuple[socket.socket, str]
) -> None:
    receiver, notify_path = notify_socket
    config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("idle_exit_seconds = 1\n")
    process = _activated_daemon(world, notify_path)
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(30)
            _connect_when_bound(client, world.socket, process)
            assert _request(client, {"op": "ping"})["ok"] is True
        assert _next_notification(receiver, b"STOPPING=") == b"STOPPING=1"
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_daemon_started_by_hand_binds_its_own_socket_despite_foreign_listen_variables(world: World) -> None:

    # Variables leaked from an activated parent name another pid: they must not make us use fd 3.
    daemon = Daemon(world, extra_env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    try:
        with socket.socket(socket.AF_UNIX) as client:
            client.settimeout(20)
            client.connect(str(world.socket))
            status = _request(client, {"op": "status"})
        assert status["daemon"]["mode"] == "foreground"
    finally:
        assert daemon.stop() == 0
    assert not world.socket.exists()  # its own socket file, so it cleans it up
