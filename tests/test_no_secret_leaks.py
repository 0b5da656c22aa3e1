"""Secrets stay home: after a full run (credentials handed out, errors, status, renewals), alice's long-term
secret key is nowhere but ~/.aws/credentials: not in a reply, a log, status output or any other file."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Daemon, World, ask_daemon

from stsd.demo.local_aws import EXTERNAL_ID, ROLE_ARN

PROFILE_PROJECT = 'profile = "alice-sts"\n'
INLINE_PROJECT = f'role_arn = "{ROLE_ARN}"\nsource_profile = "alice"\nexternal_id = "{EXTERNAL_ID}"\nregion = "us-east-1"\n'
WRONG_ID_PROJECT = f'role_arn = "{ROLE_ARN}"\nsource_profile = "alice"\nexternal_id = "not-alice"\n'
BROKEN_PROJECT = 'profile = "alice-sts"\nduration_seconds = "long"\n'


def run_full_scenario(world: World) -> list[str]:
    """Everything a user does, through the socket and the CLI; returns every text the daemon gave out."""
    projects = {
        "app": PROFILE_PROJECT,
        "inline": INLINE_PROJECT,
        "wrong-id": WRONG_ID_PROJECT,
        "broken": BROKEN_PROJECT,
        "untrusted": PROFILE_PROJECT,
        "denied": INLINE_PROJECT,
    }
    directories = {name: world.project(name, body) for name, body in projects.items()}
    for name in ("app", "inline", "wrong-id", "broken"):
        world.stsd("allow", str(directories[name]))
    world.stsd("deny", str(directories["denied"]))

    messages: list[dict] = []
    for directory in directories.values():
        messages += [
            {"op": "env", "dir": str(directory)},
            {"op": "credentials", "dir": str(directory)},
            {"op": "status", "dir": str(directory)},
        ]
    messages += [
        {"op": "credentials", "profile": "alice-sts"},
        {"op": "credentials", "profile": "alice"},  # keys, no role: a session token, never the keys
        {"op": "renew", "dir": str(directories["app"])},
        {"op": "renew", "profile": "alice-sts"},
        {"op": "status"},
        {"op": "no-such-op"},
    ]
    replies = ask_daemon(world.socket, *messages)
    assert any(reply["ok"] and "vars" in reply and reply["vars"] for reply in replies), (
        "no credentials served"
    )
    assert any(not reply["ok"] and reply["error"]["code"] == "sts_denied" for reply in replies)
    outputs = [json.dumps(reply) for reply in replies]
    for command in (["status"], ["status", "--json"], ["env", "--json", str(directories["app"])]):
        result = world.stsd(*command, cwd=str(directories["app"]))
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    return outputs


def files_under(*roots: Path) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        found += [path for path in root.rglob("*") if path.is_file() and not path.is_symlink()]
    return found


def test_alice_secret_key_appears_only_in_her_credentials_file(daemon: Daemon, world: World) -> None:
    assert world.aws.alice is not None
    secret = world.aws.alice.secret_access_key
    outputs = run_full_scenario(world)

    served = [json.loads(text) for text in outputs if text.startswith('{"v"')]
    temporary_secrets = [reply["vars"]["AWS_SECRET_ACCESS_KEY"] for reply in served if reply.get("vars")]
    # The scan sees secrets when they are there: the temporary ones, which are meant to be handed out.
    assert temporary_secrets and all(temporary in "".join(outputs) for temporary in temporary_secrets)
    leaking_outputs = [text[:80] for text in outputs if secret in text]
    assert leaking_outputs == []
    daemon.stop()  # flush and close the daemon's log before reading it
    assert "assumed" in daemon.log  # the log did record the activity (debug level)
    assert secret not in daemon.log
    credentials_file = world.home / ".aws" / "credentials"
    holders = [
        path for path in files_under(world.home, world.runtime) if secret.encode() in path.read_bytes()
    ]
    assert holders == [credentials_file]
