"""`stsd install-service`: units land in $XDG_CONFIG_HOME/systemd/user with an ExecStart that runs this
very installation, re-installing updates only our own untouched files, and --uninstall takes them away."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import World

from stsd.install_service import install

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def unit_dir(world: World) -> Path:
    return Path(world.env["XDG_CONFIG_HOME"]) / "systemd" / "user"


def exec_start(service: Path) -> list[str]:
    line = next(line for line in service.read_text().splitlines() if line.startswith("ExecStart="))
    return shlex.split(line.removeprefix("ExecStart=").replace("%%", "%").replace("$$", "$"))


def test_install_writes_both_units_and_says_how_to_enable_them(world: World) -> None:
    result = world.stsd("install-service")

    assert result.returncode == 0, result.stderr
    assert (unit_dir(world) / "stsd.service").is_file()
    assert (unit_dir(world) / "stsd.socket").is_file()
    assert not (unit_dir(world) / "stsd.service.d").exists()
    assert "systemctl --user enable --now stsd.socket" in result.stdout


def test_exec_start_runs_this_stsd_without_the_callers_environment(world: World) -> None:
    world.stsd("install-service", check=True)
    argv = exec_start(unit_dir(world) / "stsd.service")
    assert argv[-1] == "serve"
    assert argv[1] == "-I"  # isolated: no PYTHONPATH, no current directory on sys.path

    # systemd starts it with a bare environment: no PATH tweaks, no PYTHONPATH, no activated venv.
    bare = {"HOME": world.env["HOME"], "PATH": "/usr/bin:/bin"}
    result = subprocess.run([*argv[:-1], "--version"], env=bare, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("stsd ")


@needs_systemd_analyze
def test_exec_start_survives_spaces_and_percent_signs_in_the_path(tmp_path: Path) -> None:
    odd = tmp_path / "my env 100%" / "bin"
    odd.mkdir(parents=True)
    (odd / "python").symlink_to(sys.executable)
    units = tmp_path / "units"
    install(units, sandbox=False, python=str(odd / "python"))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)

    # verify resolves ExecStart as systemd would and fails when the executable is not found.
    result = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(units / "stsd.service"), str(units / "stsd.socket")],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert exec_start(units / "stsd.service")[0] == str(odd / "python")


def test_sandbox_drop_in_is_installed_on_request_and_removed_when_not_requested(world: World) -> None:
    drop_in = unit_dir(world) / "stsd.service.d" / "sandbox.conf"

    world.stsd("install-service", "--sandbox", check=True)
    assert "ProtectSystem=strict" in drop_in.read_text()

    world.stsd("install-service", check=True)
    assert not drop_in.exists()


def test_reinstall_never_overwrites_a_unit_the_user_edited(world: World) -> None:
    world.stsd("install-service", check=True)
    service = unit_dir(world) / "stsd.service"
    edited = service.read_text().replace("RestartSec=2s", "RestartSec=30s")
    service.write_text(edited)

    result = world.stsd("install-service")

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and str(service) in result.stderr
    assert "Traceback" not in result.stderr
    assert service.read_text() == edited


def test_reinstall_updates_units_it_wrote_itself(world: World) -> None:
    world.stsd("install-service", check=True)
    service = unit_dir(world) / "stsd.service"
    before = service.read_text()

    result = world.stsd("install-service")

    assert result.returncode == 0, result.stderr
    assert service.read_text() == before


def test_uninstall_removes_the_units_but_keeps_the_users_own_drop_ins(world: World) -> None:
    world.stsd("install-service", "--sandbox", check=True)
    own_drop_in = unit_dir(world) / "stsd.service.d" / "override.conf"
    own_drop_in.write_text("[Service]\nEnvironment=FOO=1\n")

    result = world.stsd("install-service", "--uninstall")

    assert result.returncode == 0, result.stderr
    assert not (unit_dir(world) / "stsd.service").exists()
    assert not (unit_dir(world) / "stsd.socket").exists()
    assert not (unit_dir(world) / "stsd.service.d" / "sandbox.conf").exists()
    assert own_drop_in.read_text() == "[Service]\nEnvironment=FOO=1\n"
    assert "systemctl --user daemon-reload" in result.stdout


def test_uninstall_asks_to_disable_an_enabled_socket_first(world: World) -> None:
    world.stsd("install-service", check=True)
    # What `systemctl --user enable stsd.socket` creates, from the unit's WantedBy=sockets.target.
    wants = unit_dir(world) / "sockets.target.wants"
    wants.mkdir()
    (wants / "stsd.socket").symlink_to(unit_dir(world) / "stsd.socket")

    result = world.stsd("install-service", "--uninstall")

    assert result.returncode == 1
    assert "systemctl --user disable --now stsd.socket" in result.stderr
    assert (unit_dir(world) / "stsd.socket").exists()


def test_uninstall_refuses_a_unit_someone_else_wrote(world: World) -> None:
    foreign = unit_dir(world) / "stsd.service"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("[Service]\nExecStart=/usr/local/bin/my-stsd\n")

    result = world.stsd("install-service", "--uninstall")

    assert result.returncode == 1
    assert str(foreign) in result.stderr
    assert foreign.exists()


def test_uninstall_with_nothing_installed_says_so(world: World) -> None:
    result = world.stsd("install-service", "--uninstall")

    assert result.returncode == 0
    assert "nothing to remove" in result.stdout
