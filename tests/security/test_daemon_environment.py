"""A daemon started by a client, from a shell or by `stsd start` typed inside a project, gets the user's
environment as it was before any project, less credentials and profile selectors: never the shell's
AWS_PROFILE or keys, never stsd's state, never a project's [env] (whose AWS_ENDPOINT_URL would send every
later project's AssumeRole, with the user's long-term keys, to a server the project chose)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest
from conftest import World

from .conftest import (
    ALICE,
    daemon_pid,
    proc_environ,
    role_project,
    run_stsd,
    shell_environment,
    stop_world_daemons,
    trusted_project,
)

NEVER_INHERITED = (
    "AWS_PROFILE",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "STSD_PROFILE",
)


class Recorder:
    """An HTTP listener on loopback that records every request it gets and answers 500."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                recorder.requests.append(f"{self.command} {self.path}")
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = _record

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    listener = Recorder()
    yield listener
    listener.close()


@pytest.fixture
def projects(world: World, recorder: Recorder) -> tuple[Path, Path]:
    a = trusted_project(world, "project-a", f'{ALICE}[env]\nAWS_ENDPOINT_URL = "{recorder.url}"\n')
    b = trusted_project(world, "project-b", role_project("beta"))
    return a, b


@pytest.fixture
def outer_shell(world: World, autostart: dict[str, str], open_shell):
    """A shell with autostart on and a user's stray AWS_PROFILE and secret exported before any project."""
    return open_shell(
        env={**autostart, "AWS_PROFILE": "nonexistent", "AWS_SECRET_ACCESS_KEY": "outer-secret"}
    )


def assert_clean_daemon_environment(world: World, recorder: Recorder) -> int:
    pid = daemon_pid(world)
    assert pid is not None, "no daemon was started"
    environment = proc_environ(pid)
    leaked = sorted(name for name in environment if name in NEVER_INHERITED or name.startswith("__STSD_"))
    assert leaked == [], f"the daemon inherited {leaked}"
    assert environment.get("AWS_ENDPOINT_URL") != recorder.url, "the daemon inherited project A's [env]"
    assert environment.get("AWS_ENDPOINT_URL") == world.aws.endpoint, "not the user's own endpoint"
    return pid


def caller_arn(world: World, environment: dict[str, str]) -> str:
    sts = boto3.client(
        "sts",
        endpoint_url=world.aws.endpoint,
        region_name=environment.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=environment["AWS_SESSION_TOKEN"],
    )
    return str(sts.get_caller_identity()["Arn"])


def test_autostarted_daemon_gets_the_environment_from_before_any_project(
    world: World, projects: tuple[Path, Path], recorder: Recorder, outer_shell
) -> None:
    a, b = projects
    shell = outer_shell

    shell.cd(a)  # no daemon: the client starts one
    assert_clean_daemon_environment(world, recorder)

    # The daemon goes away while the shell is inside A; the next transition starts one from A's shell.
    stop_world_daemons(world)
    assert daemon_pid(world, timeout=0) is None
    shell.cd(b)
    assert_clean_daemon_environment(world, recorder)

    in_b = shell_environment(shell)
    assert in_b.get("AWS_ACCESS_KEY_ID", "").startswith("ASIA"), in_b
    assert recorder.requests == [], "an STS request went to project A's endpoint"
    assert caller_arn(world, in_b).endswith(":assumed-role/alice-sts/beta")


def test_start_typed_inside_a_project_gets_the_environment_from_before_any_project(
    world: World, projects: tuple[Path, Path], recorder: Recorder, outer_shell
) -> None:
    a, _ = projects
    # Entering A from a daemon started cleanly (by `stsd start` outside any shell), so A is loaded whatever
    # an autostart would inherit; this test is about the `stsd start` typed afterwards, inside A.
    started = run_stsd("start", env=world.env, cwd=world.home)
    assert started.returncode == 0, started.stderr
    shell = outer_shell
    shell.cd(a)
    assert shell_environment(shell).get("AWS_ENDPOINT_URL") == recorder.url  # A's [env] is in the shell
    stop_world_daemons(world)

    shell.run("stsd start")
    assert shell.last_status == 0

    assert_clean_daemon_environment(world, recorder)
