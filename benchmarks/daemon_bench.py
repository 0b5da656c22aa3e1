"""The daemon itself, each figure beside what it is fairly compared with:

- its floor: a minimal asyncio echo server on a Unix socket, one connection per request, against the
  hook's request (`env` by directory) with 1 and with 200 sessions held;
- a peer's own cache: botocore's in-memory credentials inside one process (no socket at all);
- a tool without a cache: an AssumeRole round trip per request (1/10/100 concurrent clients);
- the cold round: 200 roles asked for by 1,000 concurrent clients at once, with and without 100 ms of
  latency injected in front of the local STS: SDK clients without a deadline (p99, AssumeRole calls on the
  wire), then shells through the hook's own client and its 1 s deadline (waits, `pending` answers and
  credentials at the next prompt, clients past 1 s);
- memory idle, with 200 sessions, and per session.

Every timing row is measured in interleaved rounds (stsd, peer, stsd, peer, ...); the local STS runs as
its own process (benchmarks/run.py), so no peer shares an interpreter with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import botocore.session
import psutil
from faultproxy import FaultProxy
from hook_clients import MAX_ASKS
from measure import (
    VENV_BIN,
    BenchWorld,
    LocalAws,
    Row,
    aws_environment,
    bench_world,
    interleaved,
    median,
    one_request,
    p99,
    peak_rss_of,
    run_checked,
    running_daemon,
    timed_row,
)

from stsd.demo.local_aws import EXTERNAL_ID, ROLE_ARN, ROLE_NAME, USER_NAME, role_profile

SECTION = "Daemon"
MiB = 1024 * 1024
FLOOR = "asyncio echo server, Unix socket (floor)"
CREDENTIALS_REQUEST = {"v": 1, "op": "credentials", "profile": ROLE_NAME}
HOOK_TIMEOUT_SECONDS = 1.0
# The helper processes (load, cold-round clients, echo floor): standard library only, quick to start.
CLIENTS = str(Path(__file__).with_name("load_clients.py"))


def add_profiles(world: BenchWorld, count: int) -> list[str]:
    """`count` extra role profiles, each a distinct role request (its own session name)."""
    names = [f"{ROLE_NAME}-{i:03d}" for i in range(count)]
    with (world.home / ".aws" / "config").open("a") as config:
        config.writelines("\n" + role_profile(name, session_name=name) for name in names)
    return names


@contextmanager
def echo_server(directory: Path) -> Iterator[str]:
    """The floor: the least a daemon on a Unix socket can do per request, in its own process."""
    path = str(directory / "echo.sock")
    process = subprocess.Popen([sys.executable, CLIENTS, "--echo", path])
    try:
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the echo server did not start")
            time.sleep(0.02)
        yield path
    finally:
        process.terminate()
        process.wait(10)


def _sts_client(aws: LocalAws):  # type: ignore[no-untyped-def]
    assert aws.alice is not None
    return aws.client("sts", aws.alice.access_key_id, aws.alice.secret_access_key)


def _assume(client) -> None:  # type: ignore[no-untyped-def]
    client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="bench", ExternalId=EXTERNAL_ID)


def _daemon_throughput(socket_path: Path, clients: int, seconds: float) -> float:
    # A separate process drives the load so the measuring side does not share the daemon's CPU accounting.
    out = run_checked(
        [sys.executable, CLIENTS, "--throughput", str(socket_path), str(clients), str(seconds)],
        {"PATH": "/usr/bin:/bin"},
    )
    return float(out)


def _peer_throughput(aws: LocalAws, clients: int, seconds: float) -> float:
    stsclients = [_sts_client(aws) for _ in range(clients)]
    done = [0] * clients
    deadline = time.monotonic() + seconds

    def work(index: int) -> None:
        while time.monotonic() < deadline:
            _assume(stsclients[index])
            done[index] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.monotonic() - start)


def measure(aws: LocalAws, *, requests: int = 2000, seconds: float = 2.0, rounds: int = 5) -> list[Row]:
    rows: list[Row] = []
    per_round = max(1, requests // rounds)
    with (
        bench_world(aws) as world,
        bench_world(aws) as busy_world,
        echo_server(world.runtime) as echo,
    ):
        # Two daemons side by side, one holding 1 session and one holding 200, asked in turn with the
        # floor (A B C A B C ...): a difference between them is not a change of load between two runs.
        project = world.project("project", 'profile = "alice-sts"\n')
        busy_project = busy_world.project("project", 'profile = "alice-sts"\n')
        env_request = {"v": 1, "op": "env", "dir": str(project)}
        busy_request = {"v": 1, "op": "env", "dir": str(busy_project)}
        profiles = add_profiles(busy_world, 199)  # with alice-sts itself: 200 sessions
        with running_daemon(world), running_daemon(busy_world) as busy_process:
            path, busy_path = str(world.socket), str(busy_world.socket)
            daemon = psutil.Process(busy_process.pid)
            one_request(busy_path, {"v": 1, "op": "ping"})
            idle_rss = daemon.memory_info().rss
            assert one_request(path, env_request)["ok"], "the daemon could not assume the role"
            assert one_request(busy_path, busy_request)["ok"], "the daemon could not assume the role"
            one_rss = daemon.memory_info().rss  # botocore and its STS model loaded: the cost of the first
            for name in profiles:
                reply = one_request(busy_path, {"v": 1, "op": "credentials", "profile": name})
                assert reply["ok"], reply
            sessions = len(one_request(busy_path, {"v": 1, "op": "status"})["sessions"])
            busy_rss = daemon.memory_info().rss  # before the load below, whose buffers would count too

            times = interleaved(
                {
                    "one": lambda: one_request(path, env_request),
                    "busy": lambda: one_request(busy_path, busy_request),
                    "floor": lambda: one_request(echo, env_request),
                },
                rounds=rounds,
                per_round=per_round,
            )
            metric = "`env` by directory (the hook's request), {} held, {}"
            for key, held in (("one", "1 session"), ("busy", f"{sessions} sessions")):
                for label, stat in (("median", median), ("p99", p99)):
                    rows.append(
                        timed_row(SECTION, metric.format(held, label), times[key], FLOOR, times["floor"],
                                  stat=stat, floor=True)
                    )  # fmt: skip
            rows.append(
                timed_row(
                    SECTION,
                    metric.format(f"{sessions} sessions", "median"),
                    times["busy"],
                    "the same daemon holding 1 session",
                    times["one"],
                    note="> 1x: faster with more sessions held",
                )
            )

            # The peer's own cache: botocore keeps resolved role credentials in the process.
            with aws_environment(world.home, world.env["AWS_ENDPOINT_URL"]):
                credentials = botocore.session.Session(profile=ROLE_NAME).get_credentials()
                credentials.get_frozen_credentials()
                times = interleaved(
                    {
                        "stsd": lambda: one_request(path, CREDENTIALS_REQUEST),
                        "botocore": credentials.get_frozen_credentials,
                    },
                    rounds=rounds,
                    per_round=per_round,
                )
            rows.append(
                timed_row(
                    SECTION,
                    "credentials of a held session, asked from inside one process, median",
                    times["stsd"],
                    "botocore's in-memory credentials (same process)",
                    times["botocore"],
                    scale=1e6,
                    unit="us",
                    note="a peer's own cache wins in-process: no socket to cross",
                )
            )

            sts = _sts_client(aws)
            _assume(sts)
            for clients in (1, 10, 100):
                ours: list[float] = []
                theirs: list[float] = []
                for _ in range(3):  # rounds: stsd, peer, stsd, peer, ...
                    ours.append(_daemon_throughput(world.socket, clients, seconds))
                    theirs.append(_peer_throughput(aws, clients, seconds))
                rows.append(
                    Row(
                        SECTION,
                        f"throughput, {clients} concurrent client{'s' if clients > 1 else ''}, median of 3",
                        "req/s",
                        sorted(ours)[1],
                        "AssumeRole per request (a tool without a cache)",
                        sorted(theirs)[1],
                        higher_is_better=True,
                        rounds=tuple(o / t for o, t in zip(ours, theirs)),
                    )
                )

        aws_argv = [str(VENV_BIN / "aws"), "sts", "assume-role", "--profile", USER_NAME, "--role-arn",
                    ROLE_ARN, "--role-session-name", "bench", "--external-id", EXTERNAL_ID]  # fmt: skip
        # Three runs of each peer: their spread is the noise that decides "even".
        aws_rss = [peak_rss_of(aws_argv, world.env) for _ in range(3)]
        awsume_rss = [peak_rss_of([str(VENV_BIN / "awsumepy"), ROLE_NAME], world.env) for _ in range(3)]
        for label, rss in (("idle", idle_rss), (f"{sessions} sessions", busy_rss)):
            for peer_name, peer_rss in (
                ("peak of one `aws sts assume-role` process", aws_rss),
                ("peak of one awsume process", awsume_rss),
            ):
                rows.append(
                    Row(SECTION, f"daemon memory (RSS), {label}", "MiB", rss / MiB, peer_name,
                        median(peer_rss) / MiB, rounds=tuple(peak / rss for peak in peer_rss))
                )  # fmt: skip
        rows.append(
            Row(
                SECTION,
                "daemon memory per session held",
                "KiB",
                (busy_rss - one_rss) / (sessions - 1) / 1024,
                "-",
                None,
                note=f"(RSS with {sessions} sessions - RSS with 1) / {sessions - 1}; "
                f"the first session costs {(one_rss - idle_rss) / MiB:.1f} MiB (botocore, the STS model)",
            )
        )
    rows.extend(cold_round(aws, roles=200, clients=1000))
    return rows


# -- the cold round ----------------------------------------------------------------------------------------
HOOK_CLIENTS = str(Path(__file__).with_name("hook_clients.py"))
HOOK_WORKERS = 8  # processes the hook clients are spread over (threads in each): no one GIL for all
NEXT_PROMPT_S = 2.0  # when a client told `pending` asks again: a user's next prompt, a moment later


def cold_round(aws: LocalAws, *, roles: int, clients: int) -> list[Row]:
    """A fresh daemon and `roles` roles it does not hold yet, twice for each STS latency: `clients` SDK
    clients at once (`credentials`, no deadline: they wait for STS), then as many shells entering
    `roles` projects at once through the hook's own client (a 1 s deadline: `pending` rather than wait)."""
    rows: list[Row] = []
    for latency in (0.0, 0.1):
        label = (
            f"cold round, {roles} roles, {clients:,} "
            + "{} at once, "
            + (f"STS + {latency * 1e3:.0f} ms injected" if latency else "local STS as it is")
        )
        with FaultProxy(aws.endpoint) as proxy, bench_world(aws, endpoint=proxy.endpoint) as world:
            profiles = add_profiles(world, roles)
            if latency:
                proxy.set_mode("slow", slow_seconds=latency)
            with running_daemon(world):
                proxy.reset_counts()
                out = run_checked(
                    [sys.executable, CLIENTS, "--cold", str(world.socket), str(clients), *profiles],
                    {"PATH": "/usr/bin:/bin"},
                )
            result = json.loads(out)
            sdk = label.format("SDK clients (`credentials`, no deadline)")
            note = f"{result['failed']} failed; GetCallerIdentity calls: {proxy.count('GetCallerIdentity')}"
            rows.append(
                Row(SECTION, f"{sdk}: p99", "ms", p99(result["latencies"]) * 1e3, "-", None, note=note)
            )
            rows.append(
                Row(SECTION, f"{sdk}: AssumeRole calls", "calls", proxy.count("AssumeRole"), "-", None)
            )
        with FaultProxy(aws.endpoint) as proxy, bench_world(aws, endpoint=proxy.endpoint) as world:
            directories = _trusted_projects(world, add_profiles(world, roles))
            if latency:
                proxy.set_mode("slow", slow_seconds=latency)
            with running_daemon(world):
                proxy.reset_counts()
                answers = _hook_round(world, [directories[i % roles] for i in range(clients)])
            rows.extend(_hook_rows(label.format("shells (the hook's client, 1 s deadline)"), answers, proxy))
    return rows


