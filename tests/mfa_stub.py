"""A small STS stand-in in front of the local STS (moto) for what moto does not do about MFA, and the MFA
part of the test world (a role that requires MFA, alice allowed to assume it).

Gaps of moto 5.2.x it closes (checked by test_mfa.py):
- moto's GetSessionToken ignores SerialNumber and TokenCode and returns fixed credentials that nothing
  accepts afterwards;
- moto refuses a user's access key that arrives with an X-Amz-Security-Token header;
- moto does not evaluate a trust policy's `Bool: aws:MultiFactorAuthPresent` condition (it evaluates only
  StringEquals), so a role that requires MFA can be assumed without it.

What the stub checks, and nothing more:
1. GetSessionToken is first forwarded to moto unchanged, so moto still checks the signature of the
   long-term key and (IAM enforcement on) that the user may call it. If moto agrees, the stub then checks:
   DurationSeconds within 900..129600 (else ValidationError); a SerialNumber, if sent, is the user's one
   registered device and TokenCode is that device's current or previous TOTP code (RFC 6238: HMAC-SHA1,
   30 s steps, 6 digits, from a secret the test knows), else AccessDenied with the message AWS gives; a
   TokenCode without SerialNumber is refused. GetSessionToken called with session credentials is refused
   (as AWS does). On success it answers with "temporary" credentials that are in fact a second real access
   key of the same user in moto (so they are not the long-term key the daemon was given) plus a session
   token the stub made up, with the expiry asked for.
2. A request signed with such a session (its X-Amz-Security-Token is one the stub issued): the stub
   verifies the SigV4 signature with that key's secret and the token, refuses it after the session's
   expiry (real time), then removes the token header and signs the request again with the key alone, and
   forwards it to moto, which checks everything else as usual (policies, trust, external ID).
3. AssumeRole of a role whose trust policy allows sts:AssumeRole only with `aws:MultiFactorAuthPresent`
   true (read from moto's in-process IAM backend) is refused with AccessDenied unless the caller's
   credentials are a session the stub issued with a valid MFA code.
Everything else is forwarded unchanged (Host included, so signatures still match). The stub counts every
request by action, and the codes it accepted and refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from stub_http import STS_XMLNS, QuietHandler, serve, sts_error_xml

from stsd.demo.local_aws import ACCOUNT_ID, REGION, ROLE_POLICY, USER_NAME, AliceKeys, LocalAws, trust_policy

MFA_ROLE_NAME = "alice-mfa"
MFA_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{MFA_ROLE_NAME}"
MFA_SERIAL = f"arn:aws:iam::{ACCOUNT_ID}:mfa/{USER_NAME}"
TOTP_SECRET = b"stsd-test-totp-secret"  # the "device" shared by the stub and the tests
TOTP_STEP_S = 30

_SESSION_XML = (
    f'<GetSessionTokenResponse xmlns="{STS_XMLNS}"><GetSessionTokenResult><Credentials>'
    "<AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
    "<SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration>"
    "</Credentials></GetSessionTokenResult><ResponseMetadata><RequestId>{request_id}</RequestId>"
    "</ResponseMetadata></GetSessionTokenResponse>"
)
WRONG_CODE_MESSAGE = "MultiFactorAuthentication failed with invalid MFA one time pass code."
UNVALIDATED_MESSAGE = "MultiFactorAuthentication failed, unable to validate MFA code."


def totp(at: float | None = None, secret: bytes = TOTP_SECRET) -> str:
    """The device's code at `at` (RFC 6238 TOTP: HMAC-SHA1 over the 30 s step, dynamic truncation)."""
    step = int((time.time() if at is None else at) // TOTP_STEP_S)
    digest = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 1_000_000:06d}"


def wrong_code() -> str:
    """A 6-digit code the device shows at none of the steps the stub accepts now."""
    now = time.time()
    accepted = {totp(now + delta) for delta in (-2 * TOTP_STEP_S, -TOTP_STEP_S, 0, TOTP_STEP_S)}
    candidate = 123456
    while f"{candidate:06d}" in accepted:
        candidate += 1
    return f"{candidate:06d}"


TOTP_SCRIPT = f"""\
import hashlib, hmac, struct, sys, time
step = int(time.time() // {TOTP_STEP_S})
digest = hmac.new({TOTP_SECRET!r}, struct.pack(">Q", step), hashlib.sha1).digest()
offset = digest[-1] & 0x0F
print(f"{{(struct.unpack('>I', digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000:06d}}")
"""


# -- the MFA part of the world -------------------------------------------------------------------------

