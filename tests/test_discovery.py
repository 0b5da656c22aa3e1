"""Which `.stsd.toml` governs a directory: one definition (stsd.project.discovery) for the daemon, the client
and the hook. Anything named `.stsd.toml` governs, except a file another user owns: that one is passed
over, and `status` says so. Other users are real: files chown'ed to nobody, processes run via setpriv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, Daemon, World
from other_user import NOBODY, SYSTEM_PYTHON, run_as
from other_user import as_root as as_other_user

from stsd.demo.local_aws import EXTERNAL_ID, ROLE_ARN, ROLE_NAME, USER_NAME
from stsd.project.discovery import PROJECT_FILE_NAME, discover, find_project_file, ignored_message
from stsd.project.projectfile import ProjectFileError, load_project_file
from stsd.project.projectfile import find_project_file as find_project_path

OTHER = 65533  # a uid that is neither nobody nor root, for the test run as nobody
PROJECT = (
    f'role_arn = "{ROLE_ARN}"\nsource_profile = "{USER_NAME}"\nexternal_id = "{EXTERNAL_ID}"\n'
    'region = "us-east-1"\n'
)
FOREIGN = 'role_arn = "arn:aws:iam::123456789012:role/theirs"\nsource_profile = "mallory"\n'

as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown files to another user")


def write(directory: Path, body: str = PROJECT, owner: int | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROJECT_FILE_NAME
    path.write_text(body)
    if owner is not None:
        os.chown(path, owner, owner)
    return path


def nothing_above(directory: Path) -> None:
    if any(os.path.lexists(parent / PROJECT_FILE_NAME) for parent in directory.parents):
        pytest.skip(f"a stray {PROJECT_FILE_NAME} exists above {directory}")


# -- what governs --------------------------------------------------------------------------------------------


def test_nearest_own_file_governs_and_nothing_is_ignored(tmp_path: Path) -> None:
    outer = write(tmp_path)
    inner = write(tmp_path / "app")
    (tmp_path / "app" / "src").mkdir()

    assert discover(str(tmp_path / "app" / "src")) == (str(inner), ())
    assert find_project_file(str(tmp_path)) == str(outer)


def test_no_file_up_to_the_root_gives_an_empty_path(tmp_path: Path) -> None:
    nothing_above(tmp_path)

    assert discover(str(tmp_path)) == ("", ())
    assert find_project_path(tmp_path) is None


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", ["fifo", "directory", "dangling-link"])
def test_anything_named_like_a_project_file_governs_and_is_refused_on_load(tmp_path: Path, kind: str) -> None:
    write(tmp_path)  # a parent project that must not silently apply below
    child = tmp_path / "child"
    child.mkdir()
    entry = child / PROJECT_FILE_NAME
    if kind == "fifo":
        os.mkfifo(entry)
    elif kind == "directory":
        entry.mkdir()
    else:
        entry.symlink_to(tmp_path / "missing")

    assert discover(str(child)) == (str(entry), ())
    with pytest.raises(ProjectFileError):
        load_project_file(entry)


def test_symlinks_in_the_start_directory_are_kept(tmp_path: Path) -> None:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere" / "data"
    elsewhere.mkdir(parents=True)
    expected = write(project)
    (project / "data").symlink_to(elsewhere)

    assert find_project_file(str(project / "data")) == str(expected)
    assert find_project_file(str(elsewhere)) != str(expected)


def test_a_relative_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = write(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")

    assert find_project_file(".") == str(expected)
    assert find_project_path(Path(".")) == expected


def test_discovery_imports_nothing_but_os() -> None:
    # It runs on every transition in the hook's fast path (python -I -S): each extra module costs time.
    # os and __future__ (a compile-time marker, also imported by every stsd module) are the baseline.
    probe = (
        "import __future__, os, sys; sys.path.insert(0, sys.argv[1]); before = set(sys.modules); "
        "import stsd.project.discovery; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe, str(REPO)], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["stsd", "stsd.project", "stsd.project.discovery"]


# -- another user's file -----------------------------------------------------------------------------------


@as_root
def test_another_users_file_is_passed_over_for_the_parents_and_reported(tmp_path: Path) -> None:
    own = write(tmp_path)
    theirs = write(tmp_path / "shared" / "repo", FOREIGN, owner=NOBODY)
    (tmp_path / "shared" / "repo" / "src").mkdir()

    assert discover(str(tmp_path / "shared" / "repo" / "src")) == (str(own), ((str(theirs), NOBODY),))
    assert find_project_path(tmp_path / "shared" / "repo") == own


@as_root
def test_another_users_file_with_nothing_above_governs_nothing(tmp_path: Path) -> None:
    nothing_above(tmp_path)
    theirs = write(tmp_path, FOREIGN, owner=NOBODY)

    assert discover(str(tmp_path)) == ("", ((str(theirs), NOBODY),))
    assert find_project_path(tmp_path) is None


@as_root
def test_the_owner_of_a_link_counts_not_of_its_target(tmp_path: Path) -> None:
    write(tmp_path / "parent")
    mine = tmp_path / "parent" / "mine.toml"
    mine.write_text(PROJECT)
    child = tmp_path / "parent" / "child"
    child.mkdir()
    link = child / PROJECT_FILE_NAME
    link.symlink_to(mine)
    os.lchown(link, NOBODY, NOBODY)

    assert discover(str(child)) == (str(tmp_path / "parent" / PROJECT_FILE_NAME), ((str(link), NOBODY),))


@as_root
def test_loading_another_users_file_by_its_path_is_refused(tmp_path: Path) -> None:
    theirs = write(tmp_path, FOREIGN, owner=NOBODY)

    with pytest.raises(ProjectFileError) as caught:
        load_project_file(theirs)

    assert str(caught.value) == (
        f"{theirs}: is owned by uid {NOBODY}, not you or root; expected your own file (copy it)"
    )


def test_the_ignored_line_escapes_control_characters_in_the_path() -> None:
    line = ignored_message("/tmp/a\nb\x1b[2J/.stsd.toml", 1001)

    assert line == "ignored /tmp/a\\x0ab\\x1b[2J/.stsd.toml: owned by uid 1001, not you or root"


@pytest.fixture
def open_tree() -> Iterator[Path]:
    """A directory tree another user can walk (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="stsd-discovery-", dir="/tmp"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@as_other_user
def test_for_another_user_their_own_and_roots_files_govern_but_not_a_third_users(open_tree: Path) -> None:
    nothing_above(open_tree)
    roots = write(open_tree / "a")
    theirs = write(open_tree / "a" / "b", owner=NOBODY)
    third = write(open_tree / "a" / "b" / "c", owner=OTHER)
    for directory in (open_tree / "a", open_tree / "a" / "b", open_tree / "a" / "b" / "c"):
        os.chmod(directory, 0o755)
    probe = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from stsd.project.discovery import discover; "
        "print(json.dumps([discover(d) for d in sys.argv[2:]]))"
    )

    result = run_as(
        [SYSTEM_PYTHON, "-I", "-c", probe, str(REPO), str(open_tree / "a"), str(open_tree / "a" / "b" / "c")]
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[str(roots), []], [str(theirs), [[str(third), OTHER]]]]


