"""The real SDK clients the tests run, found (or built into a cache outside the repository) in one place.

A client that is missing is skipped on a developer's machine and is a failure under CI: `.ci/run` installs
every one of them, so a skip there would hide a broken install behind a green run.
Each probe is a long-running process speaking one JSON line per line it reads ("call": with the client it
made at start, "fresh": with a new one): `{"key": ..., "arn": ...}` from GetCallerIdentity, or `{"error": ...}`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

PROBES = Path(__file__).resolve().parent / "sdk_probes"
CACHE = Path.home() / ".cache" / "stsd-tests"
# The JavaScript SDK is installed by the tests into a cache outside the repository (never vendored).
NPM_CACHE = Path(os.environ.get("STSD_TEST_NPM_DIR") or CACHE / "npm")
JS_PACKAGE = "@aws-sdk/client-sts"
GO_CACHE = Path(os.environ.get("STSD_TEST_GO_DIR") or CACHE / "go")
SYSTEM_AWS = "/usr/bin/aws"  # Debian's awscli package (v2 on bookworm)
# Debian's Go SDKs, built in GOPATH mode (no module download: the registries the tests may reach are PyPI,
# Debian and npm).
GO_SDKS = {
    "v1": Path("/usr/share/gocode/src/github.com/aws/aws-sdk-go"),
    "v2": Path("/usr/share/gocode/src/github.com/aws/aws-sdk-go-v2"),
}
GO_PACKAGES = {"v1": "golang-github-aws-aws-sdk-go-dev", "v2": "golang-github-aws-aws-sdk-go-v2-dev"}


def missing(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run installs it, so under CI a missing client is a failure")
    pytest.skip(reason)


@contextlib.contextmanager
def _building(cache: Path) -> Iterator[None]:
    """One build into `cache` at a time, whichever test process asks first (pytest-xdist runs several)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def npm_modules() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        missing("npm or node is not installed; the JavaScript SDK cannot be tested")
    with _building(NPM_CACHE):
        if not (NPM_CACHE / "node_modules" / JS_PACKAGE / "package.json").exists():
            result = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NPM_CACHE), JS_PACKAGE],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            if result.returncode != 0:
                missing(f"npm install {JS_PACKAGE} failed: {result.stderr.strip().splitlines()[-1:]}")
    return NPM_CACHE / "node_modules"


def aws_cli(version: str) -> str:
    """The AWS CLI `version` ("v1": pip's, from the test dependencies; "v2": Debian's awscli)."""
    path = SYSTEM_AWS if version == "v2" else str(Path(sys.executable).parent / "aws")
    major = version[1:]
    executable = shutil.which(path) if os.path.isabs(path) else path
    if executable is None or not os.path.exists(executable):
        missing(f"{path} is not installed (Debian: apt-get install awscli)")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60)
    if not (version.stdout + version.stderr).startswith(f"aws-cli/{major}."):
        missing(f"{path} is {(version.stdout + version.stderr).split(' ')[0]}, not v{major}")
    return executable


def go_probe(sdk: str) -> Path:
    """The Go probe for SDK `sdk` ("v1" or "v2"), built once into the cache and again when its source changes."""
    if shutil.which("go") is None or not GO_SDKS[sdk].is_dir():
        missing(f"go or Debian's {GO_PACKAGES[sdk]} is not installed")
    source = PROBES / f"go_{sdk}_sts_probe.go"
    binary = GO_CACHE / f"go_{sdk}_sts_probe"
    with _building(GO_CACHE):
        if binary.exists() and binary.stat().st_mtime >= source.stat().st_mtime:
            return binary
        env = {
            **os.environ,
            "GOPATH": "/usr/share/gocode",
            "GO111MODULE": "off",
            "GOCACHE": str(GO_CACHE / "build"),
        }
        result = subprocess.run(
            ["go", "build", "-o", str(binary), str(source)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            missing(f"the Go SDK {sdk} probe does not build: {result.stderr.strip()[-300:]}")
    return binary


def ruby_probe() -> list[str]:
    ruby = shutil.which("ruby")
    if ruby is None or subprocess.run([ruby, "-e", 'require "aws-sdk-core"'], capture_output=True).returncode:
        missing("ruby or Debian's ruby-aws-sdk-core is not installed")
    return [ruby, str(PROBES / "ruby_sts_probe.rb")]


# The long-running probes, by the name the tests give each SDK.
PROBE_KINDS = ("boto3", "js-v3", "go-v1", "go-v2", "ruby")


def probe(kind: str, sts_endpoint: str) -> tuple[list[str], dict[str, str]]:
    """The argv of SDK `kind`'s probe and the variables it needs beside the test's environment."""
    # SDKs that read no AWS_ENDPOINT_URL take the local STS from STSD_TEST_STS_ENDPOINT: never real AWS.
    endpoint = {"STSD_TEST_STS_ENDPOINT": sts_endpoint}
    if kind == "boto3":
        return [sys.executable, "-I", str(PROBES / "boto3_sts_probe.py")], {}
    if kind == "js-v3":
        return ["node", str(PROBES / "js_sts_probe.js")], {"NODE_PATH": str(npm_modules())}
    if kind in ("go-v1", "go-v2"):
        return [str(go_probe(kind[3:]))], endpoint
    if kind == "ruby":
        return ruby_probe(), endpoint
    raise ValueError(f"no probe for {kind!r}; one of {PROBE_KINDS}")


class SdkProcess:
    """A long-running SDK probe: each line sent makes one STS call and prints the key it used."""

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

    def __exit__(self, *_: object) -> None:
        self.close()
