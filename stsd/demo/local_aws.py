"""A local STS/IAM/S3 (moto's server) set up as the scenario stsd exists for (README: Quickstart).

Used by `stsd demo` and by the test suite, so both play exactly the same world: user `alice` with no
rights but `sts:AssumeRole` on `alice-sts`, a role that requires the external ID `alice` and may list S3.
Needs the optional extra `stsd[demo]` (moto with its server).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
USER_NAME = "alice"
ROLE_NAME = "alice-sts"
EXTERNAL_ID = "alice"
BUCKET = "alice-data"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}"
USER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:user/{USER_NAME}"


def trust_policy(condition: dict[str, object]) -> dict[str, object]:
    """A trust policy letting alice (and her account) assume the role under `condition`."""
    # moto does not match `arn:aws:iam::ACCT:root` as a principal (a known moto gap), so the user ARN is
    # listed too.
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": [f"arn:aws:iam::{ACCOUNT_ID}:root", USER_ARN]},
                "Action": "sts:AssumeRole",
                "Condition": condition,
            }
        ],
    }


_TRUST_POLICY = trust_policy({"StringEquals": {"sts:ExternalId": EXTERNAL_ID}})
ROLE_POLICY = {  # what the role's sessions may do
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:*", "sts:GetCallerIdentity"], "Resource": "*"}],
}
_USER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE_ARN},
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
    ],
}


@dataclass(frozen=True)
class AliceKeys:
    access_key_id: str
    secret_access_key: str


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalAws:
    """A moto server on 127.0.0.1 holding the scenario; IAM enforcement is on once `start` returns.

    In this process by default (the tests); `own_process=True` runs it as a child process, so that a
    benchmark's STS does not share the measuring interpreter's GIL."""

    def __init__(self, port: int | None = None, *, own_process: bool = False) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.own_process = own_process
        self._server: object | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.alice: AliceKeys | None = None

    def start(self) -> LocalAws:
        if self.own_process:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait_listening()
        else:
            from moto.server import ThreadedMotoServer

            server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            server.start()
            self._server = server
        self.alice = self._set_up_scenario()
        self.set_enforcement(True)
        return self

    def _wait_listening(self, timeout: float = 30) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited {self._process.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("moto server did not listen in time")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def unenforced(self) -> Iterator[None]:
        """IAM enforcement off for the block: the world's administrator at work, unchecked."""
        self.set_enforcement(False)
        try:
            yield
        finally:
            self.set_enforcement(True)

    def set_enforcement(self, on: bool) -> None:
        """IAM enforcement: every request must be signed by a known identity allowed to make it."""
        body = b"0" if on else b"inf"
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=body,
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()

    def client(
        self, service: str, access_key_id: str = "setup", secret: str = "setup", token: str | None = None
    ):  # type: ignore[no-untyped-def]
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )

    def _set_up_scenario(self) -> AliceKeys:
        self.set_enforcement(False)
        iam = self.client("iam")
        iam.create_user(UserName=USER_NAME)
        iam.put_user_policy(
            UserName=USER_NAME, PolicyName="assume-alice-sts", PolicyDocument=json.dumps(_USER_POLICY)
        )
        iam.create_role(
            RoleName=ROLE_NAME, AssumeRolePolicyDocument=json.dumps(_TRUST_POLICY), MaxSessionDuration=3600
        )
        iam.put_role_policy(
            RoleName=ROLE_NAME, PolicyName="s3-access", PolicyDocument=json.dumps(ROLE_POLICY)
        )
        self.client("s3").create_bucket(Bucket=BUCKET)
        key = iam.create_access_key(UserName=USER_NAME)["AccessKey"]
        return AliceKeys(key["AccessKeyId"], key["SecretAccessKey"])

    def write_aws_files(self, home: Path) -> Path:
        """Write ~/.aws/credentials with alice's keys and ~/.aws/config with the role profile."""
        assert self.alice is not None, "start() first"
        aws = home / ".aws"
        aws.mkdir(parents=True, exist_ok=True)
        (aws / "credentials").write_text(
            f"[{USER_NAME}]\n"
            f"aws_access_key_id = {self.alice.access_key_id}\n"
            f"aws_secret_access_key = {self.alice.secret_access_key}\n"
        )
        (aws / "config").write_text(f"[profile {USER_NAME}]\nregion = {REGION}\n\n" + role_profile(ROLE_NAME))
        return aws


def role_profile(name: str, *, session_name: str = "s3-access", source: str = USER_NAME) -> str:
    """The ~/.aws/config section of a profile that assumes alice-sts with the external ID, from `source`
    (alice's keys unless said)."""
    return (
        f"[profile {name}]\nrole_arn = {ROLE_ARN}\nsource_profile = {source}\nexternal_id = {EXTERNAL_ID}\n"
        f"role_session_name = {session_name}\nregion = {REGION}\n"
    )
