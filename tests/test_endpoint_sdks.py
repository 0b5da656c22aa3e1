"""Real SDK processes against the credentials endpoint: boto3, the AWS SDK for JavaScript v3 (npm), the
AWS CLI (v2 from Debian's `awscli` package, v1 from the test dependencies) and the AWS SDK for Go v1
(Debian's golang-github-aws-aws-sdk-go-dev, built by the test into a cache) keep working across forced
renewals and get an error naming the fix once the project file is edited; each skips with the reason
when it is not installed. Sessions are 900 s long, so
botocore fetches again on every call and a renewal shows as a new access key id inside one process."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Daemon, World, ask_daemon
from test_endpoint import SHORT_ENDPOINT_PROJECT, applied, endpoint_daemon

__all__ = ["endpoint_daemon"]  # the fixture, shared with test_endpoint.py

RENEWALS = 3
# The JavaScript SDK is installed by the tests into a cache outside the repository (never vendored).
NPM_CACHE = Path(os.environ.get("STSD_TEST_NPM_DIR") or Path.home() / ".cache" / "stsd-tests" / "npm")
JS_PACKAGE = "@aws-sdk/client-sts"
SYSTEM_AWS = "/usr/bin/aws"  # Debian's awscli package (v2 on bookworm)

BOTO3_CHILD = """
import json, sys
import boto3

session = boto3.session.Session()
sts = session.client("sts")
for line in sys.stdin:
    try:
        client = boto3.session.Session().client("sts") if line.strip() == "fresh" else sts
        client.get_caller_identity()
        credentials = (session if client is sts else client._request_signer._credentials)
        frozen = (credentials.get_credentials() if client is sts else credentials).get_frozen_credentials()
        print(json.dumps({"key": frozen.access_key}), flush=True)
    except Exception as error:
        print(json.dumps({"error": str(error)}), flush=True)
"""

JS_CHILD = """
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
const { fromHttp } = require("@aws-sdk/credential-provider-http");
const readline = require("readline");
const longLived = new STSClient({});
const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    // "http": the container provider alone, as the default chain uses it (the chain reports only "Could
    // not load credentials from any providers" when it fails, so the endpoint's message is read here).
    const kind = line.trim();
    const client = kind === "fresh" ? new STSClient({}) : kind === "http" ? new STSClient({ credentials: fromHttp({}) }) : longLived;
    try {
      await client.send(new GetCallerIdentityCommand({}));
      const credentials = await client.config.credentials();
      console.log(JSON.stringify({ key: credentials.accessKeyId }));
    } catch (error) {
      console.log(JSON.stringify({ error: `${error.message} ${error.Message || ""}` }));
    }
  });
});
"""


class SdkProcess:
    """A long-running SDK process: each line sent makes one STS call and prints the key it used."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            argv, env=env, cwd=str(cwd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip

    def call(self, kind: str = "call") -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(kind + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(
                f"the SDK process died: {self.process.stderr.read() if self.process.stderr else ''}"
            )
        return json.loads(line)

    def close(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=10)

    def __enter__(self) -> SdkProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
    with SdkProcess([sys.executable, "-I", "-c", BOTO3_CHILD], env, directory) as sdk:
        # Each renewal is seen by the same client in the same process.
        follow_renewals(world, directory, lambda: sdk.call()["key"])
        # The long-lived client is in botocore's advisory window (13-15 min left): a failed refresh is
        # logged and the credentials it holds are used until 10 min are left. A new client asks at once.
        assert_names_the_fix(sdk.call("fresh")["error"])


def _npm_package() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm or node is not installed; the JavaScript SDK cannot be tested")
    if not (NPM_CACHE / "node_modules" / JS_PACKAGE / "package.json").exists():
        NPM_CACHE.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE), JS_PACKAGE],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.skip(f"npm install {JS_PACKAGE} failed: {result.stderr.strip().splitlines()[-1:]}")
    return NPM_CACHE / "node_modules"


def test_javascript_v3_process_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon]
) -> None:
    modules = _npm_package()
    directory, env, _ = endpoint_project
    with SdkProcess(["node", "-e", JS_CHILD], {**env, "NODE_PATH": str(modules)}, directory) as sdk:
        # JS v3 refreshes only within 5 min of expiry: the long-lived client keeps its (valid) key; a
        # client made now in the same process gets the renewed one from the endpoint.
        follow_renewals(world, directory, lambda: sdk.call("fresh")["key"], lambda: sdk.call()["key"])
        assert "Could not load credentials" in sdk.call("fresh")["error"]  # the chain hides the reason
        error = sdk.call("http")["error"]
        assert "Server responded with status: 403" in error
        assert_names_the_fix(error)


def _aws_cli(path: str, major: str) -> str:
    executable = shutil.which(path) if os.path.isabs(path) else path
    if executable is None or not os.path.exists(executable):
        pytest.skip(f"{path} is not installed (Debian: apt-get install awscli)")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    if not (version.stdout + version.stderr).startswith(f"aws-cli/{major}."):
        pytest.skip(f"{path} is {(version.stdout + version.stderr).split(' ')[0]}, not v{major}")
    return executable


@pytest.mark.parametrize("cli", ["v2", "v1"])
def test_aws_cli_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon], cli: str
) -> None:
    if cli == "v2":
        aws = _aws_cli(SYSTEM_AWS, "2")
    else:
        aws = _aws_cli(str(Path(sys.executable).parent / "aws"), "1")
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


GO_SDK = Path("/usr/share/gocode/src/github.com/aws/aws-sdk-go")
GO_PROBE = Path(__file__).resolve().parent / "sdk_probes" / "go_sts_probe.go"
GO_CACHE = Path(os.environ.get("STSD_TEST_GO_DIR") or Path.home() / ".cache" / "stsd-tests" / "go")


def _go_probe() -> Path:
    if shutil.which("go") is None or not GO_SDK.is_dir():
        pytest.skip("go or Debian's golang-github-aws-aws-sdk-go-dev is not installed")
    binary = GO_CACHE / "go_sts_probe"
    if not binary.exists() or binary.stat().st_mtime < GO_PROBE.stat().st_mtime:
        GO_CACHE.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GOPATH": "/usr/share/gocode",
            "GO111MODULE": "off",
            "GOCACHE": str(GO_CACHE / "build"),
        }
        result = subprocess.run(
            ["go", "build", "-o", str(binary), str(GO_PROBE)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.skip(f"the Go SDK probe does not build: {result.stderr.strip()[-300:]}")
    return binary


def test_go_sdk_v1_process_follows_renewals_and_reports_an_edit(
    world: World, endpoint_project: tuple[Path, dict[str, str], Daemon]
) -> None:
    probe = _go_probe()
    directory, env, _ = endpoint_project
    # aws-sdk-go v1 reads no AWS_ENDPOINT_URL: the probe takes the local STS from this variable.
    with SdkProcess([str(probe)], {**env, "STSD_TEST_STS_ENDPOINT": world.aws.endpoint}, directory) as sdk:
        # Go refreshes within 5 min of expiry (as JS v3): the long-lived session keeps its valid key.
        follow_renewals(world, directory, lambda: sdk.call("fresh")["key"], lambda: sdk.call()["key"])
        assert_names_the_fix(sdk.call("fresh")["error"])
