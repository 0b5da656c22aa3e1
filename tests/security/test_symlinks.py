"""Symlinks planted where stsd writes: the hook's per-shell stamp files (and their directory), the pid
file and the log file of `stsd start`. Writing through any of them would truncate, append to or create
files of the link's choosing; the victim stays byte-for-byte and mtime-for-mtime as it was."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import World

from .conftest import ALICE, run_stsd, stop_world_daemons, trusted_project

VICTIM_TEXT = "precious: must survive stsd\n"
OLD = 1_000_000_000  # a fixed past mtime, so any write shows


@dataclass
class Victim:
    path: Path

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(VICTIM_TEXT)
        os.utime(self.path, (OLD, OLD))

    def assert_untouched(self) -> None:
        assert self.path.read_text() == VICTIM_TEXT, "the victim file was written through a symlink"
        assert self.path.stat().st_mtime == OLD, "the victim file was modified through a symlink"


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    return Victim(tmp_path / "victims" / "precious.txt")


def transitions(shell, project: Path, home: Path) -> None:
    """Enter and leave a project, with a few prompts in between: every write the hook's client does."""
    shell.cd(project)
    shell.prompt()
    shell.cd(home)
    shell.prompt()
    shell.cd(project)
    shell.prompt()
    shell.cd(home)


def test_stamp_files_planted_as_symlinks_are_not_written_through(
    world: World, daemon, victim: Victim, open_shell
) -> None:
    project = trusted_project(world, "app", ALICE)
    shell = open_shell()
    shells = world.runtime / "stsd" / "shells"
    shells.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in (str(shell.process.pid), f"{shell.process.pid}.due"):
        (shells / name).symlink_to(victim.path)
    before = sorted(os.listdir(victim.path.parent))

    transitions(shell, project, world.home)

    victim.assert_untouched()
    assert sorted(os.listdir(victim.path.parent)) == before


def test_stamp_directory_planted_as_a_symlink_is_not_written_into(
    world: World, daemon, tmp_path: Path, open_shell
) -> None:
    project = trusted_project(world, "app", ALICE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # A file named like the stamp of a shell that is gone: pruning through the link would delete it.
    bystander = elsewhere / "999999999"
    bystander.write_text(VICTIM_TEXT)
    os.utime(bystander, (OLD, OLD))
    (world.runtime / "stsd").mkdir(mode=0o700, parents=True, exist_ok=True)
    (world.runtime / "stsd" / "shells").symlink_to(elsewhere)
    shell = open_shell()

    transitions(shell, project, world.home)

    assert sorted(os.listdir(elsewhere)) == ["999999999"], "stsd wrote into the symlinked directory"
    assert bystander.read_text() == VICTIM_TEXT and bystander.stat().st_mtime == OLD


@pytest.fixture
def started(world: World) -> Iterator[World]:
    yield world
    stop_world_daemons(world)


@pytest.mark.parametrize("planted", ["pid-file", "log-file"])
def test_start_does_not_write_through_a_planted_symlink(started: World, victim: Victim, planted: str) -> None:
    world = started
    if planted == "pid-file":
        link = world.runtime / "stsd" / "stsd.pid"
    else:
        link = Path(world.env["XDG_STATE_HOME"]) / "stsd" / "stsd.log"
    link.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    link.symlink_to(victim.path)

    run_stsd("start", env=world.env, cwd=world.home)
    victim.assert_untouched()
    # The daemon logs as it serves and as it shuts down: neither may reach the victim either.
    run_stsd("env", "--json", str(world.home), env=world.env, cwd=world.home)
    stop_world_daemons(world)

    victim.assert_untouched()
