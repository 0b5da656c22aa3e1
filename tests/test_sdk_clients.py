"""Every real client we name, handed credentials both ways stsd hands them out without the endpoint, is
the project's role: boto3, the AWS CLI v1 and v2, and the AWS SDKs for JavaScript v3, Go v1 and v2 and
Ruby (tests/sdk_clients.py finds them; a missing one is skipped, or fails under CI).

- `credential_process`: the SDK runs `stsd credential-process --dir ~/p` itself, as a profile in its AWS
  config names it (no shell: `~` is expanded by stsd).
- `exec`: `stsd exec --dir ~/p -- CLIENT` puts the role's variables in the client's environment, as the
  shell hook does.
The endpoint (`credentials = "endpoint"`) is tested with the same clients in tests/test_endpoint_sdks.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Daemon, World
from sdk_clients import PROBE_KINDS, SdkProcess, aws_cli, probe
from test_cli_commands import ASSUMED_ROLE_PREFIX, PROJECT

from stsd.demo.local_aws import REGION

STSD_SCRIPT = str(Path(sys.executable).parent / "stsd")  # the console script a user's config names
CLIENTS = (*PROBE_KINDS, "cli-v1", "cli-v2")


def caller_arn(world: World, kind: str, argv_prefix: list[str], env: dict[str, str]) -> dict[str, str]:
    """What the local STS answers client `kind`'s GetCallerIdentity: {"arn": ...} or {"error": ...}."""
    if kind.startswith("cli-"):
        # These CLI releases may read no AWS_ENDPOINT_URL: name the local STS on the command line.
        call = [aws_cli(kind[4:]), "--endpoint-url", world.aws.endpoint, "sts", "get-caller-identity"]
        result = subprocess.run(
            [*argv_prefix, *call, "--output", "json"], env=env, capture_output=True, text=True, timeout=120
        )
        return (
            {"arn": json.loads(result.stdout)["Arn"]} if result.returncode == 0 else {"error": result.stderr}
        )
    argv, extra = probe(kind, world.aws.endpoint)
    with SdkProcess([*argv_prefix, *argv], {**env, **extra}, world.home) as sdk:
        return sdk.call("fresh")


@pytest.fixture
def project(world: World, daemon: Daemon) -> Path:
    return world.allowed("p", PROJECT)


@pytest.mark.parametrize("kind", CLIENTS)
def test_credential_process_profile_makes_every_client_the_role(
    world: World, project: Path, kind: str
) -> None:
    config = world.home / "sdk-config"
    config.write_text(
        f"[profile via-stsd]\ncredential_process = {STSD_SCRIPT} credential-process --dir ~/{project.name}\n"
        f"region = {REGION}\n"
    )
    env = {**world.env, "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "via-stsd", "AWS_REGION": REGION}
    if kind == "go-v1":
        env["AWS_SDK_LOAD_CONFIG"] = "1"  # Go v1 reads profiles in ~/.aws/config only with this (README)

    answer = caller_arn(world, kind, [], env)

    assert answer.get("arn", "").startswith(ASSUMED_ROLE_PREFIX), answer


def test_go_sdk_v1_without_load_config_does_not_see_the_profile(world: World, project: Path) -> None:
    # The other side of the README's note: without AWS_SDK_LOAD_CONFIG, Go v1 ignores credential_process.
    config = world.home / "sdk-config"
    config.write_text(
        f"[profile via-stsd]\ncredential_process = {STSD_SCRIPT} credential-process --dir ~/p\n"
    )
    env = {**world.env, "AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "via-stsd", "AWS_REGION": REGION}
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(world.home / "no-such-file")  # alice's keys would answer instead

    answer = caller_arn(world, "go-v1", [], env)

    assert "arn" not in answer and answer["error"], answer


@pytest.mark.parametrize("kind", CLIENTS)
def test_exec_makes_every_client_the_role(world: World, project: Path, kind: str) -> None:
    env = {**world.env, "AWS_REGION": REGION}

    answer = caller_arn(world, kind, [STSD_SCRIPT, "exec", "--dir", str(project), "--"], env)

    assert answer.get("arn", "").startswith(ASSUMED_ROLE_PREFIX), answer