_MFA_TRUST = trust_policy({"Bool": {"aws:MultiFactorAuthPresent": "true"}})
# AWS lets every IAM user call GetSessionToken; moto under enforcement wants it in a policy.
_MFA_USER_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": MFA_ROLE_ARN},
        {"Effect": "Allow", "Action": "sts:GetSessionToken", "Resource": "*"},
    ],
}
_world_lock = threading.Lock()
_world_ready: set[int] = set()


def create_mfa_role(aws: LocalAws) -> None:
    """Add the role that requires MFA and alice's right to assume it and to call GetSessionToken (once)."""
    with _world_lock:
        if id(aws) in _world_ready:
            return
        with aws.unenforced():
            iam = aws.client("iam")
            iam.create_role(
                RoleName=MFA_ROLE_NAME,
                AssumeRolePolicyDocument=json.dumps(_MFA_TRUST),
                MaxSessionDuration=3600,
            )
            iam.put_role_policy(
                RoleName=MFA_ROLE_NAME, PolicyName="s3-access", PolicyDocument=json.dumps(ROLE_POLICY)
            )
            iam.put_user_policy(
                UserName=USER_NAME, PolicyName="mfa-session", PolicyDocument=json.dumps(_MFA_USER_POLICY)
            )
        _world_ready.add(id(aws))


@contextmanager
def second_access_key(aws: LocalAws) -> Iterator[AliceKeys]:
    """A second real access key of alice (moto allows two a user), deleted afterwards unless a test did."""
    with aws.unenforced():
        issued = aws.client("iam").create_access_key(UserName=USER_NAME)["AccessKey"]
    try:
        yield AliceKeys(issued["AccessKeyId"], issued["SecretAccessKey"])
    finally:
        with aws.unenforced():
            iam = aws.client("iam")
            held = iam.list_access_keys(UserName=USER_NAME)["AccessKeyMetadata"]
            if issued["AccessKeyId"] in [key["AccessKeyId"] for key in held]:
                iam.delete_access_key(UserName=USER_NAME, AccessKeyId=issued["AccessKeyId"])


def role_requires_mfa(role_arn: str) -> bool:
    """Whether the role's trust policy allows sts:AssumeRole only with aws:MultiFactorAuthPresent true.
    Read from moto's IAM backend, which runs in this process (ThreadedMotoServer)."""
    from moto.iam.models import iam_backends

    try:
        role = iam_backends[ACCOUNT_ID]["aws"].get_role_by_arn(role_arn)
    except Exception:
        return False
    document = json.loads(urllib.parse.unquote(role.assume_role_policy_document))
    statements = document.get("Statement", [])
    statements = statements if isinstance(statements, list) else [statements]
    allowing = [
        s
        for s in statements
        if s.get("Effect") == "Allow" and "sts:AssumeRole" in _as_list(s.get("Action", []))
    ]
    if not allowing:
        return False
    for statement in allowing:
        condition = statement.get("Condition", {})
        wanted = [condition.get(op, {}).get("aws:MultiFactorAuthPresent") for op in ("Bool", "BoolIfExists")]
        if not any(str(v).lower() in ("true", "['true']") for v in wanted if v is not None):
            return False
    return True


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


# -- the stub ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret_access_key: str


@dataclass(frozen=True)
class IssuedSession:
    token: str
    key: Key
    user_key_id: str  # the long-term key that asked for it
    mfa: bool
    expires: float  # epoch seconds, real time


class StsMfaStub:
    """A threaded HTTP server on 127.0.0.1 in front of `upstream` (the moto server)."""

    def __init__(
        self, upstream: str, *, users: dict[str, Key], devices: dict[str, str], temporary: Key
    ) -> None:
        """users: long-term key id -> key; devices: key id of a user -> that user's MFA serial;
        temporary: the real key of the same user handed out as the session's key."""
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream_host = parsed.hostname or "127.0.0.1"
        self.upstream_port = parsed.port or 80
        self.users = users
        self.devices = devices
        self.temporary = temporary
        self.requests: Counter[str] = Counter()  # every request by action
        self.codes_accepted = 0
        self.codes_refused = 0
        self.mfa_denials = 0  # AssumeRole refused for want of MFA
        self.sessions: dict[str, IssuedSession] = {}
        self._lock = threading.Lock()
        self._server = serve(self, _Handler)

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    def issue(self, user_key_id: str, *, expires: float, mfa: bool = False) -> IssuedSession:
        """A session of the user's key that this stub honours until `expires` (epoch seconds): what
        GetSessionToken hands out, and what other stubs (tests/sso_stub.py) hand out as temporary keys."""
        issued = IssuedSession(
            token="stubsession" + secrets.token_urlsafe(48),
            key=self.temporary,
            user_key_id=user_key_id,
            mfa=mfa,
            expires=expires,
        )
        with self._lock:
            self.sessions[issued.token] = issued
        return issued

    def count(self, action: str) -> int:
        with self._lock:
            return self.requests[action]

    def __enter__(self) -> StsMfaStub:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


