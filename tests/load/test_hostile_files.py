"""Hostile project files: huge, deeply nested, symlinked elsewhere, a FIFO or a directory, not UTF-8, or an
[env] reaching for PATH, LD_PRELOAD or the credential variables. Each is refused with one clear line by the
parser, by `stsd allow`, and by the daemon (which keeps serving), and none hangs anything."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon

from stsd.project.projectfile import MAX_FILE_BYTES, ProjectFileError, load_project_file

GOOD = 'profile = "alice-sts"\n'


def _write(content: bytes) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(content)

    return make


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _symlink_to_outside(path: Path) -> None:
    # A project file that is a link to a file elsewhere (here: another user's world could own /tmp files).
    target = path.parent.parent / "elsewhere.toml"
    target.write_text(GOOD)
    path.symlink_to(target)


def _dangling_symlink(path: Path) -> None:
    path.symlink_to(path.parent / "missing.toml")


def _env_table(name: str, value: str = "x") -> Callable[[Path], None]:
    return _write(f'{GOOD}\n[env]\n{name} = "{value}"\n'.encode())


# name -> (how to make the hostile .stsd.toml, words the one-line error must contain)
HOSTILE: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "huge": (_write(b"# " + b"x" * (4 * MAX_FILE_BYTES) + b"\n" + GOOD.encode()), ("bytes",)),
    "just-over-the-limit": (_write(GOOD.encode() + b"#" * MAX_FILE_BYTES), ("bytes",)),
    "deeply-nested-arrays": (
        _write(b"profile = " + b"[" * 30000 + b"]" * 30000 + b"\n"),
        ("nested too deeply",),
    ),
    "deeply-nested-inline-tables": (
        _write(b"x = " + b"{a = " * 10000 + b"1" + b"}" * 10000 + b"\n"),
        ("nested too deeply",),
    ),
    "deeply-dotted-table": (_write(b"[" + b".".join([b"a"] * 20000) + b"]\n"), ()),
    "fifo": (_fifo, ("not a regular file",)),
    "directory": (_directory, ("directory",)),
    "symlink-elsewhere": (_symlink_to_outside, ("link",)),
    "dangling-symlink": (_dangling_symlink, ("cannot be read",)),
    "not-utf8": (_write(b'profile = "alice-\xff\xfe"\n'), ("UTF-8",)),
    "nul-byte": (_write(b'profile = "alice\x00sts"\n'), ()),
    "env-PATH": (_env_table("PATH", "/tmp/evil"), ("PATH",)),
    "env-LD_PRELOAD": (_env_table("LD_PRELOAD", "/tmp/evil.so"), ("LD_PRELOAD",)),
    "env-access-key": (_env_table("AWS_ACCESS_KEY_ID", "AKIAEVIL"), ("AWS_ACCESS_KEY_ID",)),
    "env-secret-key": (_env_table("AWS_SECRET_ACCESS_KEY"), ("AWS_SECRET_ACCESS_KEY",)),
    "env-session-token": (_env_table("AWS_SESSION_TOKEN"), ("AWS_SESSION_TOKEN",)),
    "env-security-token": (_env_table("AWS_SECURITY_TOKEN"), ("AWS_SECURITY_TOKEN",)),
    "env-profile": (_env_table("AWS_PROFILE", "admin"), ("AWS_PROFILE",)),
    "env-credentials-file": (
        _env_table("AWS_SHARED_CREDENTIALS_FILE", "/tmp/x"),
        ("AWS_SHARED_CREDENTIALS_FILE",),
    ),
    "env-container-uri": (
        _env_table("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://evil"),
        ("AWS_CONTAINER",),
    ),
    "env-lowercase-trick": (_env_table("aws_access_key_id"), ("aws_access_key_id",)),
    "env-not-a-table": (_write(f'{GOOD}env = "PATH=/tmp"\n'.encode()), ("env",)),
    "env-nested-table": (_write(f"{GOOD}[env.PATH]\nx = 1\n".encode()), ("PATH",)),
}

# Through a whole `stsd allow` process each case costs a start-up: the default run samples the kinds.
SAMPLED = {
    "huge",
    "fifo",
    "symlink-elsewhere",
    "deeply-nested-arrays",
    "not-utf8",
    "env-PATH",
    "env-LD_PRELOAD",
    "env-access-key",
}


def _cases(sample: bool = False) -> list:
    return [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.slow] if sample and name not in SAMPLED else [],
        )
        for name in HOSTILE
    ]


def _hostile_project(root: Path, name: str) -> Path:
    project = root / name
    project.mkdir(parents=True)
    make, _ = HOSTILE[name]
    make(project / ".stsd.toml")
    return project


def _assert_clear(message: str, path: Path, words: tuple[str, ...]) -> None:
    assert "\n" not in message.strip(), message
    assert len(message) < 600, message
    assert str(path) in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", _cases())
def test_parser_refuses_hostile_file_with_one_clear_line(tmp_path: Path, name: str) -> None:
    project = _hostile_project(tmp_path / "src", name)
    with pytest.raises(ProjectFileError) as refused:
        load_project_file(project / ".stsd.toml")
    _assert_clear(str(refused.value), project / ".stsd.toml", HOSTILE[name][1])


@pytest.mark.parametrize("name", _cases(sample=True))
def test_allow_refuses_hostile_file_and_records_nothing(world: World, name: str) -> None:
    project = _hostile_project(world.home / "src", name)
    result = world.stsd("allow", str(project), timeout=30)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    _assert_clear(line, project / ".stsd.toml", HOSTILE[name][1])
    trust = Path(world.env["XDG_DATA_HOME"]) / "stsd" / "trust"
    assert not trust.exists() or not [p for p in trust.rglob("*") if p.is_file()]


def _daemon_refuses(world: World, daemon: Daemon, names: list[str]) -> None:
    good = world.project("good", GOOD)
    world.stsd("allow", str(good), check=True)
    projects = [_hostile_project(world.home / "src", name) for name in names]
    replies = ask_daemon(
        world.socket, *({"op": "env", "dir": str(p)} for p in projects), {"op": "env", "dir": str(good)}
    )
    for name, project, reply in zip(names, projects, replies):
        assert reply["ok"] is False, (name, reply)
        assert reply["error"]["code"] == "invalid_project", (name, reply)
        _assert_clear(reply["error"]["message"], project / ".stsd.toml", HOSTILE[name][1])
        assert reply["error"]["project"] == str(project / ".stsd.toml")
    assert replies[-1]["ok"] and replies[-1]["vars"]["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert daemon.process.poll() is None and "Traceback" not in daemon.log


def test_daemon_refuses_hostile_files_and_keeps_serving(world: World, daemon: Daemon) -> None:
    _daemon_refuses(world, daemon, list(HOSTILE))


def test_env_extras_never_reach_the_shell_as_anything_but_aws_variables(world: World, daemon: Daemon) -> None:
    project = world.project("extras", f'{GOOD}\n[env]\nAWS_DEFAULT_OUTPUT = "json"\nAWS_PAGER = ""\n')
    world.stsd("allow", str(project), check=True)
    [reply] = ask_daemon(world.socket, {"op": "env", "dir": str(project)})
    assert reply["ok"], reply
    assert all(name.startswith(("AWS_", "STSD_")) for name in reply["vars"])
    assert reply["vars"]["AWS_DEFAULT_OUTPUT"] == "json"
