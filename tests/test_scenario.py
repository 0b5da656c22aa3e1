"""The scenario stsd exists for (README: Quickstart) end to end against a real `stsd serve` and a real local STS with IAM enforcement: alice's own
keys can do nothing, a trusted project gets the role's temporary credentials, and nothing else does."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import Daemon, World, ask_daemon

from stsd.demo.local_aws import ACCOUNT_ID, BUCKET, EXTERNAL_ID, REGION, ROLE_ARN, ROLE_NAME
from stsd.project.projectfile import PROJECT_FILE_NAME

ASSUMED_ROLE_PREFIX = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/"
PROFILE_PROJECT = 'profile = "alice-sts"\n\n[env]\nAWS_DEFAULT_OUTPUT = "json"\n'
INLINE_PROJECT = (
    f'role_arn = "{ROLE_ARN}"\n'
    'source_profile = "alice"\n'
    f'external_id = "{EXTERNAL_ID}"\n'
    'role_session_name = "inline-session"\n'
    'region = "eu-west-1"\n'
)
WRONG_EXTERNAL_ID_PROJECT = INLINE_PROJECT.replace(
    f'external_id = "{EXTERNAL_ID}"', 'external_id = "mallory"'
)
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def allow(world: World, directory: Path) -> None:
    """Trust a project as the user would."""
    world.stsd("allow", str(directory), check=True)


def deny(world: World, directory: Path) -> None:
    world.stsd("deny", str(directory), check=True)


def ask(world: World, message: dict) -> dict:
    [reply] = ask_daemon(world.socket, message)
    return reply


def refusal(reply: dict) -> dict:
    assert reply["ok"] is False, "credentials were handed out where they must not be"
    assert "vars" not in reply and "credentials" not in reply
    return reply["error"]


def role_clients(world: World, access_key: str, secret: str, token: str | None = None):  # type: ignore[no-untyped-def]
    return world.aws.client("sts", access_key, secret, token), world.aws.client(
        "s3", access_key, secret, token
    )


def test_alice_own_keys_identify_her_but_cannot_list_buckets(world: World) -> None:
    keys = world.aws.alice
    assert keys is not None
    sts, s3 = role_clients(world, keys.access_key_id, keys.secret_access_key)
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{ACCOUNT_ID}:user/alice"
    with pytest.raises(ClientError) as denied:
        s3.list_buckets()
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_trusted_profile_project_gets_role_credentials_that_list_buckets(
    daemon: Daemon, world: World
) -> None:
    project = world.project("app", PROFILE_PROJECT)
    allow(world, project)
    reply = ask(world, {"op": "env", "dir": str(project / "src")})  # a subdirectory is governed too
    assert reply["ok"] is True, reply
    assert reply["project"] == {
        "path": str(project / PROJECT_FILE_NAME),
        "name": "alice-sts",
        "credentials": "env",
    }
    variables = reply["vars"]
    assert variables["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert variables["AWS_ACCESS_KEY_ID"] != world.aws.alice.access_key_id  # type: ignore[union-attr]
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == REGION
    assert variables["AWS_DEFAULT_OUTPUT"] == "json"
    assert variables["STSD_PROFILE"] == "alice-sts"
    for cleared in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SECURITY_TOKEN"):
        assert variables[cleared] is None
    assert ISO_Z.match(variables["AWS_CREDENTIAL_EXPIRATION"])
    assert reply["expiration"] == variables["AWS_CREDENTIAL_EXPIRATION"]
    expiration = datetime.strptime(reply["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert time.time() < reply["refresh_at"] <= (expiration - timedelta(minutes=15)).timestamp()

    sts, s3 = role_clients(
        world,
        variables["AWS_ACCESS_KEY_ID"],
        variables["AWS_SECRET_ACCESS_KEY"],
        variables["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"] == ASSUMED_ROLE_PREFIX + "s3-access"
    assert BUCKET in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]


def test_inline_project_gets_its_own_session_and_region(daemon: Daemon, world: World) -> None:
    project = world.project("inline", INLINE_PROJECT)
    allow(world, project)
    reply = ask(world, {"op": "env", "dir": str(project)})
    assert reply["ok"] is True, reply
    variables = reply["vars"]
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert variables["STSD_PROFILE"] == ROLE_NAME
    sts, s3 = role_clients(
        world,
        variables["AWS_ACCESS_KEY_ID"],
        variables["AWS_SECRET_ACCESS_KEY"],
        variables["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"] == ASSUMED_ROLE_PREFIX + "inline-session"
    assert BUCKET in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]


def test_every_shell_in_a_project_shares_one_session(daemon: Daemon, world: World) -> None:
    project = world.project("shared", PROFILE_PROJECT)
    allow(world, project)
    first, second = (ask(world, {"op": "env", "dir": str(project)}) for _ in range(2))
    by_profile = ask(world, {"op": "credentials", "profile": "alice-sts"})
    assert first["vars"]["AWS_ACCESS_KEY_ID"] == second["vars"]["AWS_ACCESS_KEY_ID"]
    # The project names the profile's role request exactly, so credential-process shares it too.
    assert by_profile["credentials"]["AccessKeyId"] == first["vars"]["AWS_ACCESS_KEY_ID"]


def test_credentials_for_a_profile_are_credential_process_json(daemon: Daemon, world: World) -> None:
    reply = ask(world, {"op": "credentials", "profile": "alice-sts", "id": "cp"})
    assert reply["ok"] is True and reply["id"] == "cp"
    credentials = reply["credentials"]
    assert sorted(credentials) == ["AccessKeyId", "Expiration", "SecretAccessKey", "SessionToken", "Version"]
    assert credentials["Version"] == 1
    assert credentials["AccessKeyId"].startswith("ASIA")
    assert ISO_Z.match(credentials["Expiration"])
    sts, _ = role_clients(
        world, credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"]
    )
    assert sts.get_caller_identity()["Arn"] == ASSUMED_ROLE_PREFIX + "s3-access"


def test_credentials_for_a_trusted_project_directory(daemon: Daemon, world: World) -> None:
    project = world.project("inline", INLINE_PROJECT)
    allow(world, project)
    reply = ask(world, {"op": "credentials", "dir": str(project)})
    assert reply["ok"] is True, reply
    sts, _ = role_clients(
        world,
        reply["credentials"]["AccessKeyId"],
        reply["credentials"]["SecretAccessKey"],
        reply["credentials"]["SessionToken"],
    )
    assert sts.get_caller_identity()["Arn"] == ASSUMED_ROLE_PREFIX + "inline-session"


def test_unknown_profile_is_refused_by_name(daemon: Daemon, world: World) -> None:
    error = refusal(ask(world, {"op": "credentials", "profile": "nobody-here"}))
    assert error["code"] == "unknown_profile"
    assert "nobody-here" in error["message"]


def test_wrong_external_id_is_a_clear_sts_denial(daemon: Daemon, world: World) -> None:
    project = world.project("wrong-id", WRONG_EXTERNAL_ID_PROJECT)
    allow(world, project)
    error = refusal(ask(world, {"op": "env", "dir": str(project)}))
    assert error["code"] == "sts_denied"
    assert "AccessDenied" in error["message"]
    assert "\n" not in error["message"]


def test_renew_hands_out_new_credentials(daemon: Daemon, world: World) -> None:
    project = world.project("app", PROFILE_PROJECT)
    allow(world, project)
    before = ask(world, {"op": "env", "dir": str(project)})
    renewed = ask(world, {"op": "renew", "dir": str(project)})
    after = ask(world, {"op": "env", "dir": str(project)})
    assert renewed["ok"] is True, renewed
    assert renewed["vars"]["AWS_ACCESS_KEY_ID"] != before["vars"]["AWS_ACCESS_KEY_ID"]
    assert after["vars"]["AWS_ACCESS_KEY_ID"] == renewed["vars"]["AWS_ACCESS_KEY_ID"]


def test_directory_without_a_project_gets_nothing_to_set(daemon: Daemon, world: World) -> None:
    plain = world.home / "plain"
    plain.mkdir()
    reply = ask(world, {"op": "env", "dir": str(plain)})
    assert reply["ok"] is True
    assert reply["project"] is None and reply["vars"] == {}


def test_untrusted_project_gets_no_credentials_and_is_told_what_to_run(daemon: Daemon, world: World) -> None:
    project = world.project("new", PROFILE_PROJECT)
    error = refusal(ask(world, {"op": "env", "dir": str(project)}))
    assert error["code"] == "untrusted"
    assert error["project"] == str(project / PROJECT_FILE_NAME)
    assert error["message"].endswith(f"run: stsd allow {project}")
    assert refusal(ask(world, {"op": "credentials", "dir": str(project)}))["code"] == "untrusted"


def test_project_edited_after_allow_is_untrusted_again(daemon: Daemon, world: World) -> None:
    project = world.project("edited", PROFILE_PROJECT)
    allow(world, project)
    assert ask(world, {"op": "env", "dir": str(project)})["ok"] is True
    (project / PROJECT_FILE_NAME).write_text(PROFILE_PROJECT + 'AWS_PAGER = ""\n')
    assert refusal(ask(world, {"op": "env", "dir": str(project)}))["code"] == "untrusted"
    allow(world, project)
    assert ask(world, {"op": "env", "dir": str(project)})["ok"] is True


def test_denied_project_gets_nothing_even_after_edits(daemon: Daemon, world: World) -> None:
    project = world.project("denied", PROFILE_PROJECT)
    allow(world, project)
    deny(world, project)
    error = refusal(ask(world, {"op": "env", "dir": str(project)}))
    assert error["code"] == "denied"
    assert error["message"].endswith(f"run: stsd allow {project}")
    (project / PROJECT_FILE_NAME).write_text(INLINE_PROJECT)
    assert refusal(ask(world, {"op": "env", "dir": str(project)}))["code"] == "denied"


def test_broken_project_file_is_reported_with_file_and_line(daemon: Daemon, world: World) -> None:
    project = world.project("broken", 'profile = "alice-sts"\nduration_seconds = "an hour"\n')
    error = refusal(ask(world, {"op": "env", "dir": str(project)}))
    assert error["code"] == "invalid_project"
    assert error["project"] == str(project / PROJECT_FILE_NAME)
    assert error["message"].startswith(f"{project / PROJECT_FILE_NAME}:2: duration_seconds:")


def test_status_shows_daemon_sources_sessions_and_project(daemon: Daemon, world: World) -> None:
    project = world.project("app", PROFILE_PROJECT)
    allow(world, project)
    assert ask(world, {"op": "env", "dir": str(project)})["ok"] is True
    status = ask(world, {"op": "status", "dir": str(project)})
    assert status["ok"] is True
    assert status["daemon"]["pid"] == daemon.process.pid
    assert status["daemon"]["mode"] == "foreground"
    assert status["daemon"]["socket"] == str(world.socket)
    assert status["daemon"]["rss_bytes"] > 0
    [session] = status["sessions"]
    assert session["role_arn"] == ROLE_ARN
    assert session["account"] == ACCOUNT_ID
    assert session["assumed_role_arn"] == ASSUMED_ROLE_PREFIX + "s3-access"
    assert 0 < session["renews_in_s"] < session["expires_in_s"] <= 3600
    assert session["last_error"] is None
    assert [source["name"] for source in status["sources"]] == ["profile alice"]
    assert status["project"] == {
        "path": str(project / PROJECT_FILE_NAME),
        "name": "alice-sts",
        "trust": "allowed",
    }


def test_a_project_file_path_the_daemon_cannot_read_is_an_error_not_a_crash(
    daemon: Daemon, world: World
) -> None:
    project = world.home / "fifo-project"
    project.mkdir()
    os.mkfifo(project / PROJECT_FILE_NAME)
    error = refusal(ask(world, {"op": "env", "dir": str(project)}))
    assert error["code"] == "invalid_project"
    assert ask(world, {"op": "ping"})["ok"] is True