def _trusted_projects(world: BenchWorld, profiles: list[str]) -> list[str]:
    """A trusted project per profile, trusted as `stsd allow` does (in this process: 200 processes would
    take longer than the round)."""
    from stsd.project.projectfile import load_project_file
    from stsd.project.trust import TrustStore

    store = TrustStore(Path(world.env["XDG_DATA_HOME"]) / "stsd" / "trust")
    directories = []
    for name in profiles:
        directory = world.project(f"cold-{name}", f'profile = "{name}"\n', allow=False)
        project = load_project_file(directory / ".stsd.toml")
        store.allow(project.path, project.content)
        directories.append(str(directory))
    return directories


def _hook_round(world: BenchWorld, directories: list[str]) -> list[dict]:
    """Every client asks at once (the workers' threads wait for one line on stdin); each client's waits and
    answers, first ask first."""
    shares = [directories[i::HOOK_WORKERS] for i in range(HOOK_WORKERS)]
    env = {**world.env, "PATH": "/usr/bin:/bin"}
    env.pop("STSD_TIMEOUT", None)  # the hook's default deadline
    workers = [
        subprocess.Popen(
            [sys.executable, HOOK_CLIENTS, str(NEXT_PROMPT_S), *share],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
    ]
    time.sleep(1.0)  # every worker's threads started and waiting
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    answers: list[dict] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=300)
        if worker.returncode != 0:
            raise RuntimeError(f"hook clients exited {worker.returncode}")
        answers.extend(json.loads(out))
    return answers


