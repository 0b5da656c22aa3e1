"""`stsd start` / `stsd stop`: a background daemon with a locked pid file; idempotent start, stale pid
files recognised and replaced, and a stop that escalates to SIGKILL for a daemon that does not stop."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import STSD, Daemon, World, ask_daemon


@pytest.fixture
def detached(world: World) -> Iterator[World]:
    """The world, with any daemon `stsd start` left behind stopped afterwards."""
    yield world
    pid = read_pid(world)
    world.stsd("stop", "--timeout", "2")
    if pid is not None and psutil.pid_exists(pid):
        os.kill(pid, signal.SIGKILL)


def pid_file(world: World) -> Path:
    return world.runtime / "stsd" / "stsd.pid"


def read_pid(world: World) -> int | None:
    try:
        return int(pid_file(world).read_text())
    except (OSError, ValueError):
        return None


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start(world: World) -> int:
    result = world.stsd("start")
    assert result.returncode == 0, result.stderr
    return ask_daemon(world.socket, {"op": "ping"})[0]["pid"]


def test_start_runs_a_detached_daemon_and_stop_ends_it(detached: World) -> None:
    world = detached
    result = world.stsd("start")
    assert result.returncode == 0, result.stderr
    [ping] = ask_daemon(world.socket, {"op": "ping"})
    pid = ping["pid"]
    log_file = world.state / "stsd.log"
    assert result.stdout.strip() == f"stsd: started (pid {pid}), logs: {log_file}"
    assert read_pid(world) == pid
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    [status] = ask_daemon(world.socket, {"op": "status"})
    assert status["daemon"]["mode"] == "detached"
    assert status["daemon"]["log"] == str(log_file)
    assert psutil.Process(pid).ppid() != os.getpid()  # really detached, not our child

    stopped = world.stsd("stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == f"stsd: stopped (pid {pid})"
    assert gone(pid)
    assert not world.socket.exists()
    assert not pid_file(world).exists()
    assert "shutting down" in log_file.read_text()


def test_second_start_is_a_quiet_success_with_the_same_daemon(detached: World) -> None:
    world = detached
    first = start(world)
    again = world.stsd("start")
    assert again.returncode == 0
    assert again.stdout.strip() == f"stsd: already running (pid {first})"
    assert again.stderr == ""
    assert ask_daemon(world.socket, {"op": "ping"})[0]["pid"] == first


def test_stop_when_nothing_runs_says_so_and_succeeds(detached: World) -> None:
    result = detached.stsd("stop")
    assert result.returncode == 0
    assert result.stdout.strip() == "stsd: not running"


def test_start_replaces_a_pid_file_left_by_a_dead_daemon(detached: World) -> None:
    world = detached
    finished = subprocess.Popen(["true"])
    finished.wait()  # a pid that no longer runs anything
    pid_file(world).parent.mkdir(mode=0o700, parents=True)
    pid_file(world).write_text(f"{finished.pid}\n")
    result = world.stsd("start")
    assert result.returncode == 0, result.stderr
    assert (
        f"replacing stale pid file {pid_file(world)} (pid {finished.pid} is not running stsd)"
        in result.stderr
    )
    assert read_pid(world) == ask_daemon(world.socket, {"op": "ping"})[0]["pid"]


def test_stale_pid_file_naming_an_unrelated_process_never_gets_it_signalled(detached: World) -> None:
    world = detached
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pid_file(world).parent.mkdir(mode=0o700, parents=True)
        pid_file(world).write_text(f"{bystander.pid}\n")  # the pid was reused by someone else
        stop = world.stsd("stop")
        assert stop.returncode == 0
        assert stop.stdout.strip() == "stsd: not running"
        assert not pid_file(world).exists()
        pid_file(world).write_text(f"{bystander.pid}\n")
        started = start(world)
        assert started != bystander.pid
        assert bystander.poll() is None  # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_kills_a_daemon_that_does_not_stop_on_sigterm(detached: World) -> None:
    world = detached
    pid = start(world)
    # A stopped process cannot act on SIGTERM: the daemon is hung as far as `stsd stop` can tell.
    os.kill(pid, signal.SIGSTOP)
    result = world.stsd("stop", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"stsd: the daemon (pid {pid}) did not stop within 1 s; killed it (SIGKILL)"
    )
    assert gone(pid)
    assert not world.socket.exists()  # the killed daemon could not remove them itself
    assert not pid_file(world).exists()
    assert start(world) != pid


def test_start_that_fails_shows_why_from_the_log(detached: World) -> None:
    world = detached
    config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("renew_before_seconds = -5\n")
    result = world.stsd("start")
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == "stsd: the daemon exited during start-up:"
    assert f"stsd: {config}: renew_before_seconds: expected" in result.stderr
    assert not world.socket.exists()


def test_stop_also_ends_a_foreground_daemon_found_by_ping(daemon: Daemon, world: World) -> None:
    result = world.stsd("stop")
    assert result.returncode == 0
    assert result.stdout.strip() == f"stsd: stopped (pid {daemon.process.pid})"
    assert daemon.process.wait(10) == 0


def test_simultaneous_starts_leave_exactly_one_daemon(detached: World) -> None:
    world = detached
    starters = [
        subprocess.Popen(
            [*STSD, "start"], env=world.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outcomes = [(starter.wait(30), starter.communicate()[0].strip()) for starter in starters]
    [ping] = ask_daemon(world.socket, {"op": "ping"})
    pid = ping["pid"]
    assert all(code == 0 for code, _ in outcomes), outcomes
    said = sorted(text for _, text in outcomes)
    assert said.count(f"stsd: started (pid {pid}), logs: {world.state / 'stsd.log'}") == 1
    assert said.count(f"stsd: already running (pid {pid})") == 3
    assert read_pid(world) == pid


def test_stop_leaves_a_systemd_run_daemon_to_systemctl(world: World) -> None:
    # INVOCATION_ID is what systemd sets for every unit it runs.
    managed = Daemon(world, extra_env={"INVOCATION_ID": "0123456789abcdef0123456789abcdef"})
    try:
        result = world.stsd("stop")
        assert result.returncode == 1
        assert (
            result.stderr.strip()
            == "stsd: the daemon is run by systemd; run: systemctl --user stop stsd.socket stsd.service"
        )
        assert managed.process.poll() is None
    finally:
        assert managed.stop() == 0
