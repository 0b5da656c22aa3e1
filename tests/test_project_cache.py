"""The `env` request reuses what it read from an unchanged project file, and never what a change made
stale: an edit (even of the same size) is served at once once allowed, refused until then; a denial
and an edit of the AWS files take effect at the next request."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import Daemon, World, ask_daemon

from stsd.daemon.project_cache import ProjectCache

ROLE = 'profile = "alice-sts"\n'


def _env(world: World, directory: Path) -> dict:
    return ask_daemon(world.socket, {"op": "env", "dir": str(directory)})[0]


def test_edit_of_an_allowed_project_is_refused_until_allowed_again(world: World, daemon: Daemon) -> None:
    project = world.project("proj", ROLE + '[env]\nAWS_DEFAULT_OUTPUT = "json"\n')
    assert world.stsd("allow", str(project)).stderr == ""
    assert _env(world, project)["vars"]["AWS_DEFAULT_OUTPUT"] == "json"

    (project / ".stsd.toml").write_text(ROLE + '[env]\nAWS_DEFAULT_OUTPUT = "yaml"\n')  # same size
    refused = _env(world, project)
    assert not refused["ok"] and refused["error"]["code"] == "untrusted"

    assert world.stsd("allow", str(project)).stderr == ""
    assert _env(world, project)["vars"]["AWS_DEFAULT_OUTPUT"] == "yaml"


def test_denial_applies_at_the_next_request(world: World, daemon: Daemon) -> None:
    project = world.project("proj", ROLE)
    assert world.stsd("allow", str(project)).stderr == ""
    assert _env(world, project)["ok"]
    world.stsd("deny", str(project), check=True)
    assert not _env(world, project)["ok"]


def test_unchanged_project_is_computed_once(tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    project = tmp_path / ".stsd.toml"
    project.write_text(ROLE)
    cache: ProjectCache[int] = ProjectCache((trust,))
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return len(computed)

    assert [cache.get(project, compute) for _ in range(5)] == [1] * 5

    project.write_text(ROLE.replace("alice", "alicX"))  # same size, same second
    assert cache.get(project, compute) == 2
    (trust / "record").write_text("")  # a trust record added or removed
    assert cache.get(project, compute) == 3
    assert cache.get(project, compute) == 3


def test_change_of_aws_files_computes_again(tmp_path: Path, monkeypatch) -> None:
    config = tmp_path / "config"
    config.write_text("[profile a]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    project = tmp_path / ".stsd.toml"
    project.write_text(ROLE)
    cache: ProjectCache[float] = ProjectCache(())
    first = cache.get(project, lambda: 1.0)
    config.write_text("[profile b]\nregion = eu-west-1\n")
    os.utime(config, ns=(1, 1))
    assert (first, cache.get(project, lambda: 2.0)) == (1.0, 2.0)
