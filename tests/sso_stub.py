"""A small IAM Identity Center (SSO) portal stand-in, and the SSO part of the test world.

moto has no SSO portal (SCENARIO.md). botocore's SSO provider calls one operation of it, GetRoleCredentials
(`GET /federation/credentials?role_name=R&account_id=A`, the access token in the `x-amz-sso_bearer_token`
header), reached here by pointing botocore at this stub with AWS_ENDPOINT_URL_SSO.

What the stub checks, and nothing more:
1. The path is /federation/credentials with both `role_name` and `account_id`, else 400.
2. The bearer token is one this stub granted (`grant`, which the tests then write into the token cache
   the way `aws sso login` does) and it has not expired on the stub's clock (`now`, real time unless a test
   hands it the daemon's fake clock) and was not revoked; else 401 UnauthorizedException, as the portal
   answers, which botocore turns into UnauthorizedSSOTokenError.
3. The (account, role) pair is one the token's user is assigned to, else 403 ForbiddenException.
On success it answers roleCredentials that expire `lifetime` seconds later on its clock. Those are issued
through the MFA stub's STS stand-in (tests/mfa_stub.py, `StsMfaStub.issue`): a second real access key of
alice in moto plus a session token the STS stub made up and honours (moto itself refuses a user's key that
arrives with a session token), so requests signed with them reach moto as alice, and AssumeRole from them
is checked by moto as usual (policies, trust, external ID).

It also plays the portal's OIDC service (sso-oidc, reached with AWS_ENDPOINT_URL_SSO_OIDC), as far as
botocore's token refresh and a device-authorization sign-in use it:
4. RegisterClient (POST /client/register) registers a client; StartDeviceAuthorization (POST
   /device_authorization) needs that client's id and secret and a start URL, and answers a device code and
   a user code that a test approves (`approve`), as a person would in the browser.
5. CreateToken (POST /token) needs a registered client id with its secret, and either grantType
   refresh_token with a refresh token issued to that client (each is used once: a new one comes with the new
   access token), or the device-code grant with an approved device code of that client (before approval:
   AuthorizationPendingException); else InvalidGrantException or InvalidClientException. The access token
   it answers is granted as in 2, with `token_lifetime`.
The stub counts GetRoleCredentials calls by outcome (`calls`) and sso-oidc calls by operation and outcome
(`oidc`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mfa_stub import StsMfaStub
from stub_http import QuietHandler, serve

from stsd.demo.local_aws import ACCOUNT_ID, REGION, LocalAws, role_profile

SSO_SESSION = "corp"
START_URL = "https://corp.example.com/start"
LEGACY_START_URL = "https://legacy.example.com/start"
SSO_ROLE = "Developer"
TOKEN_LIFETIME_S = 8 * 3600
CREDENTIALS_LIFETIME_S = 3600


class SsoPortalStub:
    """A threaded HTTP server on 127.0.0.1 answering GetRoleCredentials."""

    def __init__(
        self,
        sts: StsMfaStub,
        *,
        user_key_id: str,
        assignments: set[tuple[str, str]],
        lifetime: float = CREDENTIALS_LIFETIME_S,
    ) -> None:
        self.sts = sts
        self.user_key_id = user_key_id
        self.assignments = assignments
        self.lifetime = lifetime
        self.now: Callable[[], float] = time.time  # the stub's clock, epoch seconds
        self.tokens: dict[str, float] = {}  # access token -> expiry on the stub's clock
        self.token_lifetime: float = TOKEN_LIFETIME_S  # of tokens CreateToken answers
        self.clients: dict[str, str] = {}  # OIDC client id -> secret
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> client id (unused yet)
        self.devices: dict[str, dict[str, object]] = {}  # device code -> client, user code, approved
        self.oidc: Counter[str] = Counter()  # sso-oidc calls by operation and outcome
        self.calls: Counter[str] = Counter()  # GetRoleCredentials by outcome: ok, unauthorized, ...
        self._lock = threading.Lock()
        self._server = serve(self, _Handler)

    @property
    def endpoint(self) -> str:
        return self._server.endpoint

    @property
    def fetches(self) -> int:
        with self._lock:
            return sum(self.calls.values())

    def grant(self, lifetime: float = TOKEN_LIFETIME_S) -> tuple[str, float]:
        """A new access token, as a sign-in gives; its expiry (epoch seconds on the stub's clock)."""
        token = "ssotoken" + secrets.token_urlsafe(32)
        expires = self.now() + lifetime
        with self._lock:
            self.tokens[token] = expires
        return token, expires

    def register(self) -> tuple[str, str]:
        """An OIDC client as RegisterClient makes one: (client id, secret)."""
        client, secret = "client" + secrets.token_hex(8), "secret" + secrets.token_urlsafe(24)
        with self._lock:
            self.clients[client] = secret
        return client, secret

    def refresh_token_for(self, client: str) -> str:
        token = "refresh" + secrets.token_urlsafe(24)
        with self._lock:
            self.refresh_tokens[token] = client
        return token

    def approve(self, user_code: str) -> None:
        """The person confirms the user code in the browser."""
        with self._lock:
            for device in self.devices.values():
                if device["user_code"] == user_code:
                    device["approved"] = True

    def approve_once_polled(self, user_code: str, timeout: float = 20) -> None:
        """The person confirms only after the client has started polling (it polls while they have not)."""
        deadline = time.monotonic() + timeout
        while self.oidc["CreateToken:pending"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.approve(user_code)

    def revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def __enter__(self) -> SsoPortalStub:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


class _Handler(QuietHandler):
    owner: SsoPortalStub

    def do_GET(self) -> None:
        stub = self.owner
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        role, account = query.get("role_name"), query.get("account_id")
        if url.path != "/federation/credentials" or not role or not account:
            self._answer("bad_request", 400, "InvalidRequestException", "expected GetRoleCredentials")
            return
        token = self.headers.get("x-amz-sso_bearer_token", "")
        with stub._lock:
            expires = stub.tokens.get(token)
        if expires is None or stub.now() >= expires:
            self._answer("unauthorized", 401, "UnauthorizedException", "Session token not found or invalid")
            return
        if (account, role) not in stub.assignments:
            self._answer("forbidden", 403, "ForbiddenException", "No access")
            return
        until = stub.now() + stub.lifetime
        issued = stub.sts.issue(stub.user_key_id, expires=max(until, time.time() + stub.lifetime))
        credentials = {
            "accessKeyId": issued.key.access_key_id,
            "secretAccessKey": issued.key.secret_access_key,
            "sessionToken": issued.token,
            "expiration": int(until * 1000),
        }
        self._send("ok", 200, {"roleCredentials": credentials}, {})

    def do_POST(self) -> None:
        stub = self.owner
        try:
            body = json.loads(self.body() or b"{}")
        except ValueError:
            body = {}
        operation = {
            "/client/register": "RegisterClient",
            "/device_authorization": "StartDeviceAuthorization",
            "/token": "CreateToken",
        }.get(urllib.parse.urlsplit(self.path).path)
        if operation is None:
            self._answer("bad_request", 400, "InvalidRequestException", "unknown operation")
            return
        if operation == "RegisterClient":
            client, secret = stub.register()
            issued = {
                "clientIdIssuedAt": int(stub.now()),
                "clientSecretExpiresAt": int(stub.now() + 90 * 86400),
            }
            self._oidc(operation, "ok", 200, {"clientId": client, "clientSecret": secret, **issued})
            return
        client = str(body.get("clientId", ""))
        with stub._lock:
            known = stub.clients.get(client)
        if known is None or known != body.get("clientSecret"):
            self._oidc(
                operation, "invalid_client", 401, {"error": "invalid_client"}, "InvalidClientException"
            )
            return
        if operation == "StartDeviceAuthorization":
            if not body.get("startUrl"):
                self._oidc(
                    operation, "bad_request", 400, {"error": "invalid_request"}, "InvalidRequestException"
                )
                return
            device, user = "device" + secrets.token_urlsafe(16), f"{secrets.randbelow(10**8):08d}"
            with stub._lock:
                stub.devices[device] = {"client": client, "user_code": user, "approved": False}
            where = "https://device.example.com/"
            answer = {"deviceCode": device, "userCode": user, "verificationUri": where}
            answer.update(verificationUriComplete=f"{where}?user_code={user}", expiresIn=600, interval=1)
            self._oidc(operation, "ok", 200, answer)
            return
        grant = body.get("grantType")
        with stub._lock:
            if grant == "refresh_token":
                granted = stub.refresh_tokens.pop(str(body.get("refreshToken")), None) == client
                pending = False
            else:
                device_code = str(body.get("deviceCode"))
                device = stub.devices.get(device_code)
                granted = (
                    grant == "urn:ietf:params:oauth:grant-type:device_code"
                    and device is not None
                    and device["client"] == client
                    and bool(device["approved"])
                )
                pending = device is not None and not device["approved"]
                if granted:
                    stub.devices.pop(device_code)
        if pending:
            self._oidc(
                operation, "pending", 400, {"error": "authorization_pending"}, "AuthorizationPendingException"
            )
            return
        if not granted:
            self._oidc(operation, "invalid_grant", 400, {"error": "invalid_grant"}, "InvalidGrantException")
            return
        token, _ = stub.grant(stub.token_lifetime)
        answer = {"accessToken": token, "tokenType": "Bearer", "expiresIn": int(stub.token_lifetime)}
        answer["refreshToken"] = stub.refresh_token_for(client)
        self._oidc(f"{operation}:{grant}", "ok", 200, answer)

    def _oidc(
        self, operation: str, outcome: str, status: int, body: dict[str, object], code: str = ""
    ) -> None:
        with self.owner._lock:
            self.owner.oidc[f"{operation}:{outcome}"] += 1
        self._reply(status, body, {"x-amzn-ErrorType": code} if code else {})

    def _answer(self, outcome: str, status: int, code: str, message: str) -> None:
        self._send(outcome, status, {"__type": code, "message": message}, {"x-amzn-ErrorType": code})

    def _send(self, outcome: str, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        with self.owner._lock:
            self.owner.calls[outcome] += 1
        self._reply(status, body, headers)

    def _reply(self, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        self.reply(status, json.dumps(body).encode(), "application/json", headers)


# -- the SSO part of the world -------------------------------------------------------------------------

SSO_PROFILES = f"""
[sso-session {SSO_SESSION}]
sso_start_url = {START_URL}
sso_region = {REGION}
sso_registration_scopes = sso:account:access

[profile dev]
sso_session = {SSO_SESSION}
sso_account_id = {ACCOUNT_ID}
sso_role_name = {SSO_ROLE}
region = {REGION}

[profile dev-legacy]
sso_start_url = {LEGACY_START_URL}
sso_region = {REGION}
sso_account_id = {ACCOUNT_ID}
sso_role_name = {SSO_ROLE}
region = {REGION}

{role_profile("dev-sts", session_name="sso-access", source="dev")}
[profile proc]
credential_process = {{process}}
region = {REGION}

{role_profile("proc-sts", session_name="proc-access", source="proc")}"""

# A credential_process: prints a session the STS stub honours, expiring an hour (or the seconds in the file
# `lifetime` beside it) after "now" (the time in the file `clock` beside it when there is one: tests with a
# fake clock keep it there), and counts its runs.
PROCESS_SCRIPT = """\
import json, pathlib, sys, time
here = pathlib.Path(__file__).parent
clock = here / "clock"
now = float(clock.read_text()) if clock.exists() else time.time()
lifetime = float((here / "lifetime").read_text()) if (here / "lifetime").exists() else 3600
with open(here / "runs", "a") as runs:
    runs.write("run\\n")
issued = json.loads((here / "session.json").read_text())
print(json.dumps({
    "Version": 1,
    "AccessKeyId": issued["key"],
    "SecretAccessKey": issued["secret"],
    "SessionToken": issued["token"],
    "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + lifetime)),
}))
"""


def token_file(home: Path, key: str) -> Path:
    """Where botocore looks for the token of an sso-session (or a legacy start URL)."""
    return home / ".aws" / "sso" / "cache" / (hashlib.sha1(key.encode()).hexdigest() + ".json")


def write_token(
    home: Path,
    token: str,
    expires: float,
    *,
    start_url: str = START_URL,
    key: str = SSO_SESSION,
    refresh: dict[str, str] | None = None,
) -> Path:
    """Write the token cache file as `aws sso login` does (replacing it atomically, as the CLI's cache
    does); `refresh`: clientId, clientSecret, registrationExpiresAt, refreshToken."""
    path = token_file(home, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "startUrl": start_url,
        "region": REGION,
        "accessToken": token,
        "expiresAt": datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **(refresh or {}),
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(body))
    temporary.replace(path)
    return path


@dataclass
class SsoWorld:
    portal: SsoPortalStub
    sts: StsMfaStub
    home: Path
    process_dir: Path

    def sign_in(
        self, lifetime: float = TOKEN_LIFETIME_S, *, legacy: bool = False, refreshable: bool = False
    ) -> str:
        """What `aws sso login` does: a new token from the portal, written to the cache (with the client
        registration and a refresh token when `refreshable`, as `aws sso login` with sso-session does)."""
        token, expires = self.portal.grant(lifetime)
        if legacy:
            write_token(self.home, token, expires, start_url=LEGACY_START_URL, key=LEGACY_START_URL)
            return token
        refresh = None
        if refreshable:
            client, secret = self.portal.register()
            registration = datetime.fromtimestamp(self.portal.now() + 90 * 86400, timezone.utc)
            refresh = {
                "clientId": client,
                "clientSecret": secret,
                "registrationExpiresAt": registration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "refreshToken": self.portal.refresh_token_for(client),
            }
        write_token(self.home, token, expires, refresh=refresh)
        return token

    def cached_token(self) -> dict[str, str]:
        return dict(json.loads(token_file(self.home, SSO_SESSION).read_text()))

    @property
    def process_runs(self) -> int:
        runs = self.process_dir / "runs"
        return len(runs.read_text().splitlines()) if runs.exists() else 0

    def set_process_clock(self, epoch: float) -> None:
        (self.process_dir / "clock").write_text(repr(epoch))


@pytest.fixture
def sso_world(world, mfa_sts: StsMfaStub, local_aws: LocalAws) -> Iterator[SsoWorld]:  # type: ignore[no-untyped-def]
    """The world with SSO profiles (`dev` through sso-session `corp`, `dev-legacy` with its own start URL,
    `dev-sts`: alice-sts with the external ID, sourced from `dev`), credential_process profiles (`proc`,
    `proc-sts`), the portal stub (AWS_ENDPOINT_URL_SSO and _SSO_OIDC) and STS reached through the MFA stub. Nobody is
    signed in yet: call `sign_in()`."""
    assert local_aws.alice is not None
    home = Path(world.home)
    process_dir = home / "process"
    process_dir.mkdir()
    (process_dir / "creds.py").write_text(PROCESS_SCRIPT)
    issued = mfa_sts.issue(local_aws.alice.access_key_id, expires=time.time() + 24 * 3600)
    (process_dir / "session.json").write_text(
        json.dumps(
            {"key": issued.key.access_key_id, "secret": issued.key.secret_access_key, "token": issued.token}
        )
    )
    config = home / ".aws" / "config"
    profiles = SSO_PROFILES.replace("{process}", f"{sys.executable} {process_dir / 'creds.py'}")
    config.write_text(config.read_text() + profiles)
    with SsoPortalStub(
        mfa_sts, user_key_id=local_aws.alice.access_key_id, assignments={(ACCOUNT_ID, SSO_ROLE)}
    ) as portal:
        world.env["AWS_ENDPOINT_URL_SSO"] = portal.endpoint
        world.env["AWS_ENDPOINT_URL_SSO_OIDC"] = portal.endpoint
        world.env["AWS_ENDPOINT_URL_STS"] = mfa_sts.endpoint
        yield SsoWorld(portal, mfa_sts, home, process_dir)
