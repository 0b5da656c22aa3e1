"""A `.stsd.toml` that another user owns (dropped into a shared or writable directory inside one of our
projects) never governs: not even after its content was trusted. The shell says so once, and the project
of ours above it governs, with its own credentials."""

from __future__ import annotations

import os

import boto3
from conftest import World

from .conftest import ALICE, NOBODY, as_root, lines_with, role_project, shell_environment, trusted_project


@as_root
def test_a_project_file_owned_by_another_user_is_skipped_for_ours_above_it(
    world: World, daemon, open_shell
) -> None:
    parent = trusted_project(world, "ours", ALICE)
    # Trusted while it was ours, as a user might have; then someone else owns it (and could rewrite it).
    foreign = trusted_project(world, "ours/shared", role_project("foreign", region="eu-west-1"))
    os.chown(foreign / ".stsd.toml", NOBODY, NOBODY)
    assert parent in foreign.parents
    shell = open_shell()

    output = shell.cd(foreign) + shell.prompt() + shell.prompt()
    environment = shell_environment(shell)

    assert environment.get("AWS_ACCESS_KEY_ID", "").startswith("ASIA"), "our project above was not loaded"
    assert environment.get("AWS_REGION") == "us-east-1", "the foreign file's region was applied"
    sts = boto3.client(
        "sts",
        endpoint_url=world.aws.endpoint,
        region_name="us-east-1",
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=environment["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"].endswith(":assumed-role/alice-sts/s3-access")
    assert len(lines_with(output, f"owned by uid {NOBODY}")) == 1, output
