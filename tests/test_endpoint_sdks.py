"""Real SDK processes against the credentials endpoint: boto3, the AWS SDK for JavaScript v3 (npm), the
AWS CLI (v2 from Debian's `awscli` package, v1 from the test dependencies) and the AWS SDKs for Go v1 and
v2 (Debian's packages, built by the tests into a cache) keep working across forced renewals and get an
error naming the fix once the project file is edited (tests/sdk_clients.py finds them; a missing one is
skipped, or fails under CI). Sessions are 900 s long, so botocore fetches again on every call and a
renewal shows as a new access key id inside one process. The Ruby SDK packaged by Debian (3.168) reads
no AWS_CONTAINER_CREDENTIALS_FULL_URI, so it is tested with credential_process only
(tests/test_sdk_clients.py)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Daemon, World, ask_daemon
from sdk_clients import SdkProcess, aws_cli, probe
from test_endpoint import SHORT_ENDPOINT_PROJECT, applied, endpoint_daemon

__all__ = ["endpoint_daemon"]  # the fixture, shared with test_endpoint.py

RENEWALS = 3


@pytest.fixture
def endpoint_project(world: World, endpoint_daemon: Daemon) -> tuple[Path, dict[str, str], Daemon]:
    directory = world.allowed("p", SHORT_ENDPOINT_PROJECT)
    return directory, applied(world, world.env_json(directory)), endpoint_daemon


def renew(world: World, directory: Path) -> None:
    time.sleep(1.1)  # the forced-renewal interval this world's config sets
    [reply] = ask_daemon(world.socket, {"op": "renew", "dir": str(directory)})
    assert reply["ok"], reply


def edit(directory: Path) -> None:
    path = directory / ".stsd.toml"
    path.write_text(path.read_text() + "# edited\n")


def follow_renewals(
    world: World, directory: Path, new_key: Callable[[], str], kept_key: Callable[[], str] | None = None
) -> None:
    """Each forced renewal shows as a new key from `new_key`, while `kept_key` (a long-lived client that
    refreshes only near expiry) keeps the valid key it has; then the project file is edited."""
    first = kept_key() if kept_key is not None else None
    keys = [new_key()]
    for _ in range(RENEWALS):
        renew(world, directory)
        if kept_key is not None:
            assert kept_key() == first
        keys.append(new_key())
    assert len(set(keys)) == RENEWALS + 1, keys
    edit(directory)


def assert_names_the_fix(message: str) -> None:
    assert "changed since this process got its token" in message, message
    assert "stsd allow" in message, message


def test_boto3_process_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon]
) -> None:
    directory, env, _ = endpoint_project
    argv, extra = probe("boto3", world.aws.endpoint)
    with SdkProcess(argv, {**env, **extra}, directory) as sdk:
        # Each renewal is seen by the same client in the same process.
        follow_renewals(world, directory, lambda: sdk.call()["key"])
        # The long-lived client is in botocore's advisory window (13-15 min left): a failed refresh is
        # logged and the credentials it holds are used until 10 min are left. A new client asks at once.
        assert_names_the_fix(sdk.call("fresh")["error"])


def test_javascript_v3_process_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon]
) -> None:
    argv, extra = probe("js-v3", world.aws.endpoint)
    directory, env, _ = endpoint_project
    with SdkProcess(argv, {**env, **extra}, directory) as sdk:
        # JS v3 refreshes only within 5 min of expiry: the long-lived client keeps its (valid) key; a
        # client made now in the same process gets the renewed one from the endpoint.
        follow_renewals(world, directory, lambda: sdk.call("fresh")["key"], lambda: sdk.call()["key"])
        assert "Could not load credentials" in sdk.call("fresh")["error"]  # the chain hides the reason
        error = sdk.call("http")["error"]
        assert "Server responded with status: 403" in error
        assert_names_the_fix(error)


@pytest.mark.parametrize("cli", ["v2", "v1"])
def test_aws_cli_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon], cli: str
) -> None:
    aws = aws_cli(cli)
    directory, env, _ = endpoint_project
    # Old CLIs do not read AWS_ENDPOINT_URL: name the local STS on the command line, never real AWS.
    call = [aws, "--endpoint-url", world.aws.endpoint, "sts", "get-caller-identity", "--output", "json"]

    def key() -> str:
        # The key the CLI signed with: its debug log names it ("Found credentials from container-role").
        result = subprocess.run(
            [*call, "--debug"], env=env, cwd=str(directory), capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "container-role" in result.stderr
        found = re.search(r"Credential=(ASIA[A-Z0-9]+)/", result.stderr)
        assert found, result.stderr[-2000:]
        return found.group(1)

    follow_renewals(world, directory, key)
    result = subprocess.run(call, env=env, cwd=str(directory), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert_names_the_fix(result.stderr)


@pytest.mark.parametrize("kind", ["go-v1", "go-v2"])
def test_go_sdk_process_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon], kind: str
) -> None:
    argv, extra = probe(kind, world.aws.endpoint)
    directory, env, _ = endpoint_project
    with SdkProcess(argv, {**env, **extra}, directory) as sdk:
        # Go refreshes within 5 min of expiry (as JS v3): the long-lived client keeps its valid key.
        follow_renewals(world, directory, lambda: sdk.call("fresh")["key"], lambda: sdk.call()["key"])
        assert_names_the_fix(sdk.call("fresh")["error"])
