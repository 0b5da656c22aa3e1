"""`stsd credential-process`, as botocore runs it (no shell, whatever the cwd): `--profile NAME` and
`--dir DIR`; a bare argument is a profile unless it holds a `/` or is `.`, so a directory that happens to
share a profile's name (a clone, a download) cannot hand the SDK another role; `~` is expanded."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from conftest import World

from .conftest import role_project, run_stsd, trusted_project

PROFILE_SESSION = ":assumed-role/alice-sts/s3-access"  # the alice-sts profile's role_session_name


def identity(world: World, result) -> str:
    """The caller ARN of the credentials a credential-process run printed."""
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["Version"] == 1
    assert document["AccessKeyId"].startswith("ASIA")
    sts = boto3.client(
        "sts",
        endpoint_url=world.aws.endpoint,
        region_name="us-east-1",
        aws_access_key_id=document["AccessKeyId"],
        aws_secret_access_key=document["SecretAccessKey"],
        aws_session_token=document["SessionToken"],
    )
    return str(sts.get_caller_identity()["Arn"])


def test_profile_flag(world: World, daemon) -> None:
    result = run_stsd("credential-process", "--profile", "alice-sts", env=world.env, cwd=world.home)
    assert identity(world, result).endswith(PROFILE_SESSION)


def test_dir_flag(world: World, daemon) -> None:
    project = trusted_project(world, "proj", role_project("by-dir"))
    result = run_stsd("credential-process", "--dir", str(project), env=world.env, cwd=world.home)
    assert identity(world, result).endswith(":assumed-role/alice-sts/by-dir")


def test_a_directory_named_like_the_profile_does_not_hijack_it(world: World, daemon) -> None:
    # A trusted project that happens to sit in the cwd under the profile's name, for another session.
    trusted_project(world, "alice-sts", role_project("hijacked"))
    result = run_stsd("credential-process", "alice-sts", env=world.env, cwd=world.home)
    assert identity(world, result).endswith(PROFILE_SESSION)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(("--dir", "~/proj"), id="dir-flag"),
        pytest.param(("~/proj",), id="bare-path"),
    ],
)
def test_tilde_is_expanded_without_a_shell(world: World, daemon, argv: tuple[str, ...]) -> None:
    trusted_project(world, "proj", role_project("by-tilde"))
    elsewhere = world.home / "elsewhere"
    elsewhere.mkdir()
    # A literal "~" directory in the cwd must not be what "~/proj" names.
    (elsewhere / "~" / "proj").mkdir(parents=True)
    result = run_stsd("credential-process", *argv, env=world.env, cwd=elsewhere)
    assert identity(world, result).endswith(":assumed-role/alice-sts/by-tilde")


def test_profile_flag_ignores_a_directory_of_that_name(world: World, daemon) -> None:
    trusted_project(world, "alice-sts", role_project("hijacked"))
    result = run_stsd("credential-process", "--profile", "alice-sts", env=world.env, cwd=world.home)
    assert identity(world, result).endswith(PROFILE_SESSION)


def test_dot_is_the_current_directory(world: World, daemon) -> None:
    project = trusted_project(world, "proj", role_project("by-dot"))
    result = run_stsd("credential-process", ".", env=world.env, cwd=Path(project))
    assert identity(world, result).endswith(":assumed-role/alice-sts/by-dot")
