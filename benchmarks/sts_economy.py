"""STS economy, counted on the wire: AssumeRole calls made by a real `stsd serve` answering real client
processes over a compressed timeline, against the same work done by processes with and without a cache.

Compressed timeline: the role profile asks for 900 s sessions (STS's minimum) and the daemon's config.toml
scales its renewal settings by the same 1/4 (renew_before 300 s, jitter 30 s, min_remaining 225 s: the
defaults are 1200, 120 and 900 for 1 h sessions). So 900 s of real time stand for an hour, and the
window (11 min by default) holds one renewal of every session. Each of N shells runs one AWS command
every 60 s (4 min at that scale), staggered across shells; for stsd each command is a real
`stsd credential-process` process. The 1, 10 and 100 shell timelines run side by side, each with its
own daemon and its own counting proxy in front of the local STS.

Peers, counted by the same kind of proxy: a botocore role profile resolved afresh per command (what
an SDK script or a tool without a shared cache does: one AssumeRole per process), and the AWS CLI's
disk cache across processes (five `aws` processes cost one AssumeRole, as five stsd clients do).
"""

from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import botocore.credentials
import botocore.session
from faultproxy import FaultProxy
from measure import (
    VENV_BIN,
    BenchWorld,
    LocalAws,
    Row,
    aws_environment,
    bench_world,
    run_checked,
    running_daemon,
)

from stsd.demo.local_aws import ROLE_NAME

SECTION = "STS economy"
SESSION_SECONDS = 900
SCALE = SESSION_SECONDS / 3600
SCALED_CONFIG = (
    f"renew_before_seconds = {round(1200 * SCALE)}\n"
    f"renew_jitter_seconds = {round(120 * SCALE)}\n"
    f"min_remaining_seconds = {round(900 * SCALE)}\n"
)
COMMAND_EVERY_SECONDS = 60.0


def _short_sessions(world: BenchWorld) -> None:
    with (world.home / ".aws" / "config").open("a") as config:
        config.write(f"duration_seconds = {SESSION_SECONDS}\n")  # the role profile is the file's last
    config_dir = Path(world.env["XDG_CONFIG_HOME"]) / "stsd"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.toml").write_text(SCALED_CONFIG)


def command_times(shells: int, window: float) -> list[tuple[float, int]]:
    """(seconds from the start, shell) of every command in the window; shells start staggered."""
    events = []
    for shell in range(shells):
        at = shell * COMMAND_EVERY_SECONDS / shells
        while at < window:
            events.append((at, shell))
            at += COMMAND_EVERY_SECONDS
    return sorted(events)


def run_timelines(worlds: dict[int, BenchWorld], window: float) -> dict[int, int]:
    """Fire every shell's commands on time as real client processes; returns commands run per timeline."""
    events = sorted((at, shells) for shells in worlds for at, _ in command_times(shells, window))
    running: list[subprocess.Popen[bytes]] = []
    started = time.monotonic()
    for at, shells in events:
        delay = started + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        running.append(
            subprocess.Popen(
                [str(VENV_BIN / "stsd"), "credential-process", ROLE_NAME],
                env=worlds[shells].env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        running = _reaped(running)
    for process in running:
        process.wait(60)
    _reaped(running)
    return {shells: len(command_times(shells, window)) for shells in worlds}


def _reaped(processes: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    still = []
    for process in processes:
        if process.poll() is None:
            still.append(process)
        elif process.returncode != 0:
            raise RuntimeError(f"stsd credential-process failed: {process.stderr.read()[-300:]!r}")  # type: ignore[union-attr]
    return still


def per_process_calls(commands: int, world: BenchWorld, proxy: FaultProxy) -> int:
    """A fresh botocore credential resolver per command, as a new process without a shared cache builds."""
    with aws_environment(world.home, proxy.endpoint):
        base = botocore.session.Session(profile=ROLE_NAME)
        proxy.reset_counts()
        for _ in range(commands):
            resolver = botocore.credentials.create_credential_resolver(base)
            resolver.load_credentials().get_frozen_credentials()
    return proxy.count("AssumeRole")


def five_processes(aws: LocalAws) -> list[Row]:
    """Five processes in a row wanting the role's credentials, each peer with its own cache (or none)."""
    counts = {}
    commands = {
        "stsd": [str(VENV_BIN / "stsd"), "credential-process", ROLE_NAME],
        "aws-cli": [str(VENV_BIN / "aws"), "sts", "get-caller-identity", "--profile", ROLE_NAME],
        "boto3": [str(VENV_BIN / "python"), "-c",
                  f"import boto3; boto3.Session(profile_name={ROLE_NAME!r}).get_credentials().get_frozen_credentials()"],
    }  # fmt: skip
    for name, argv in commands.items():
        with FaultProxy(aws.endpoint) as proxy, bench_world(aws, endpoint=proxy.endpoint) as world:
            with running_daemon(world) if name == "stsd" else ExitStack():
                for _ in range(5):
                    run_checked(argv, world.env)
            counts[name] = proxy.count("AssumeRole")
    return [
        Row(SECTION, "AssumeRole calls, 5 processes in a row wanting the role", "calls",
            counts["stsd"], "AWS CLI, its disk cache (~/.aws/cli/cache)", counts["aws-cli"]),
        Row(SECTION, "AssumeRole calls, 5 processes in a row wanting the role", "calls",
            counts["stsd"], "boto3 scripts (no cache shared across processes)", counts["boto3"]),
    ]  # fmt: skip


def measure(aws: LocalAws, *, shells: tuple[int, ...] = (1, 10, 100), window: float = 660.0) -> list[Row]:
    rows = five_processes(aws)
    with ExitStack() as stack:
        worlds: dict[int, BenchWorld] = {}
        proxies: dict[int, FaultProxy] = {}
        for count in shells:
            proxies[count] = stack.enter_context(FaultProxy(aws.endpoint))
            worlds[count] = stack.enter_context(bench_world(aws, endpoint=proxies[count].endpoint))
            _short_sessions(worlds[count])
            stack.enter_context(running_daemon(worlds[count]))
        commands = run_timelines(worlds, window)
        ours = {count: proxies[count].count("AssumeRole") for count in shells}
        for count in shells:
            peer = per_process_calls(commands[count], worlds[count], proxies[count])
            rows.append(
                Row(
                    SECTION,
                    f"AssumeRole calls, {count} shell{'s' if count > 1 else ''}, {window / 60:.0f} min of "
                    f"{SESSION_SECONDS} s sessions (= {window / 60 / SCALE:.0f} min of 1 h ones), "
                    f"a command per shell every {COMMAND_EVERY_SECONDS:.0f} s, real client processes",
                    "calls",
                    ours[count],
                    "botocore role profile per process (SDK scripts, no shared cache)",
                    peer,
                    note=f"{commands[count]} commands",
                )
            )
    return rows
