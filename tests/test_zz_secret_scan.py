"""A secret scan of everything stsd answers: alice's long-term keys must not appear in any reply or any
output of the CLI. Files are scanned by the `world` fixture as each world ends (tests/conftest.py): the
runtime directory, the XDG state, data and config dirs, logs, and anything new under ~/.aws (tests' own
inputs, such as the credentials file, hold the keys on purpose and are not stsd's writing)."""

from __future__ import annotations

import json
import sys

from conftest import Daemon, World, ask_daemon, home_files_holding, long_term_secrets

from stsd.demo.local_aws import LocalAws


def _secrets(local_aws: LocalAws) -> list[bytes]:
    return long_term_secrets(local_aws)


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


def test_the_file_scan_finds_a_key_stsd_wrote_and_passes_over_the_planted_ones(
    world: World, local_aws: LocalAws
) -> None:
    # The canary for the scan every world gets as it ends: the keys in ~/.aws/credentials were put there by
    # the test; the same bytes in a state file or a log are a leak.
    [secret, _] = _secrets(local_aws)
    assert secret in (world.home / ".aws" / "credentials").read_bytes()
    assert home_files_holding(world.home, [secret]) == []
    for leak in (world.state / "trusted.json", world.home / "daemon-stderr.log", world.home / "other.log"):
        leak.parent.mkdir(parents=True, exist_ok=True)
        leak.write_bytes(b"prefix " + secret + b" suffix")
        assert home_files_holding(world.home, [secret]) == [str(leak)]
        leak.unlink()
    (world.home / "notes.txt").write_bytes(secret)  # not a place stsd writes
    assert home_files_holding(world.home, [secret]) == []
