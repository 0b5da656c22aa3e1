"""What a shell inside a project hands its children: the project's variables, never the user's outer
secrets (not even encoded in __STSD_STATE, which every child inherits), and `stsd exec --dir B`
from inside project A runs with B's variables over the environment from before A, not over A's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import World

from .conftest import (
    ALICE,
    decoded_state,
    parse_environ,
    role_project,
    run_stsd,
    shell_environment,
    trusted_project,
)

OUTER = {"AWS_SECRET_ACCESS_KEY": "outer-secret", "AWS_SESSION_TOKEN": "outer-token"}


def test_outer_secrets_are_kept_out_of_the_environment_inside_a_project(
    world: World, daemon, open_shell, tmp_path: Path
) -> None:
    project = trusted_project(world, "app", ALICE)
    shell = open_shell(**OUTER)

    shell.cd(project)
    inside = shell_environment(shell)
    child = tmp_path / "child-environ"
    shell.run(f"/bin/cat /proc/self/environ > {child}")  # a child's /proc/<pid>/environ, as it sees it
    child_environment = parse_environ(child.read_bytes())

    assert inside.get("AWS_ACCESS_KEY_ID", "").startswith("ASIA"), "the project was not loaded"
    state = decoded_state(inside)
    for environment in (inside, child_environment):
        for secret in OUTER.values():
            leaks = [name for name, value in environment.items() if secret in value]
            assert leaks == [], f"{secret} is in {leaks}"
    for secret in OUTER.values():
        assert secret not in state, "__STSD_STATE carries an outer secret"
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        assert inside[name] not in state, f"__STSD_STATE carries the project's {name}"

    shell.cd(world.home)
    outside = shell_environment(shell)
    assert {name: outside.get(name) for name in OUTER} == OUTER


A_BODY = f'{ALICE}[env]\nAWS_DEFAULT_OUTPUT = "table"\n'


@pytest.fixture
def two_projects(world: World) -> tuple[Path, Path]:
    a = trusted_project(world, "project-a", A_BODY)
    b = trusted_project(world, "project-b", role_project("beta"))
    return a, b


def test_exec_with_another_project_dir_gets_none_of_the_current_projects_values(
    world: World, daemon, two_projects: tuple[Path, Path], open_shell, tmp_path: Path
) -> None:
    a, b = two_projects
    b_variables = json.loads(run_stsd("env", "--json", str(b), env=world.env, cwd=world.home).stdout)
    shell = open_shell()
    shell.cd(a)
    in_a = shell_environment(shell)
    assert in_a.get("AWS_DEFAULT_OUTPUT") == "table", "project A was not loaded"

    dump = tmp_path / "exec-environ"
    shell.run(f"stsd exec --dir {b} -- /bin/cat /proc/self/environ > {dump}")
    assert shell.last_status == 0
    child = parse_environ(dump.read_bytes())

    assert child.get("AWS_ACCESS_KEY_ID") == b_variables["AWS_ACCESS_KEY_ID"]
    assert child.get("AWS_DEFAULT_OUTPUT") != "table", "project A's [env] reached the command run for B"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        leaks = [other for other, value in child.items() if in_a[name] in value]
        assert leaks == [], f"project A's {name} is in {leaks}"
