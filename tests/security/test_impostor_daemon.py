"""An impostor on the socket: another user who took the /tmp fallback directory first, another user's
process serving inside our own private directory, or a same-uid server that answers with variables stsd
never sets. The hook, `env`, `exec` and `stop` believe none of them: nothing applied, nothing run, nothing
signalled, one clear line (once per cause in a shell)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import World

from .conftest import (
    ALICE,
    NOBODY,
    FakeDaemon,
    as_root,
    fake_replies,
    fallback_env,
    lines_with,
    plant_as_nobody,
    run_stsd,
    shell_environment,
    trusted_project,
)


def hostile_variables(marker: Path) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": "ASIAFAKE",
        "AWS_SECRET_ACCESS_KEY": "fake-secret",
        "AWS_SESSION_TOKEN": "fake-token",
        "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z",
        # An absolute path, so the command would run even with the PATH below applied.
        "PROMPT_COMMAND": f"/usr/bin/touch {marker}",
        "LD_PRELOAD": "/tmp/x.so",
        "PATH": "/evil",
    }


def enter_and_prompt(shell, project: Path, prompts: int = 3) -> str:
    """cd into `project`, then press Enter a few times; everything the shell printed meanwhile."""
    output = shell.cd(project)
    for _ in range(prompts):
        output += shell.prompt()
    return output


def assert_nothing_applied(before: dict[str, str], after: dict[str, str], marker: Path) -> None:
    assert not marker.exists(), "the impostor's PROMPT_COMMAND ran"
    assert "AWS_ACCESS_KEY_ID" not in after, after.get("AWS_ACCESS_KEY_ID")
    assert after.get("PATH") == before.get("PATH")
    assert "LD_PRELOAD" not in after
    assert after.get("PROMPT_COMMAND") == before.get("PROMPT_COMMAND")
    assert not any("fake-" in value or value == "/evil" for value in after.values())


@pytest.fixture
def project(world: World) -> Path:
    return trusted_project(world, "app", ALICE)


# -- (a) another user owns the /tmp fallback directory; (b) our own private directory, but another user's
# process serves the socket in it ---------------------------------------------------------------------


def owned_by_nobody(mode: int) -> Callable[[Path, dict, list[FakeDaemon]], FakeDaemon]:
    """(a): nobody creates the directory with `mode` and serves in it."""

    def plant(directory: Path, replies: dict, fake_daemons: list[FakeDaemon]) -> FakeDaemon:
        return plant_as_nobody(directory, mode, replies, fake_daemons)

    return plant


def plant_in_our_directory(directory: Path, replies: dict, fake_daemons: list[FakeDaemon]) -> FakeDaemon:
    """(b): nobody binds and listens in `directory` while it is theirs; then it becomes ours and private."""
    server = plant_as_nobody(directory, 0o700, replies, fake_daemons)
    os.chown(directory, os.getuid(), os.getgid())
    os.chmod(directory, 0o700)
    return server


# How each is planted, and the words of the one line that refuses it.
IMPOSTORS = [
    pytest.param(owned_by_nobody(0o700), "owned by", id="directory-of-another-user-0700"),
    pytest.param(owned_by_nobody(0o777), "owned by", id="directory-of-another-user-0777"),
    pytest.param(plant_in_our_directory, "served by", id="socket-served-by-another-user"),
]


@as_root
@pytest.mark.parametrize(("plant", "cause"), IMPOSTORS)
def test_hook_refuses_another_users_socket(
    world: World,
    project: Path,
    tmp_fallback: Path,
    fake_daemons,
    open_shell,
    tmp_path: Path,
    plant,
    cause: str,
) -> None:
    marker = tmp_path / "prompt-command-ran"
    plant(tmp_fallback, fake_replies(project / ".stsd.toml", hostile_variables(marker)), fake_daemons)
    shell = open_shell(env=fallback_env(world))
    before = shell_environment(shell)

    output = enter_and_prompt(shell, project)

    assert_nothing_applied(before, shell_environment(shell), marker)
    assert len(lines_with(output, f"{cause} uid {NOBODY}")) == 1, output


@as_root
@pytest.mark.parametrize(("plant", "cause"), IMPOSTORS)
def test_env_refuses_another_users_socket(
    world: World, project: Path, tmp_fallback: Path, fake_daemons, tmp_path: Path, plant, cause: str
) -> None:
    marker = tmp_path / "prompt-command-ran"
    plant(tmp_fallback, fake_replies(project / ".stsd.toml", hostile_variables(marker)), fake_daemons)

    result = run_stsd("env", "--json", str(project), env=fallback_env(world), cwd=world.home)

    assert "ASIAFAKE" not in result.stdout
    assert result.returncode != 0
    assert lines_with(result.stderr, f"{cause} uid {NOBODY}"), result.stderr


# -- (c) a same-uid server whose reply carries variables stsd never sets -------------------------------


@pytest.fixture
def same_uid_impostor(world: World, project: Path, fake_daemons, tmp_path: Path) -> Path:
    """A server of ours on the world's STSD_SOCKET (a private directory); returns the PROMPT_COMMAND marker."""
    marker = tmp_path / "prompt-command-ran"
    world.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fake_daemons.append(
        FakeDaemon(world.socket, fake_replies(project / ".stsd.toml", hostile_variables(marker)))
    )
    return marker


