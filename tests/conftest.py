"""Shared fixtures: a real local STS/IAM/S3 (moto server, IAM enforcement on), an isolated user world
(HOME, XDG dirs, ~/.aws files, a socket path) and a real `stsd serve` daemon process inside it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tokenize
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from mfa_stub import mfa_sts, mfa_world  # noqa: F401  (fixtures for tests of MFA sources, shells included)
from sso_stub import sso_world  # noqa: F401  (SSO portal stub and credential_process profiles)

from stsd.demo.local_aws import REGION, LocalAws

REPO = Path(__file__).resolve().parent.parent
STSD = [sys.executable, "-m", "stsd"]
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# Anything that could point an SDK at real AWS or at ambient credentials is removed from test processes.
_AMBIENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SSO",
    "AWS_ENDPOINT_URL_SSO_OIDC",
    "AWS_CA_BUNDLE",  # a machine-wide bundle would override a profile's ca_bundle in the tests that set one
    "STSD_SOCKET",
    "XDG_RUNTIME_DIR",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
)


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        yield aws


@dataclass
class World:
    """One user's world: HOME with ~/.aws, XDG dirs, a short socket path and the env to run stsd in."""

    home: Path
    runtime: Path
    aws: LocalAws
    env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return Path(self.env["STSD_SOCKET"])

    @property
    def state(self) -> Path:
        return Path(self.env["XDG_STATE_HOME"]) / "stsd"

    def project(self, name: str, body: str) -> Path:
        """A project directory under HOME with `.stsd.toml` holding `body`."""
        directory = self.home / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ".stsd.toml").write_text(body)
        return directory

    def allowed(self, name: str, body: str) -> Path:
        """A project (as `project`) that `stsd allow` trusted."""
        directory = self.project(name, body)
        result = self.stsd("allow", str(directory))
        assert result.returncode == 0, result.stderr
        return directory

    def env_json(self, directory: Path, *extra: str) -> dict[str, Any]:
        """What `stsd env --json` gives for `directory` (None: a variable to unset)."""
        result = self.stsd("env", "--json", *extra, str(directory))
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    def write_config(self, text: str) -> Path:
        """The daemon's $XDG_CONFIG_HOME/stsd/config.toml (read when a daemon starts)."""
        path = Path(self.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def stsd(
        self, *args: str, check: bool = False, timeout: float = 30, **kwargs
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*STSD, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
            **kwargs,
        )


def make_world(aws: LocalAws, base: Path) -> World:
    home = base / "home"
    home.mkdir()
    aws.write_aws_files(home)
    # AF_UNIX paths are limited to 108 bytes: keep the runtime dir short, outside pytest's deep tmp_path.
    runtime = Path(tempfile.mkdtemp(prefix="stsd-rt-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        XDG_RUNTIME_DIR=str(runtime),
        STSD_SOCKET=str(runtime / "stsd" / "stsd.sock"),
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_EC2_METADATA_DISABLED="true",  # never probe 169.254.169.254 from tests
        STSD_NO_AUTOSTART="1",
        PYTHONPATH=str(REPO),
    )
    return World(home=home, runtime=runtime, aws=aws, env=env)


@pytest.fixture
def world(local_aws: LocalAws, tmp_path: Path) -> Iterator[World]:
    w = make_world(local_aws, tmp_path)
    yield w
    # Nothing stsd wrote may hold the source's long-term keys: the runtime directory (stamps, saved
    # values, sockets, pid file), scanned before it goes, and the world's home (XDG state, data and
    # config, logs, anything new under ~/.aws). Each world is scanned as it ends, so the scan holds
    # however the suite is ordered or split between processes.
    secrets = long_term_secrets(local_aws)
    leaked = runtime_files_holding(w.runtime, secrets)
    shutil.rmtree(w.runtime, ignore_errors=True)
    leaked += home_files_holding(w.home, secrets)
    assert not leaked, f"long-term key material in files stsd wrote: {leaked}"


def stsd_tokens(except_module: str) -> Iterator[tuple[str, tokenize.TokenInfo]]:
    """Every token of stsd's source but `except_module` (the one place a fact may be written), with the
    module's path under stsd/: for the checks that a fact has no second definition."""
    package = REPO / "stsd"
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where == except_module:
            continue
        with path.open("rb") as source:
            for token in tokenize.tokenize(source.readline):
                yield where, token


def long_term_secrets(aws: LocalAws) -> list[bytes]:
    assert aws.alice is not None
    # The access key id is not secret by itself, but stsd has no reason to write or show it either.
    return [aws.alice.secret_access_key.encode(), aws.alice.access_key_id.encode()]


def runtime_files_holding(root: Path, secrets: list[bytes]) -> list[str]:
    found = []
    for directory, _, names in os.walk(root):
        for name in names:
            path = Path(directory) / name
            try:
                if path.is_symlink() or not path.is_file():
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            found += [str(path)] * any(secret in data for secret in secrets)
    return found


_PLANTED = (".aws/credentials", ".aws/config")  # where tests put the source keys, on purpose
_STSD_WRITES = (".local", ".config", ".aws")  # XDG state/data/config, and ~/.aws which stsd must never touch


def home_files_holding(home: Path, secrets: list[bytes]) -> list[str]:
    """Files stsd may have written under a world's `home` that hold a secret: XDG dirs, ~/.aws (its own
    files there would be a bug) and logs (the daemon's stderr among them); the keys planted on purpose
    are not stsd's writing (tests/test_zz_secret_scan.py shows the scan finds what it should)."""
    found = []
    for directory, _, names in os.walk(home):
        for name in names:
            path = Path(directory) / name
            relative = path.relative_to(home)
            if not (path.suffix == ".log" or any(part in _STSD_WRITES for part in relative.parts[:-1])):
                continue
            try:
                if path.is_symlink() or not path.is_file() or path.stat().st_size > 16 * 1024 * 1024:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            if str(relative) not in _PLANTED and any(secret in data for secret in secrets):
                found.append(str(path))
    return found


class Daemon:
    """A real `stsd serve` process; its stderr log is kept for leak scans and failure reports."""

    def __init__(self, world: World, extra_env: dict[str, str] | None = None) -> None:
        self.world = world
        self.log_path = world.home / "daemon-stderr.log"
        self._log = self.log_path.open("ab")
        env = {**world.env, **(extra_env or {})}
        self.process = subprocess.Popen(
            [*STSD, "serve", "--log-level", "debug"],
            env=env,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited {self.process.returncode}: {self.log_path.read_text()}")
            # Ready means answering, not just listening: the socket is bound before the server starts.
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(max(0.1, deadline - time.monotonic()))
                    sock.connect(str(self.world.socket))
                    sock.sendall(b'{"v": 1, "op": "ping"}\n')
                    if b'"ok":true' in sock.makefile("rb").readline():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer within {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def daemon(world: World) -> Iterator[Daemon]:
    with Daemon(world) as d:
        yield d


def enter_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """Run in-process daemon code inside `world` as it is now: its HOME, XDG dirs, AWS files and endpoints."""
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)
    for name, value in world.env.items():
        monkeypatch.setenv(name, value)
    return world


@pytest.fixture
def world_env(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """Run in-process daemon code inside `world`: its HOME, XDG dirs, AWS files and local STS endpoint."""
    return enter_world(world, monkeypatch)


def caller_arn(endpoint: str, variables: Mapping[str, Any]) -> str:
    """Who STS at `endpoint` says the credentials in `variables` (AWS_ACCESS_KEY_ID etc.) belong to."""
    import boto3

    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=variables["AWS_SESSION_TOKEN"],
    )
    return str(sts.get_caller_identity()["Arn"])


def ask_daemon(socket_path: Path, *messages: dict, timeout: float = 30) -> list[dict]:
    """Send `messages` (protocol version added) over one raw connection; the replies, in order.

    Raw on purpose: tests of the daemon should not depend on the client's autostart or its env."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        stream = sock.makefile("rwb")
        for message in messages:
            stream.write(json.dumps({"v": 1, **message}).encode() + b"\n")
        stream.flush()
        return [json.loads(stream.readline()) for _ in messages]


def raw_exchange(socket_path: Path, payload: bytes, replies: int = 1, timeout: float = 10) -> list[dict]:
    """Send raw bytes, read `replies` reply lines (fewer if the daemon closes the connection)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        sock.sendall(payload)
        stream = sock.makefile("rb")
        answers = []
        for _ in range(replies):
            line = stream.readline()
            if not line:
                break
            answers.append(json.loads(line))
        return answers