def _hook_rows(label: str, answers: list[dict], proxy: FaultProxy) -> list[Row]:
    """Outcomes per client: "credentials", or pending for a reason (fetching, busy, late: hook_clients)."""
    first_waits = [a["waits"][0] for a in answers]
    firsts = Counter(a["outcomes"][0] for a in answers)
    pending = [a for a in answers if a["outcomes"][0] != "credentials"]
    at_next = sum(1 for a in pending if a["outcomes"][1:2] == ["credentials"])
    never = sum(1 for a in answers if a["outcomes"][-1] != "credentials")
    all_waits = [wait for a in answers for wait in a["waits"]]
    past = sum(1 for a in answers if max(a["waits"]) > HOOK_TIMEOUT_SECONDS)
    reasons = ", ".join(f"{firsts[r]} {r}" for r in ("fetching", "busy", "late") if firsts[r])
    prompts = sorted(len(a["outcomes"]) for a in answers if a["outcomes"][-1] == "credentials")
    served = sorted(a["credentials_after"] for a in answers if a["credentials_after"] is not None)
    return [
        Row(SECTION, f"{label}: p99 of the first wait", "ms", p99(first_waits) * 1e3, "-", None,
            note=f"every ask: p99 {p99(all_waits) * 1e3:,.0f} ms, max {max(all_waits) * 1e3:,.0f} ms"),
        Row(SECTION, f"{label}: clients that waited past the hook's {HOOK_TIMEOUT_SECONDS:.0f} s timeout",
            "clients", past, "-", None, note="at any of their asks"),
        Row(SECTION, f"{label}: credentials at the first prompt", "clients", firsts["credentials"], "-", None),
        Row(SECTION, f"{label}: `pending` at the first prompt, credentials at the next ({NEXT_PROMPT_S:.0f} s later)",
            "clients", at_next, "-", None,
            note=f"of {len(pending)} pending ({reasons or 'none'}); {len(pending) - at_next - never} needed "
            f"more prompts; {never} had no credentials after {MAX_ASKS} prompts"),
        Row(SECTION, f"{label}: every client's credentials, p99 from the first ask", "ms",
            p99(served) * 1e3 if served else None, "-", None,
            note=f"prompts needed: median {median(prompts) if prompts else 0:.0f}, "
            f"max {max(prompts) if prompts else 0}; a prompt every {NEXT_PROMPT_S:.0f} s, all in step"),
        Row(SECTION, f"{label}: AssumeRole calls", "calls", proxy.count("AssumeRole"), "-", None),
    ]  # fmt: skip


if __name__ == "__main__":
    subprocess.run([sys.executable, str(Path(__file__).with_name("run.py")), "--only", "daemon"], check=False)