class _Handler(QuietHandler):
    owner: StsMfaStub

    def do_GET(self) -> None:
        self._forward(b"", dict(self.headers.items()))

    def do_POST(self) -> None:
        body = self.body()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("latin-1")).items()}
        action = form.get("Action", "other")
        with self.owner._lock:
            self.owner.requests[action] += 1
        headers = dict(self.headers.items())
        token = _header(headers, "X-Amz-Security-Token")
        session = self.owner.sessions.get(token) if token else None
        if session is not None:
            self._as_session(session, action, form, body, headers)
        elif action == "AssumeRole" and role_requires_mfa(form.get("RoleArn", "")):
            self._deny_without_mfa(headers, form)
        elif action == "GetSessionToken":
            self._get_session_token(form, body, headers)
        else:
            self._forward(body, headers)

    # -- GetSessionToken ------------------------------------------------------------------------------

    def _get_session_token(self, form: dict[str, str], body: bytes, headers: dict[str, str]) -> None:
        status, data, content_type = self._upstream(body, headers)
        if status != 200:  # moto refused the key or the call: its answer stands
            self.reply(status, data, content_type)
            return
        key_id = _credential_scope(headers)[0]
        user = self.owner.users.get(key_id)
        if user is None:
            self._error(403, "InvalidClientTokenId", "The security token included in the request is invalid.")
            return
        duration = int(form.get("DurationSeconds") or 43200)
        if not 900 <= duration <= 129600:
            self._error(
                400,
                "ValidationError",
                f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy "
                "constraint: Member must have value between 900 and 129600",
            )
            return
        serial, code = form.get("SerialNumber"), form.get("TokenCode")
        mfa = serial is not None or code is not None
        if mfa:
            if serial != self.owner.devices.get(key_id) or code is None:
                self._refuse_code(UNVALIDATED_MESSAGE)
                return
            now = time.time()
            if code not in (totp(now), totp(now - TOTP_STEP_S)):
                self._refuse_code(WRONG_CODE_MESSAGE)
                return
            with self.owner._lock:
                self.owner.codes_accepted += 1
        issued = self.owner.issue(key_id, expires=time.time() + duration, mfa=mfa)
        expiration = datetime.fromtimestamp(issued.expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = _SESSION_XML.format(
            key=issued.key.access_key_id,
            secret=issued.key.secret_access_key,
            token=issued.token,
            expiration=expiration,
            request_id=secrets.token_hex(8),
        )
        self.reply(200, xml.encode(), "text/xml")

    def _refuse_code(self, message: str) -> None:
        with self.owner._lock:
            self.owner.codes_refused += 1
        self._error(403, "AccessDenied", message)

    # -- requests signed with an issued session ------------------------------------------------------

    def _as_session(
        self, session: IssuedSession, action: str, form: dict[str, str], body: bytes, headers: dict[str, str]
    ) -> None:
        key_id, _, region, service = _credential_scope(headers)[:4]
        if key_id != session.key.access_key_id or not _signature_valid(self, headers, body, session):
            self._error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
            return
        if time.time() >= session.expires:
            self._error(403, "ExpiredToken", "The security token included in the request is expired")
            return
        if action == "GetSessionToken":
            self._error(403, "AccessDenied", "Cannot call GetSessionToken with session credentials")
            return
        if action == "AssumeRole" and role_requires_mfa(form.get("RoleArn", "")) and not session.mfa:
            self._deny_without_mfa(headers, form)
            return
        request = AWSRequest(
            method=self.command,
            url=f"http://{self.owner.upstream_host}:{self.owner.upstream_port}{self.path}",
            data=body,
            headers={"Content-Type": _header(headers, "Content-Type") or "application/x-www-form-urlencoded"},
        )
        SigV4Auth(
            Credentials(session.key.access_key_id, session.key.secret_access_key), service, region
        ).add_auth(request)
        resigned = dict(request.headers.items())
        resigned["Host"] = f"{self.owner.upstream_host}:{self.owner.upstream_port}"
        self._forward(body, resigned)

    def _deny_without_mfa(self, headers: dict[str, str], form: dict[str, str]) -> None:
        with self.owner._lock:
            self.owner.mfa_denials += 1
        key_id = _credential_scope(headers)[0] if _header(headers, "Authorization") else "?"
        self._error(
            403,
            "AccessDenied",
            f"User with key {key_id} is not authorized to perform: sts:AssumeRole on resource: "
            f"{form.get('RoleArn')} (the trust policy requires MFA)",
        )

    # -- plumbing ------------------------------------------------------------------------------------

    def _upstream(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        return self.relay(self.owner.upstream_host, self.owner.upstream_port, body, headers)

    def _forward(self, body: bytes, headers: dict[str, str]) -> None:
        self.reply(*self._upstream(body, headers))

    def _error(self, status: int, code: str, message: str) -> None:
        self.reply(status, sts_error_xml(code, message, secrets.token_hex(8)), "text/xml")


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _credential_scope(headers: dict[str, str]) -> list[str]:
    """key id, date, region, service, aws4_request from the Authorization header."""
    authorization = _header(headers, "Authorization") or ""
    return [*authorization.partition("Credential=")[2].partition(",")[0].split("/"), "", "", "", ""]


def _signature_valid(handler: _Handler, headers: dict[str, str], body: bytes, session: IssuedSession) -> bool:
    """Recompute the SigV4 signature the way the client made it (the way moto checks its own keys)."""
    authorization = _header(headers, "Authorization") or ""
    signed = authorization.partition("SignedHeaders=")[2].partition(",")[0].split(";")
    sent = authorization.partition("Signature=")[2].partition(",")[0]
    _, _, region, service = _credential_scope(headers)[:4]
    request = AWSRequest(
        method=handler.command,
        url=handler.path,
        data=body,
        headers={k: v for k, v in headers.items() if k.lower() in signed},
    )
    request.context["timestamp"] = _header(headers, "X-Amz-Date") or ""
    auth = SigV4Auth(
        Credentials(session.key.access_key_id, session.key.secret_access_key, session.token), service, region
    )
    expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    return hmac.compare_digest(expected, sent)


# -- fixtures ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MfaWorld:
    stub: StsMfaStub
    alice: Key  # the long-term key in ~/.aws/credentials


@pytest.fixture
def mfa_sts(local_aws: LocalAws) -> Iterator[StsMfaStub]:
    """The stub in front of the session's local STS, with alice's device, for one test."""
    assert local_aws.alice is not None
    create_mfa_role(local_aws)
    alice = Key(local_aws.alice.access_key_id, local_aws.alice.secret_access_key)
    # The second key is handed out as the sessions' "temporary" key.
    with second_access_key(local_aws) as issued:
        temporary = Key(issued.access_key_id, issued.secret_access_key)
        with StsMfaStub(
            local_aws.endpoint,
            users={alice.access_key_id: alice},
            devices={alice.access_key_id: MFA_SERIAL},
            temporary=temporary,
        ) as stub:
            yield stub


MFA_PROFILES = f"""
[profile alice-mfa]
role_arn = {MFA_ROLE_ARN}
source_profile = alice
mfa_serial = {MFA_SERIAL}
role_session_name = mfa-access
region = {REGION}

[profile alice-otp]
mfa_serial = {MFA_SERIAL}
region = {REGION}

[profile alice-otp-role]
role_arn = {MFA_ROLE_ARN}
source_profile = alice-otp
role_session_name = otp-access
region = {REGION}
"""


@pytest.fixture
def mfa_world(world, mfa_sts: StsMfaStub, local_aws: LocalAws):  # type: ignore[no-untyped-def]
    """The world with MFA profiles (the role profile `alice-mfa` naming alice's device; `alice-otp`, the
    same keys with the device on the source profile) and STS reached through the stub."""
    assert local_aws.alice is not None
    aws = Path(world.home) / ".aws"
    (aws / "config").write_text((aws / "config").read_text() + MFA_PROFILES)
    (aws / "credentials").write_text(
        (aws / "credentials").read_text()
        + f"\n[alice-otp]\naws_access_key_id = {local_aws.alice.access_key_id}\n"
        f"aws_secret_access_key = {local_aws.alice.secret_access_key}\n"
    )
    world.env["AWS_ENDPOINT_URL_STS"] = mfa_sts.endpoint
    return world


def session_lifetime(expiration: str) -> timedelta:
    return datetime.strptime(expiration, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) - datetime.now(
        timezone.utc
    )