def test_hook_applies_nothing_from_a_reply_with_foreign_variables(
    world: World, project: Path, same_uid_impostor: Path, open_shell
) -> None:
    shell = open_shell()
    before = shell_environment(shell)

    output = enter_and_prompt(shell, project)

    assert_nothing_applied(before, shell_environment(shell), same_uid_impostor)
    assert len(lines_with(output, "PROMPT_COMMAND")) == 1, output


def test_env_and_exec_refuse_a_reply_with_foreign_variables(
    world: World, project: Path, same_uid_impostor: Path, tmp_path: Path
) -> None:
    env = run_stsd("env", "--json", str(project), env=world.env, cwd=world.home)
    assert env.returncode != 0
    assert "ASIAFAKE" not in env.stdout
    assert lines_with(env.stderr, "PROMPT_COMMAND"), env.stderr

    ran = tmp_path / "exec-ran"
    exec_ = run_stsd(
        "exec", "--dir", str(project), "--", "/usr/bin/touch", str(ran), env=world.env, cwd=world.home
    )
    assert not ran.exists(), "exec ran the command with the impostor's variables"
    assert exec_.returncode != 0
    assert lines_with(exec_.stderr, "PROMPT_COMMAND"), exec_.stderr
    assert not same_uid_impostor.exists()


# -- item 4: `stsd stop` never signals the pid an impostor names ----------------------------------------


@as_root
def test_stop_does_not_signal_the_pid_another_users_fallback_socket_names(
    world: World, tmp_fallback: Path, fake_daemons, victim_process: subprocess.Popen
) -> None:
    replies = fake_replies("/nowhere/.stsd.toml", {}, pid=victim_process.pid)
    plant_as_nobody(tmp_fallback, 0o700, replies, fake_daemons)

    result = run_stsd("stop", "--timeout", "2", env=fallback_env(world), cwd=world.home)

    assert victim_process.poll() is None, f"stsd stop killed pid {victim_process.pid}: {result.stdout}"
    assert result.returncode != 0, result.stdout


def test_stop_does_not_signal_a_pid_a_same_uid_server_claims(
    world: World, fake_daemons, victim_process: subprocess.Popen
) -> None:
    world.socket.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fake_daemons.append(
        FakeDaemon(world.socket, fake_replies("/nowhere/.stsd.toml", {}, pid=victim_process.pid))
    )
    assert not (world.socket.parent / "stsd.pid").exists()

    result = run_stsd("stop", "--timeout", "2", env=world.env, cwd=world.home)

    assert victim_process.poll() is None, f"stsd stop killed pid {victim_process.pid}: {result.stdout}"
    assert result.returncode != 0, result.stdout


def test_stop_still_stops_the_real_detached_daemon(world: World, autostart: dict[str, str]) -> None:
    started = run_stsd("start", env=world.env, cwd=world.home)
    assert started.returncode == 0, started.stderr
    pid = int((world.socket.parent / "stsd.pid").read_text())

    stopped = run_stsd("stop", env=world.env, cwd=world.home)

    assert stopped.returncode == 0, stopped.stderr
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid), f"the daemon (pid {pid}) still runs after stsd stop: {stopped.stdout}"


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