# -- what status says -------------------------------------------------------------------------------------


@as_root
def test_status_without_a_daemon_names_the_ignored_file_and_why(world: World) -> None:
    directory = world.project("proj", PROJECT)
    theirs = write(directory / "vendor", FOREIGN, owner=NOBODY)

    result = world.stsd("status", "--json", cwd=directory / "vendor")

    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout)["project"] == {
        "path": str(directory / PROJECT_FILE_NAME),
        "name": ROLE_NAME,
        "trust": "untrusted",
        "ignored": [f"ignored {theirs}: owned by uid {NOBODY}, not you or root"],
    }


@as_root
def test_status_without_a_daemon_reports_an_ignored_file_when_nothing_else_governs(world: World) -> None:
    nothing_above(world.home)
    theirs = write(world.home / "shared", FOREIGN, owner=NOBODY)

    result = world.stsd("status", "--json", cwd=world.home / "shared")

    assert json.loads(result.stdout)["project"] == {
        "path": None,
        "ignored": [f"ignored {theirs}: owned by uid {NOBODY}, not you or root"],
    }


@as_root
def test_daemon_status_names_the_ignored_file_with_control_characters_escaped(
    world: World, daemon: Daemon
) -> None:
    directory = world.project("proj", PROJECT)
    odd = directory / "we\x1bird\nname"
    theirs = write(odd, FOREIGN, owner=NOBODY)

    result = world.stsd("status", "--json", cwd=odd)

    assert result.returncode == 0, result.stderr
    project = json.loads(result.stdout)["project"]
    assert project["path"] == str(directory / PROJECT_FILE_NAME)
    shown = str(theirs).replace("\x1b", "\\x1b").replace("\n", "\\x0a")
    assert project["ignored"] == [f"ignored {shown}: owned by uid {NOBODY}, not you or root"]


@as_root
def test_daemon_gives_the_parent_projects_credentials_below_another_users_file(
    world: World, daemon: Daemon
) -> None:
    directory = world.project("proj", PROJECT)
    world.stsd("allow", str(directory), check=True)
    write(directory / "vendor", FOREIGN, owner=NOBODY)

    result = world.stsd("env", "--json", str(directory / "vendor"))

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert json.loads(result.stdout)["STSD_PROFILE"] == ROLE_NAME
