"""A secret scan after the suite (this file sorts last): alice's long-term keys must not appear in any reply,
any output of the CLI, or any file stsd wrote during the session: every world's XDG state, data and config
dirs, logs, and anything new under ~/.aws (tests' own inputs, such as credentials files or a
credential_process script, hold the keys on purpose and are not stsd's writing). Each world's runtime
directory is scanned by the `world` fixture itself, before it is removed (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon, long_term_secrets

from stsd.demo.local_aws import LocalAws

MAX_SCANNED_BYTES = 16 * 1024 * 1024


def _secrets(local_aws: LocalAws) -> list[bytes]:
    return long_term_secrets(local_aws)


def _files_under(root: Path) -> Iterator[Path]:
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            try:
                info = path.lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_SCANNED_BYTES:
                yield path


def _planted_on_purpose(path: Path) -> bool:
    # Where tests put the source keys: ~/.aws/credentials (and the AWS config) of each world.
    return path.parent.name == ".aws" and path.name in ("credentials", "config")


_STSD_WRITES = (".local", ".config", ".aws")  # XDG state/data/config, and ~/.aws which stsd must never touch


def _written_by_stsd(path: Path, root: Path) -> bool:
    """Files in the places stsd writes: XDG dirs, logs, ~/.aws (its own files there would be a bug)."""
    parts = path.relative_to(root).parts
    return path.suffix == ".log" or any(part in _STSD_WRITES for part in parts[:-1])


def test_no_long_term_secret_in_replies_or_cli_output(
    world: World, daemon: Daemon, local_aws: LocalAws
) -> None:
    project = world.project("app", 'profile = "alice-sts"\n')
    world.stsd("allow", str(project), check=True)
    outputs = []
    for args in (
        ("env", "--json", str(project)),
        ("export", "bash"),
        ("status",),
        ("status", "--json"),
        ("credential-process", "alice-sts"),
        ("credential-process", str(project)),
        ("credential-process", "alice"),  # keys and no role: a session token at most, never the keys
        ("exec", "--dir", str(project), "--", sys.executable, "-c", "import os; print(dict(os.environ))"),
    ):
        result = world.stsd(*args, cwd=str(project))
        outputs += [result.stdout, result.stderr]
    replies = ask_daemon(
        world.socket,
        {"op": "ping"},
        {"op": "env", "dir": str(project)},
        {"op": "credentials", "profile": "alice-sts"},
        {"op": "credentials", "profile": "alice"},
        {"op": "renew", "profile": "alice-sts"},
        {"op": "status", "dir": str(project)},
        {"op": "status"},
    )
    outputs += [json.dumps(reply) for reply in replies]
    assert replies[2]["ok"], "the role's credentials must be served (else this scan proves nothing)"
    for secret in _secrets(local_aws):
        leaks = [text[:200] for text in outputs if secret.decode() in text]
        assert not leaks, f"long-term key material in output: {leaks}"


def test_no_long_term_secret_in_any_file_the_session_wrote(
    tmp_path_factory: pytest.TempPathFactory, local_aws: LocalAws, world: World, daemon: Daemon
) -> None:
    # This test's own daemon, stopped so its log is complete, plus every world of the session so far.
    ask_daemon(world.socket, {"op": "credentials", "profile": "alice-sts"})
    daemon.stop()
    session = tmp_path_factory.getbasetemp()
    runtime = [Path("/tmp") / name for name in os.listdir("/tmp") if name.startswith("stsd-rt-")]
    scanned = planted = 0
    leaks = []
    for root in [session, *runtime]:
        for path in _files_under(root):
            if root == session and not _written_by_stsd(path, root):
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            found = [secret for secret in _secrets(local_aws) if secret in data]
            if _planted_on_purpose(path):
                planted += bool(found)
                continue
            scanned += 1
            leaks += [str(path)] * bool(found)
    assert scanned > 0
    assert planted > 0, "the scan must find the keys where they were put, or it finds nothing"
    assert any(path.name == "daemon-stderr.log" for path in _files_under(session))
    assert not leaks, f"long-term key material in files: {sorted(set(leaks))}"
