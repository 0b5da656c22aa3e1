"""Shared pieces of the benchmarks: a result row, percentiles, timing a process, an isolated user world
(HOME, XDG dirs, ~/.aws files) and a real `stsd serve` daemon inside it, all against the local STS."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the fault proxy counts STS calls on the wire

from stsd.demo.local_aws import LocalAws  # noqa: E402


@dataclass(frozen=True)
class Row:
    """One line of the table: stsd's value against one peer's on the same metric."""

    section: str
    metric: str
    unit: str
    stsd: float | None
    peer_name: str
    peer: float | None
    higher_is_better: bool = False
    note: str = ""
    # stsd's advantage in each interleaved round: the run-to-run noise that decides "even".
    rounds: tuple[float, ...] = ()
    # The peer is a floor (the least the job can cost), not a competitor: the row says how far above it.
    floor: bool = False

    @property
    def verdict(self) -> str:
        """ "even" when the rounds disagree on who is ahead (1x lies within their spread) or the
        values are equal; otherwise ahead/BEHIND. A single figure (a count, a one-off) has no spread."""
        ratio = self.advantage
        if ratio is None:
            return "n/a"
        if self.floor:
            return "floor"
        if ratio == 1 or (len(self.rounds) >= 2 and min(self.rounds) <= 1 <= max(self.rounds)):
            return "even"
        return "ahead" if ratio > 1 else "BEHIND"

    @property
    def advantage(self) -> float | None:
        """How many times better stsd is than the peer (> 1: stsd ahead)."""
        if self.stsd is None or self.peer is None:
            return None
        if self.higher_is_better:
            return self.stsd / self.peer if self.peer else None
        return self.peer / self.stsd if self.stsd else float("inf")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def time_call(action: Callable[[], object], repeat: int) -> list[float]:
    """Wall seconds of each of `repeat` runs of `action`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def interleaved(
    actions: dict[str, Callable[[], object]], *, rounds: int, per_round: int
) -> dict[str, list[list[float]]]:
    """Wall seconds of each run, by name then by round; within a round the actions alternate run by
    run (A B A B), so load on the machine falls on all of them alike."""
    times: dict[str, list[list[float]]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name in actions:
            times[name].append([])
        for _ in range(per_round):
            for name, action in actions.items():
                start = time.perf_counter()
                action()
                times[name][-1].append(time.perf_counter() - start)
    return times


def timed_row(
    section: str,
    metric: str,
    stsd: list[list[float]],
    peer_name: str,
    peer: list[list[float]] | None,
    *,
    scale: float = 1e3,
    unit: str = "ms",
    stat: Callable[[Sequence[float]], float] = statistics.median,
    note: str = "",
    floor: bool = False,
) -> Row:
    """A row from interleaved rounds: the statistic over all runs, and per round the peer/stsd ratio."""

    def flat(rounds: list[list[float]]) -> list[float]:
        return [value for one in rounds for value in one]

    ratios = tuple(stat(p) / stat(s) for s, p in zip(stsd, peer or []) if stat(s))
    return Row(
        section,
        metric,
        unit,
        stat(flat(stsd)) * scale,
        peer_name,
        stat(flat(peer)) * scale if peer else None,
        note=note,
        rounds=ratios,
        floor=floor,
    )


def p99(values: Sequence[float]) -> float:
    return percentile(values, 0.99)


def run_checked(argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return result.stdout


# Run in a small launcher: a child forked from this (large) process would report our RSS as its peak.
_PEAK_RSS_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
)


def peak_rss_of(argv: Sequence[str], env: dict[str, str]) -> int:
    """Peak resident memory (bytes) of one run of a command, from the kernel's rusage."""
    code, kib = run_checked([sys.executable, "-c", _PEAK_RSS_LAUNCHER, *argv], env).split()
    if code != "0":
        raise RuntimeError(f"{argv[:3]} exited {code}")
    return int(kib) * 1024  # Linux reports KiB


@dataclass
class BenchWorld:
    """One user's world for a benchmark: HOME with ~/.aws, XDG dirs and a short socket path."""

    home: Path
    runtime: Path
    env: dict[str, str]

    @property
    def socket(self) -> Path:
        return Path(self.env["STSD_SOCKET"])

    def stsd(self, *args: str, cwd: Path | None = None) -> str:
        return run_checked([str(VENV_BIN / "stsd"), *args], self.env, cwd)

    def project(self, name: str, body: str, *, allow: bool = True) -> Path:
        directory = self.home / "src" / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ".stsd.toml").write_text(body)
        if allow:
            self.stsd("allow", str(directory))
        return directory


def one_request(path: str, message: dict) -> dict:
    """What a client does: connect to the daemon's socket, send one line, read one line."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


@contextmanager
def aws_environment(home: Path, endpoint: str) -> Iterator[None]:
    """botocore (in this process) reads the AWS files under `home` and talks to `endpoint`."""
    values = {
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def bench_world(aws: LocalAws, endpoint: str | None = None) -> Iterator[BenchWorld]:
    base = Path(tempfile.mkdtemp(prefix="stsd-bench-"))
    home = base / "home"
    home.mkdir()
    aws.write_aws_files(home)
    runtime = Path(tempfile.mkdtemp(prefix="stsd-rt-", dir="/tmp"))
    env = {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_RUNTIME_DIR": str(runtime),
        "STSD_SOCKET": str(runtime / "stsd" / "stsd.sock"),
        "AWS_ENDPOINT_URL": endpoint or aws.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "STSD_NO_AUTOSTART": "1",
        "PYTHONPATH": str(REPO),
    }
    try:
        yield BenchWorld(home=home, runtime=runtime, env=env)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


@contextmanager
def running_daemon(world: BenchWorld) -> Iterator[subprocess.Popen[bytes]]:
    """A real `stsd serve` in `world`; stopped with SIGTERM on exit."""
    log = (world.home / "daemon.log").open("ab")
    process = subprocess.Popen(
        [str(VENV_BIN / "stsd"), "serve", "--log-level", "warning"],
        env=world.env,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        _wait_listening(world.socket, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_listening(path: Path, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stsd serve exited {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("stsd serve did not listen in time")


# The project file every benchmark uses: the scenario's role profile (README: Quickstart).
ROLE_SETUP = 'profile = "alice-sts"\n'
