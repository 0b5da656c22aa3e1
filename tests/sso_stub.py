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
is checked by moto as usual (policies, trust, external ID). The stub counts GetRoleCredentials calls by
outcome.
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mfa_stub import StsMfaStub

from stsd.demo.local_aws import ACCOUNT_ID, EXTERNAL_ID, REGION, ROLE_ARN, LocalAws

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
        self.calls: Counter[str] = Counter()  # GetRoleCredentials by outcome: ok, unauthorized, ...
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def __enter__(self) -> SsoPortalStub:
        stub = self

        class Handler(_Handler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _Handler(BaseHTTPRequestHandler):
    owner: SsoPortalStub
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

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

    def _answer(self, outcome: str, status: int, code: str, message: str) -> None:
        self._send(outcome, status, {"__type": code, "message": message}, {"x-amzn-ErrorType": code})

    def _send(self, outcome: str, status: int, body: dict[str, object], headers: dict[str, str]) -> None:
        with self.owner._lock:
            self.owner.calls[outcome] += 1
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


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

[profile dev-sts]
role_arn = {ROLE_ARN}
source_profile = dev
external_id = {EXTERNAL_ID}
role_session_name = sso-access
region = {REGION}

[profile proc]
credential_process = {{process}}
region = {REGION}

[profile proc-sts]
role_arn = {ROLE_ARN}
source_profile = proc
external_id = {EXTERNAL_ID}
role_session_name = proc-access
region = {REGION}
"""

# A credential_process: prints a session the STS stub honours, expiring an hour after "now" (the time in
# the file `clock` beside it when there is one: tests with a fake clock keep it there), and counts its runs.
PROCESS_SCRIPT = """\
import json, pathlib, sys, time
here = pathlib.Path(__file__).parent
clock = here / "clock"
now = float(clock.read_text()) if clock.exists() else time.time()
with open(here / "runs", "a") as runs:
    runs.write("run\\n")
issued = json.loads((here / "session.json").read_text())
print(json.dumps({
    "Version": 1,
    "AccessKeyId": issued["key"],
    "SecretAccessKey": issued["secret"],
    "SessionToken": issued["token"],
    "Expiration": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
}))
"""


def token_file(home: Path, key: str) -> Path:
    """Where botocore looks for the token of an sso-session (or a legacy start URL)."""
    return home / ".aws" / "sso" / "cache" / (hashlib.sha1(key.encode()).hexdigest() + ".json")


def write_token(
    home: Path, token: str, expires: float, *, start_url: str = START_URL, key: str = SSO_SESSION
) -> Path:
    """Write the token cache file as `aws sso login` does (replacing it atomically, as the CLI's cache does)."""
    path = token_file(home, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "startUrl": start_url,
        "region": REGION,
        "accessToken": token,
        "expiresAt": datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
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

    def sign_in(self, lifetime: float = TOKEN_LIFETIME_S, *, legacy: bool = False) -> str:
        """What `aws sso login` does: a new token from the portal, written to the cache."""
        token, expires = self.portal.grant(lifetime)
        if legacy:
            write_token(self.home, token, expires, start_url=LEGACY_START_URL, key=LEGACY_START_URL)
        else:
            write_token(self.home, token, expires)
        return token

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
    `proc-sts`), the portal stub (AWS_ENDPOINT_URL_SSO) and STS reached through the MFA stub. Nobody is
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
        world.env["AWS_ENDPOINT_URL_STS"] = mfa_sts.endpoint
        yield SsoWorld(portal, mfa_sts, home, process_dir)
