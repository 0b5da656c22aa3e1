"""Other users: their connections are refused (SO_PEERCRED) even by the hundred while ours are served; a
socket directory someone else owns, or that others can reach, or that is a symlink, is refused at start-up;
and a client never takes credentials from a socket another user planted. Runs other uids via setpriv."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Daemon, World, ask_daemon
from other_user import NOBODY, SYSTEM_PYTHON, as_root, as_user, run_as

VICTIM = 65533  # an otherwise unused uid, so its /tmp/stsd-<uid> fallback path is ours alone to test


_FLOOD = textwrap.dedent(
    """
    import socket, sys
    refused = 0
    for _ in range(int(sys.argv[2])):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sys.argv[1])
        try:
            s.sendall(b'{"v":1,"op":"credentials","profile":"alice-sts"}\\n')
            refused += s.recv(65536) == b""
        except (ConnectionResetError, BrokenPipeError):
            refused += 1
        s.close()
    print(refused)
    """
)


@as_root
def test_another_users_connections_are_all_refused_while_ours_are_served(
    world: World, daemon: Daemon
) -> None:
    # Open the path for this test only, so that SO_PEERCRED is the only thing that can refuse nobody.
    for directory in (world.runtime, world.socket.parent):
        os.chmod(directory, 0o711)
    os.chmod(world.socket, 0o666)
    intruder = subprocess.Popen(
        as_user([SYSTEM_PYTHON, "-c", _FLOOD, str(world.socket), "100"]),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    ours = [ask_daemon(world.socket, {"op": "credentials", "profile": "alice-sts"})[0] for _ in range(20)]
    out, _ = intruder.communicate(timeout=60)
    assert int(out) == 100, "every connection from another uid must be closed unanswered"
    assert all(reply["ok"] for reply in ours)
    assert "ASIA" not in out
    # Logged once per interval (ThrottledLog), not once per connection: the first one of an interval, then
    # one line with the count of the rest. Stopping the daemon writes the count of an interval still open.
    assert daemon.stop() == 0
    logged = daemon.log.count(f"refused a connection from another user (uid {NOBODY}, pid")
    pattern = r"refused connections from other users: (\d+) more not logged one by one"
    summed = [int(count) for count in re.findall(pattern, daemon.log)]
    assert summed, daemon.log[-2000:]
    assert len(summed) <= logged  # a count only ever follows a line that was logged
    assert logged + sum(summed) == 100


@pytest.mark.parametrize(
    ("arrange", "words"),
    [
        pytest.param("owned-by-nobody", ("owned by uid 65534",), id="owned-by-another-user", marks=as_root),
        pytest.param("group-writable", ("other users can reach it",), id="group-writable"),
        pytest.param("world-readable", ("other users can reach it",), id="world-readable"),
        pytest.param("symlink", ("not a directory",), id="symlink-to-our-own-dir"),
    ],
)
def test_unsafe_socket_directory_is_refused_at_start_up(
    world: World, arrange: str, words: tuple[str, ...]
) -> None:
    directory = world.socket.parent
    if arrange == "symlink":
        real = world.runtime / "real"
        real.mkdir(mode=0o700)
        directory.symlink_to(real)
    else:
        directory.mkdir(mode=0o700)
        if arrange == "owned-by-nobody":
            os.chown(directory, NOBODY, NOBODY)
        else:
            os.chmod(directory, 0o770 if arrange == "group-writable" else 0o755)
    result = world.stsd("serve", timeout=30)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert str(directory) in line and all(word in line for word in words), line
    assert not (directory / "stsd.sock").exists()


# -- an impostor daemon ------------------------------------------------------------------------------------
_IMPOSTOR = textwrap.dedent(
    """
    import json, os, socket, sys
    path = sys.argv[1]
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o666)
    server.listen(16)
    print("ready", flush=True)
    fake = {"AWS_ACCESS_KEY_ID": "ASIAIMPOSTOR", "AWS_SECRET_ACCESS_KEY": "attacker", "AWS_SESSION_TOKEN": "x",
            "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z", "STSD_PROFILE": "p"}
    while True:
        conn, _ = server.accept()
        conn.makefile("rb").readline()
        conn.sendall(json.dumps({"v": 1, "ok": True, "project": {"path": "x", "name": "p"}, "vars": fake,
                                 "expiration": "2099-01-01T00:00:00Z", "refresh_at": 4070908800}).encode() + b"\\n")
        conn.close()
    """
)


@pytest.fixture
def planted_socket() -> Iterator[Path]:
    """Another user (nobody) creates the victim's /tmp fallback directory first and serves on it."""
    directory = Path(f"/tmp/stsd-{VICTIM}")
    if directory.exists():
        pytest.skip(f"{directory} exists already")
    directory.mkdir(mode=0o711)
    os.chown(directory, NOBODY, NOBODY)
    impostor = subprocess.Popen(
        as_user([SYSTEM_PYTHON, "-c", _IMPOSTOR, str(directory / "stsd.sock")]),
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert impostor.stdout is not None and impostor.stdout.readline().strip() == "ready"
        yield directory / "stsd.sock"
    finally:
        impostor.kill()
        impostor.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def victim_home() -> Iterator[Path]:
    # Outside pytest's tmp_path, which is private to us: the victim must reach its own home.
    home = Path(tempfile.mkdtemp(prefix="stsd-victim-", dir="/tmp"))
    os.chown(home, VICTIM, VICTIM)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@as_root
def test_client_refuses_a_socket_another_user_planted(victim_home: Path, planted_socket: Path) -> None:
    home = victim_home
    project = home / "app"
    project.mkdir()
    (project / ".stsd.toml").write_text('profile = "alice-sts"\n')
    for path in (project, project / ".stsd.toml"):
        os.chown(path, VICTIM, VICTIM)
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "STSD_NO_AUTOSTART": "1",
        "LANG": "C.UTF-8",
    }
    deadline = time.monotonic() + 5
    while not planted_socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = run_as(
        [SYSTEM_PYTHON, "-m", "stsd", "env", "--json", str(project)], VICTIM, env=env, cwd=str(home)
    )
    assert "ASIAIMPOSTOR" not in result.stdout
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert str(planted_socket.parent) in line, line


def test_socket_is_private_to_its_user(world: World, daemon: Daemon) -> None:
    info = world.socket.stat()
    assert info.st_uid == os.getuid() and info.st_mode & 0o077 == 0
    assert world.socket.parent.stat().st_mode & 0o077 == 0
    with socket.socket(socket.AF_UNIX) as sock:  # and it is a live daemon, answering us
        sock.connect(str(world.socket))
        sock.sendall(b'{"v": 1, "op": "ping"}\n')
        assert json.loads(sock.makefile("rb").readline())["ok"]
