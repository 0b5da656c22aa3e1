"""A session lives while a project file or profile names it: an edit that changes the request, a deleted,
denied or untrusted file, a profile removed from ~/.aws/config ends it at once (it stops renewing and
leaves status), while a session another project or profile still names keeps renewing. Labels say which
file(s) and which role.

Status and requests are asked of a real `stsd serve`; renewals over hours are counted on the service and
session manager in this process, with a FakeClock against the real local STS (tests/test_sessions.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from conftest import STSD, Daemon, World, ask_daemon
from harness import Harness, harness, in_process_service
from test_endpoint import ENDPOINT_PROJECT, get

from stsd import paths
from stsd.daemon.service import Service
from stsd.daemon.sessions import SWEEP_INTERVAL_SECONDS
from stsd.demo.local_aws import ROLE_ARN, ROLE_NAME

ROLE = f'profile = "{ROLE_NAME}"\n'
HOURS = 3
STEP_S = 300  # a renewal loop look every 5 min of the fake clock


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def named(session_name: str) -> str:
    """A project naming the role with its own session name: a distinct request, the same role."""
    return ROLE + f'role_session_name = "{session_name}"\n'


def status(world: World) -> list[dict[str, Any]]:
    [reply] = ask_daemon(world.socket, {"op": "status"})
    assert reply["ok"], reply
    return list(reply["sessions"])


def env(world: World, directory: Path) -> dict[str, Any]:
    [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(directory)})
    return dict(reply)


def allow(world: World, directory: Path) -> None:
    allowed = world.stsd("allow", str(directory))
    assert allowed.returncode == 0, allowed.stderr


def project_label(name: str) -> str:
    return f"~/{name}/.stsd.toml"


# -- the real daemon: status -------------------------------------------------------------------------------


def test_three_edits_leave_one_session_labelled_with_the_file_and_role(daemon: Daemon, world: World) -> None:
    project = world.project("app", named("v1"))
    for version in ("v1", "v2", "v3"):
        (project / ".stsd.toml").write_text(named(version))
        allow(world, project)  # as a user does after each edit
        assert env(world, project)["ok"]

    [session] = status(world)
    assert session["session_name"] == "v3"
    assert session["label"] == f"{project_label('app')} → {ROLE_ARN}"
    assert session["used_by"] == [project_label("app")]

    text = world.stsd("status", cwd=str(project))
    assert text.returncode == 0, text.stderr
    assert f"  {project_label('app')} → {ROLE_ARN}" in text.stdout.splitlines()
    latin1 = subprocess.run(
        [*STSD, "status"],
        env={**world.env, "PYTHONIOENCODING": "latin-1"},
        cwd=str(project),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert f"  {project_label('app')} ? {ROLE_ARN}" in latin1.stdout.splitlines(), latin1.stderr
    as_json = json.loads(world.stsd("status", "--json", cwd=str(project)).stdout)
    assert [s["label"] for s in as_json["sessions"]] == [session["label"]]
    assert daemon.log.count("names it any more; forgotten") == 2


def test_an_edit_not_yet_allowed_ends_the_session_at_the_next_request(daemon: Daemon, world: World) -> None:
    project = world.project("app", named("v1"))
    allow(world, project)
    assert env(world, project)["ok"]
    (project / ".stsd.toml").write_text(named("v2"))

    refused = env(world, project)

    assert refused["error"]["code"] == "untrusted"
    assert status(world) == []


def test_two_projects_share_a_session_and_deleting_one_keeps_it(daemon: Daemon, world: World) -> None:
    first, second = world.project("a", ROLE), world.project("b", ROLE)
    for directory in (first, second):
        allow(world, directory)
        assert env(world, directory)["ok"]
    [shared] = status(world)
    assert shared["used_by"] == [project_label("a"), project_label("b")]
    assert shared["label"] == f"{project_label('a')}, {project_label('b')} → {ROLE_ARN}"

    (first / ".stsd.toml").unlink()
    [kept] = status(world)  # no request for either directory: status re-checks every file
    assert kept["used_by"] == [project_label("b")]
    assert kept["expires_at"] == shared["expires_at"]  # the same session, not a new one

    (second / ".stsd.toml").unlink()
    assert status(world) == []


def test_a_denied_project_and_a_removed_profile_end_their_sessions(daemon: Daemon, world: World) -> None:
    project = world.project("app", named("app"))
    allow(world, project)
    assert env(world, project)["ok"]
    credentials = world.stsd("credential-process", "--profile", ROLE_NAME)
    assert credentials.returncode == 0, credentials.stderr
    assert {s["label"] for s in status(world)} == {
        f"{project_label('app')} → {ROLE_ARN}",
        f"profile {ROLE_NAME} → {ROLE_ARN}",
    }

    world.stsd("deny", str(project), check=True)
    [left] = status(world)
    assert left["used_by"] == [f"profile {ROLE_NAME}"]

    config = world.home / ".aws" / "config"
    config.write_text(config.read_text().split(f"[profile {ROLE_NAME}]")[0])
    assert status(world) == []


def test_a_token_kept_over_a_restart_names_its_projects_session(daemon: Daemon, world: World) -> None:
    project = world.project("app", ENDPOINT_PROJECT)
    allow(world, project)
    variables = world.env_json(project)
    daemon.stop()
    again = Daemon(world)  # a restart: the process's URL and token stay valid, the daemon knows no file yet
    try:
        answered, body = get(
            variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        )
        assert answered == 200, body
        [session] = status(world)
        assert session["used_by"] == [project_label("app")]
    finally:
        again.stop()


# -- renewals over hours, on a fake clock ------------------------------------------------------------------


async def ask_env(service: Service, directory: Path) -> dict[str, Any]:
    reply = await service.handle({"v": 1, "op": "env", "dir": str(directory)})
    assert reply["ok"], reply
    return reply


async def renewals_over(h: Harness, hours: int) -> tuple[int, dict[str, set[str]]]:
    """AssumeRole calls while the clock runs `hours`, and the access keys each held session had."""
    calls = h.manager.assume_role_calls
    keys: dict[str, set[str]] = {}
    for _ in range(hours * 3600 // STEP_S):
        await h.advance(STEP_S)
        for session in h.manager.sessions():
            if session.credentials is not None:
                keys.setdefault(session.session_name or "", set()).add(session.credentials.access_key_id)
    return h.manager.assume_role_calls - calls, keys


def test_old_sessions_stop_renewing_after_three_edits(world_env: World, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            service = in_process_service(h, tmp_path, Path(paths.trust_dir()))
            project = world_env.project("app", named("v1"))
            for version in ("v1", "v2", "v3"):
                (project / ".stsd.toml").write_text(named(version))
                allow(world_env, project)
                await ask_env(service, project)
            assert h.manager.assume_role_calls == 3

            calls, keys = await renewals_over(h, HOURS)

            assert list(keys) == ["v3"]  # the only session held all along
            renewals = len(keys["v3"]) - 1
            assert renewals >= HOURS  # renewed about every 40 min
            assert calls == renewals  # and nothing else cost an AssumeRole

    run(scenario())


def test_the_sweep_ends_a_deleted_files_session_that_nobody_asks_about(
    world_env: World, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            service = in_process_service(h, tmp_path, Path(paths.trust_dir()))
            gone, kept = world_env.project("gone", named("gone")), world_env.project("kept", named("kept"))
            for directory in (gone, kept):
                allow(world_env, directory)
                await ask_env(service, directory)
            assert h.manager.session_count() == 2

            (gone / ".stsd.toml").unlink()
            await h.advance(SWEEP_INTERVAL_SECONDS)  # no request, no status: the loop's sweep sees it
            assert [s.session_name for s in h.manager.sessions()] == ["kept"]

            calls, keys = await renewals_over(h, HOURS)
            assert list(keys) == ["kept"]
            assert calls == len(keys["kept"]) - 1 >= HOURS

    run(scenario())


def test_a_shared_session_keeps_renewing_while_one_project_still_names_it(
    world_env: World, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            service = in_process_service(h, tmp_path, Path(paths.trust_dir()))
            first, second = world_env.project("a", ROLE), world_env.project("b", ROLE)
            for directory in (first, second):
                allow(world_env, directory)
                await ask_env(service, directory)
            assert h.manager.assume_role_calls == 1  # one session for both

            (first / ".stsd.toml").unlink()
            calls, keys = await renewals_over(h, HOURS)

            [session] = (await service.handle({"v": 1, "op": "status"}))["sessions"]
            assert session["used_by"] == [project_label("b")]
            assert len(keys) == 1 and calls == len(next(iter(keys.values()))) - 1 >= HOURS

    run(scenario())


def test_readme_states_the_sweep_interval_the_daemon_uses() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("### Sessions in status") :].split("\n### ")[0]
    assert f"within {SWEEP_INTERVAL_SECONDS:.0f} s" in section
