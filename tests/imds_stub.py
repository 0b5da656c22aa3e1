"""A local IMDSv2 stand-in (real HTTP on 127.0.0.1; also a container credentials endpoint) serving
instance-role credentials, and the test-only extension of the scenario that makes those credentials
real: an instance role in the local STS.

moto's own instance-metadata routes serve fixed `test-key` credentials that IAM enforcement rejects,
and never check the IMDSv2 token (moto's known gaps), so they cannot stand for an EC2 instance here.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pytest
from stub_http import LocalServer, QuietHandler, serve

from stsd.demo.local_aws import ACCOUNT_ID, LocalAws

INSTANCE_ROLE_NAME = "ec2-instance-role"
INSTANCE_ID = "i-0123456789abcdef0"
# The role an instance assumes from its instance-role credentials (role chaining).
APP_ROLE_NAME = "ec2-app"
APP_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{APP_ROLE_NAME}"
INSTANCE_SESSION_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{INSTANCE_ROLE_NAME}/{INSTANCE_ID}"

_TOKEN_PATH = "/latest/api/token"
CONTAINER_PATH = "/v2/credentials/task"  # the same stub also plays a container credentials endpoint
_CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"


@dataclass(frozen=True)
class InstanceCredentials:
    access_key_id: str
    secret_access_key: str
    token: str
    expiration: datetime


def create_instance_role(aws: LocalAws) -> InstanceCredentials:
    """Add an instance role and a role it may assume to the local world; return instance-role credentials.

    On EC2 these credentials come from the instance profile; here we assume the instance role once with
    enforcement off (as the EC2 service would) so the local STS knows and accepts them afterwards.
    Safe to call again: roles are created once.
    """
    instance_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    instance_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": APP_ROLE_ARN},
            {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
        ],
    }
    # moto matches trust principals literally, so the instance's session ARN is listed (real AWS would
    # match the role ARN for any of its sessions).
    app_trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": [f"arn:aws:iam::{ACCOUNT_ID}:role/{INSTANCE_ROLE_NAME}", INSTANCE_SESSION_ARN]
                },
                "Action": "sts:AssumeRole",
            }
        ],
    }
    app_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "sts:GetCallerIdentity"], "Resource": "*"}
        ],
    }
    with aws.unenforced():
        iam = aws.client("iam")
        existing = {role["RoleName"] for role in iam.list_roles()["Roles"]}
        if INSTANCE_ROLE_NAME not in existing:
            iam.create_role(RoleName=INSTANCE_ROLE_NAME, AssumeRolePolicyDocument=json.dumps(instance_trust))
            iam.put_role_policy(
                RoleName=INSTANCE_ROLE_NAME, PolicyName="chain", PolicyDocument=json.dumps(instance_policy)
            )
        if APP_ROLE_NAME not in existing:
            iam.create_role(
                RoleName=APP_ROLE_NAME,
                AssumeRolePolicyDocument=json.dumps(app_trust),
                MaxSessionDuration=43200,
            )
            iam.put_role_policy(
                RoleName=APP_ROLE_NAME, PolicyName="app", PolicyDocument=json.dumps(app_policy)
            )
        reply = aws.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{INSTANCE_ROLE_NAME}", RoleSessionName=INSTANCE_ID
        )
    issued = reply["Credentials"]
    return InstanceCredentials(
        issued["AccessKeyId"], issued["SecretAccessKey"], issued["SessionToken"], issued["Expiration"]
    )


@dataclass
class ImdsStub:
    """IMDSv2 on 127.0.0.1: `PUT /latest/api/token` hands out a token; every GET without it gets 401."""

    credentials: InstanceCredentials
    role_name: str = INSTANCE_ROLE_NAME
    token_requests: int = 0
    unauthorized: int = 0
    credential_reads: int = 0
    container_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _tokens: set[str] = field(default_factory=set)
    _server: LocalServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() first"
        return self._server.endpoint + "/"

    def start(self) -> ImdsStub:
        self._server = serve(self, _Handler).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def document(self) -> dict[str, str]:
        return {
            "Code": "Success",
            "LastUpdated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.credentials.access_key_id,
            "SecretAccessKey": self.credentials.secret_access_key,
            "Token": self.credentials.token,
            "Expiration": self.credentials.expiration.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


class _Handler(QuietHandler):
    owner: ImdsStub

    def do_PUT(self) -> None:
        ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
        if self.path != _TOKEN_PATH or not ttl:
            self._reply(400, "text/plain", "missing token TTL")
            return
        token = secrets.token_urlsafe(32)
        self.owner._tokens.add(token)
        self.owner.token_requests += 1
        self._reply(200, "text/plain", token)

    def do_GET(self) -> None:
        stub = self.owner
        if self.path == CONTAINER_PATH:
            self._container_credentials()
        elif self.headers.get("X-aws-ec2-metadata-token") not in stub._tokens:
            stub.unauthorized += 1
            self._reply(401, "text/plain", "Unauthorized")
        elif self.path == _CREDENTIALS_PATH:
            self._reply(200, "text/plain", stub.role_name)
        elif self.path == _CREDENTIALS_PATH + stub.role_name:
            stub.credential_reads += 1
            self._reply(200, "application/json", json.dumps(stub.document()))
        else:
            self._reply(404, "text/plain", "Not Found")

    def _container_credentials(self) -> None:
        # The ECS/container endpoint: the token goes verbatim in Authorization.
        stub = self.owner
        if self.headers.get("Authorization") != stub.container_token:
            stub.unauthorized += 1
            self._reply(401, "text/plain", "Unauthorized")
            return
        stub.credential_reads += 1
        self._reply(200, "application/json", json.dumps(stub.document()))

    def _reply(self, status: int, content_type: str, body: str) -> None:
        self.reply(status, body.encode(), content_type)


@contextmanager
def running_imds(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImdsStub]:
    """An EC2 instance as botocore sees it: this stub at AWS_EC2_METADATA_SERVICE_ENDPOINT."""
    stub = ImdsStub(create_instance_role(aws)).start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", stub.endpoint)
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    try:
        yield stub
    finally:
        stub.stop()
