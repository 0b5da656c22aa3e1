"""A cloned repository can hold Python modules named like stsd's own imports (stsd, psutil, daemon, boto3,
botocore). Entering it, or running stsd in it, while no daemon runs must start the real daemon from the
installed stsd, importing nothing from the current directory or PYTHONPATH; the daemon then runs in `/`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import REPO, World

from .conftest import ALICE, daemon_pid, run_stsd, shell_environment, trusted_project

# Every module a client or a starting daemon imports by a name a repository could shadow.
HOSTILE_MODULES = {
    "stsd": "stsd/__init__.py",
    "stsd-main": "stsd/__main__.py",
    "psutil": "psutil.py",
    "daemon": "daemon.py",
    "boto3": "boto3/__init__.py",
    "botocore": "botocore/__init__.py",
}


def plant_modules(directory: Path, markers: Path, names: dict[str, str]) -> None:
    for name, relative in names.items():
        module = directory / relative
        module.parent.mkdir(parents=True, exist_ok=True)
        marker = markers / f"pwned-{name}"
        module.write_text(f"open({str(marker)!r}, 'a').close()\n")


def markers_found(markers: Path) -> list[str]:
    return sorted(path.name for path in markers.glob("pwned-*"))


@pytest.fixture
def hostile_project(world: World) -> Path:
    project = trusted_project(world, "cloned-repo", ALICE)
    plant_modules(project, world.home, HOSTILE_MODULES)
    return project


def assert_real_daemon_serves_from_root(world: World) -> None:
    pid = daemon_pid(world)
    assert pid is not None, "no daemon was started"
    assert os.readlink(f"/proc/{pid}/cwd") == "/", "the daemon keeps a working directory of the user's"


def test_entering_a_hostile_repository_starts_the_real_daemon(
    world: World, autostart: dict[str, str], hostile_project: Path, open_shell
) -> None:
    shell = open_shell(env=autostart)
    shell.cd(hostile_project)
    shell.prompt()
    environment = shell_environment(shell)

    assert markers_found(world.home) == [], "modules of the repository were imported"
    assert environment.get("AWS_ACCESS_KEY_ID", "").startswith("ASIA"), environment
    assert_real_daemon_serves_from_root(world)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("env", "--json", "."), id="env"),
        pytest.param(("credential-process", "--dir", "."), id="credential-process"),
        pytest.param(("exec", "--", "printenv", "AWS_ACCESS_KEY_ID"), id="exec"),
    ],
)
def test_commands_run_in_a_hostile_repository_start_the_real_daemon(
    world: World, autostart: dict[str, str], hostile_project: Path, argv: tuple[str, ...]
) -> None:
    result = run_stsd(*argv, env=autostart, cwd=hostile_project)

    assert markers_found(world.home) == [], "modules of the repository were imported"
    assert result.returncode == 0, result.stderr
    assert '"ASIA' in result.stdout or result.stdout.startswith("ASIA"), result.stdout
    assert_real_daemon_serves_from_root(world)


def test_start_imports_nothing_from_pythonpath(world: World, autostart: dict[str, str]) -> None:
    shadowing = world.home / "on-pythonpath"
    shadowing.mkdir()
    plant_modules(
        shadowing, world.home, {k: v for k, v in HOSTILE_MODULES.items() if not k.startswith("stsd")}
    )
    # The hostile directory first, then the checkout under test (an installed stsd needs no PYTHONPATH).
    env = {**autostart, "PYTHONPATH": f"{shadowing}:{REPO}"}

    result = run_stsd("start", env=env, cwd=world.home)

    assert markers_found(world.home) == [], "modules on PYTHONPATH were imported"
    assert result.returncode == 0, result.stderr
    assert_real_daemon_serves_from_root(world)
