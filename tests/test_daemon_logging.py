"""The daemon's logging: refusals anyone can repeat are logged once per interval with a count (ThrottledLog,
on an injected clock); the detached daemon's log file is private, never opened through a link, capped and
rotated, and still receives crash tracebacks (real processes); a foreground daemon logs to stderr only."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO, Daemon, World, ask_daemon

from stsd.daemon.logfile import LOG_BACKUPS, LOG_MAX_BYTES
from stsd.daemon.throttled_log import ThrottledLog

# -- ThrottledLog ------------------------------------------------------------------------------------------


class Ticks:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def throttled(caplog: pytest.LogCaptureFixture) -> tuple[ThrottledLog, Ticks, pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="test.throttled")
    ticks = Ticks()
    return ThrottledLog(logging.getLogger("test.throttled"), interval_s=60, monotonic=ticks), ticks, caplog


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_a_repeated_event_is_logged_once_then_counted(throttled) -> None:
    log, ticks, caplog = throttled
    for uid in range(100):
        ticks.now += 0.1
        log.warning("refusals", "refused uid %d", uid)
    assert messages(caplog) == ["refused uid 0"]
    log.flush()  # the interval is not over: nothing to sum up yet
    assert messages(caplog) == ["refused uid 0"]
    ticks.now = 60.1
    log.flush()
    assert messages(caplog) == [
        "refused uid 0",
        "refusals: 99 more not logged one by one (at most one line per 60 s)",
    ]
    assert caplog.records[-1].levelno == logging.WARNING


def test_the_next_interval_logs_its_first_event_after_the_count_of_the_last(throttled) -> None:
    log, ticks, caplog = throttled
    log.info("refusals", "first")
    log.info("refusals", "second")
    ticks.now = 61
    log.info("refusals", "third")
    log.info("other", "another kind is not held back")
    assert messages(caplog) == [
        "first",
        "refusals: 1 more not logged one by one (at most one line per 60 s)",
        "third",
        "another kind is not held back",
    ]


def test_flushing_everything_at_shutdown_writes_open_counts(throttled) -> None:
    log, _ticks, caplog = throttled
    for _ in range(3):
        log.info("refusals", "refused")
    log.flush(everything=True)
    assert messages(caplog) == [
        "refused",
        "refusals: 2 more not logged one by one (at most one line per 60 s)",
    ]
    log.flush(everything=True)
    assert len(caplog.records) == 2


def test_events_below_the_logger_level_are_not_counted(throttled) -> None:
    log, _ticks, caplog = throttled
    log.log(logging.DEBUG, "refusals", "quiet")
    log.flush(everything=True)
    assert caplog.records == []


# -- rotation, in a process of its own (it replaces the process's stdout and stderr) -------------------------

_ROTATING_PROCESS = textwrap.dedent(
    """
    import logging, os, sys
    from stsd.daemon.logfile import RotatingLogHandler, open_log_file
    path = sys.argv[1]
    descriptor = open_log_file(path)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    os.close(descriptor)
    handler = RotatingLogHandler(path, max_bytes=4096, backups=3)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("rotating")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for number in range(400):
        log.info("line %04d %s", number, "x" * 80)
    print("printed after the last line")
    raise RuntimeError("crashed after line 0399")
    """
)


def test_log_file_is_capped_rotated_and_keeps_the_crash_traceback(tmp_path: Path) -> None:
    state = tmp_path / "state"
    path = state / "stsd.log"
    result = subprocess.run(
        [sys.executable, "-c", _ROTATING_PROCESS, str(path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == "" and result.stdout == ""  # all of it went to the log file
    files = [path, *(state / f"stsd.log.{n}" for n in (1, 2, 3))]
    assert sorted(p.name for p in state.iterdir()) == sorted(p.name for p in files)  # no stsd.log.4
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for file in files:
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert file.stat().st_size < 4096 + 200  # the cap, plus the one line that crossed it
    everything = "".join(file.read_text() for file in reversed(files))
    assert "line 0000" not in everything  # the oldest lines were rotated away
    assert everything.index("line 0398") < everything.index("line 0399")
    current = path.read_text()
    assert "printed after the last line" in current
    assert "Traceback (most recent call last)" in current
    assert current.rstrip().endswith("RuntimeError: crashed after line 0399")


# -- the detached daemon (`stsd start`) ----------------------------------------------------------------------


@pytest.fixture
def detached(world: World) -> Iterator[World]:
    """The world, with any daemon `stsd start` left behind stopped afterwards."""
    yield world
    try:
        pid: int | None = int((world.runtime / "stsd" / "stsd.pid").read_text())
    except (OSError, ValueError):
        pid = None
    world.stsd("stop", "--timeout", "5")
    if pid is not None and psutil.pid_exists(pid):
        os.kill(pid, signal.SIGKILL)


def test_start_rotates_a_full_log_before_it_writes(detached: World) -> None:
    world = detached
    world.state.mkdir(mode=0o700, parents=True)
    old = b"an old line\n" * (LOG_MAX_BYTES // 12 + 1)
    (world.state / "stsd.log").write_bytes(old)
    result = world.stsd("start")
    assert result.returncode == 0, result.stderr
    assert (world.state / "stsd.log.1").read_bytes() == old
    assert not (world.state / f"stsd.log.{LOG_BACKUPS + 1}").exists()
    assert world.stsd("stop").returncode == 0
    current = (world.state / "stsd.log").read_text()
    assert "serving on" in current and "an old line" not in current


def test_start_does_not_follow_a_link_planted_at_the_log_file(detached: World) -> None:
    world = detached
    world.state.mkdir(mode=0o700, parents=True)
    precious = world.home / "precious.txt"
    precious.write_text("keep me\n")
    os.chmod(precious, 0o644)
    (world.state / "stsd.log").symlink_to(precious)
    result = world.stsd("start")
    assert result.returncode == 0, result.stderr
    assert world.stsd("stop").returncode == 0
    assert precious.read_text() == "keep me\n"
    assert stat.S_IMODE(precious.stat().st_mode) == 0o644
    log_file = world.state / "stsd.log"
    assert not log_file.is_symlink()
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "serving on" in log_file.read_text()


def test_start_refuses_a_log_directory_others_can_reach(detached: World) -> None:
    world = detached
    world.state.mkdir(mode=0o755, parents=True)
    os.chmod(world.state, 0o755)
    result = world.stsd("start")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("stsd: ") and str(world.state) in line and "chmod 700" in line, line
    assert not (world.state / "stsd.log").exists()
    assert not world.socket.exists()


def test_a_foreground_daemon_logs_to_stderr_only(daemon: Daemon, world: World) -> None:
    [status] = ask_daemon(world.socket, {"op": "status"})
    assert status["daemon"]["log"] == "stderr"
    assert "serving on" in daemon.log
    assert not (world.state / "stsd.log").exists()
