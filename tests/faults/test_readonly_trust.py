"""A read-only or full $XDG_DATA_HOME: `stsd allow`/`deny` fail with one clear line, leave no partial file,
and keep the records already there. Real filesystems: a read-only bind mount and a tiny full tmpfs, each
inside a private mount namespace (unshare), so nothing outside the test sees them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import World

VENV_BIN = Path(sys.executable).parent
PROJECT = 'profile = "alice-sts"\n'


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(
    not _namespaces_work(), reason="needs unshare with user+mount namespaces (to mount a read-only/full fs)"
)


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stderr: str
    files: list[str]  # every file under $XDG_DATA_HOME afterwards, relative


def _run_in_private_mount(world: World, tmp_path: Path, prepare: str, command: str) -> Outcome:
    """Run `prepare` (mounts) then one stsd command in a private mount namespace; report what it left."""
    data = Path(world.env["XDG_DATA_HOME"])
    data.mkdir(parents=True, exist_ok=True)
    err = tmp_path / "stderr.txt"
    script = (
        "set -e\n"
        f"{prepare}\n"
        f"set +e; {VENV_BIN}/stsd {command} 2>'{err}' >/dev/null; echo \"rc=$?\"\n"
        f"find '{data}' -type f -printf '%P\\n'\n"
    )
    env = {**world.env, "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin", "DATA": str(data)}
    result = subprocess.run(
        ["unshare", "-Urm", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    first, *files = result.stdout.splitlines()
    return Outcome(int(first.removeprefix("rc=")), err.read_text(), sorted(files))


READ_ONLY = 'mount --bind "$DATA" "$DATA" && mount -o remount,bind,ro "$DATA"'
# A tmpfs of a few KiB over the data dir, with the trust directories in place and every byte used.
FULL = (
    'mount -t tmpfs -o size=16k,mode=700 tmpfs "$DATA"\n'
    'mkdir -m 700 -p "$DATA/stsd/trust/allowed" "$DATA/stsd/trust/denied"\n'
    'dd if=/dev/zero of="$DATA/filler" bs=1024 2>/dev/null || true'
)


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize("command", ["allow", "deny"])
def test_read_only_data_home_gives_one_clear_line_and_keeps_existing_records(
    world: World, tmp_path: Path, command: str
) -> None:
    kept = world.project("kept", PROJECT)
    world.stsd("allow", str(kept), check=True)
    before = sorted(
        str(p.relative_to(world.env["XDG_DATA_HOME"]))
        for p in Path(world.env["XDG_DATA_HOME"]).rglob("*")
        if p.is_file()
    )
    new = world.project("new", PROJECT)

    outcome = _run_in_private_mount(world, tmp_path, READ_ONLY, f"{command} '{new}'")

    assert outcome.returncode != 0
    line = _one_line(outcome.stderr)
    assert "Read-only file system" in line and "stsd/trust" in line, line
    assert outcome.files == before  # nothing added, nothing lost


def test_read_only_data_home_without_any_trust_dir_yet(world: World, tmp_path: Path) -> None:
    new = world.project("new", PROJECT)
    outcome = _run_in_private_mount(world, tmp_path, READ_ONLY, f"allow '{new}'")
    assert outcome.returncode != 0
    assert "Read-only file system" in _one_line(outcome.stderr)
    assert outcome.files == []


@pytest.mark.parametrize("command", ["allow", "deny"])
def test_full_disk_gives_one_clear_line_and_leaves_no_partial_file(
    world: World, tmp_path: Path, command: str
) -> None:
    new = world.project("new", PROJECT)
    outcome = _run_in_private_mount(world, tmp_path, FULL, f"{command} '{new}'")
    assert outcome.returncode != 0
    line = _one_line(outcome.stderr)
    assert "No space left on device" in line, line
    assert outcome.files == ["filler"]  # no record, no temporary left behind
