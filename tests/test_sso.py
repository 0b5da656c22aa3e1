"""SSO (IAM Identity Center) and credential_process sources against the SSO portal stub (tests/sso_stub.py)
and the local STS (moto, IAM enforcement on) behind the MFA stub's STS stand-in: an SSO profile governs a
project with its own role credentials; an SSO profile is the source of alice-sts (with the external ID);
a missing or expired sign-in is one refusal and no portal call until `aws sso login` writes a new token,
which is picked up without a restart; a credential_process profile governs a project; every one of them
is renewed ahead of expiry.

Counts are the stubs' own (what reached the portal, how often the process ran). Time is a FakeClock
(tests/fakes.py), handed to the portal stub and the process too, where hours must pass; elsewhere a real
`stsd serve` and real client processes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import STSD, Daemon, World, caller_arn, enter_world
from harness import harness, in_process_service, run
from sso_stub import (
    CREDENTIALS_LIFETIME_S,
    SSO_ROLE,
    SSO_SESSION,
    START_URL,
    SsoWorld,
)

from stsd.client.commands import render_status
from stsd.daemon.requests import resolve_profile, resolve_request
from stsd.daemon.sso_login import DEVICE_GRANT
from stsd.demo.local_aws import ACCOUNT_ID, BUCKET, REGION, ROLE_NAME, USER_ARN, LocalAws
from stsd.project.projectfile import RoleSettings
from stsd.protocol import Refusal

SIGN_IN = "dev needs a new sign-in: run aws sso login --sso-session corp"
ASSUMED = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/"
MIN_REMAINING = timedelta(seconds=900)


@pytest.fixture
def sso_daemon(sso_world: SsoWorld, world: World) -> Iterator[Daemon]:
    with Daemon(world) as daemon:
        yield daemon


@pytest.fixture
def sso_env(sso_world: SsoWorld, world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """In-process daemon code runs in the SSO world (portal and STS stubs)."""
    return enter_world(world, monkeypatch)


# -- the stub is honest about what it checks -----------------------------------------------------------


def test_portal_stub_checks_the_bearer_token_and_hands_out_credentials_sts_accepts(
    sso_world: SsoWorld, local_aws: LocalAws
) -> None:
    sso = boto3.client(
        "sso",
        endpoint_url=sso_world.portal.endpoint,
        region_name=REGION,
        aws_access_key_id="unused",
        aws_secret_access_key="unused",
    )
    token, _ = sso_world.portal.grant()
    expired, _ = sso_world.portal.grant(lifetime=-1)

    def code_of(**call: str) -> str:
        with pytest.raises(ClientError) as raised:
            sso.get_role_credentials(**{"roleName": SSO_ROLE, "accountId": ACCOUNT_ID, **call})
        return str(raised.value.response["Error"]["Code"])

    assert code_of(accessToken="not-a-token") == "UnauthorizedException"
    assert code_of(accessToken=expired) == "UnauthorizedException"
    assert code_of(accessToken=token, roleName="Admin") == "ForbiddenException"
    issued = sso.get_role_credentials(roleName=SSO_ROLE, accountId=ACCOUNT_ID, accessToken=token)
    credentials = issued["roleCredentials"]
    lifetime = credentials["expiration"] / 1000 - time.time()
    assert CREDENTIALS_LIFETIME_S - 60 < lifetime <= CREDENTIALS_LIFETIME_S
    variables = {
        "AWS_ACCESS_KEY_ID": credentials["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["secretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["sessionToken"],
    }
    assert caller_arn(sso_world.sts.endpoint, variables) == USER_ARN
    with pytest.raises(ClientError) as alone:  # why they go through the STS stub: moto refuses them
        caller_arn(local_aws.endpoint, variables)
    assert alone.value.response["Error"]["Code"] == "InvalidClientTokenId"
    sso_world.portal.revoke(token)
    assert code_of(accessToken=token) == "UnauthorizedException"
    assert sso_world.portal.calls == {"ok": 1, "unauthorized": 3, "forbidden": 1}


# -- a real daemon -------------------------------------------------------------------------------------


def test_sso_profile_governs_a_project_and_status_shows_its_sign_in(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon
) -> None:
    sso_world.sign_in()
    project = world.allowed("sso-project", 'profile = "dev"\n')

    variables = world.env_json(project)
    process = json.loads(world.stsd("credential-process", "dev", check=True).stdout)

    assert variables["STSD_PROFILE"] == "dev"
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == REGION
    assert variables["AWS_PROFILE"] is None and variables["AWS_SECURITY_TOKEN"] is None
    assert (
        caller_arn(sso_world.sts.endpoint, variables) == USER_ARN
    )  # the stub's role credentials are alice's
    assert process["AccessKeyId"] == variables["AWS_ACCESS_KEY_ID"]
    assert process["SessionToken"] == variables["AWS_SESSION_TOKEN"]
    assert process["Expiration"] == variables["AWS_CREDENTIAL_EXPIRATION"]
    assert sso_world.portal.calls == {"ok": 1}  # one fetch serves the project and the profile

    status = json.loads(world.stsd("status", "--json", check=True).stdout)
    [source] = [s for s in status["sources"] if s["kind"] == "sso"]
    assert source["sso"]["start_url"] == START_URL and source["sso"]["sso_session"] == SSO_SESSION
    assert source["sso"]["needs_sign_in"] is False
    assert source["sso"]["token_expires_in_s"] > 7 * 3600
    assert source["expires_at"] == variables["AWS_CREDENTIAL_EXPIRATION"]
    [session] = status["sessions"]
    assert session["role_arn"] is None and session["source"] == "profile dev"
    text = world.stsd("status", check=True).stdout
    assert f"    SSO         {START_URL} (sso-session corp)" in text
    assert "    sign-in     token until " in text
    assert "    credentials expire in 59m" in text or "    credentials expire in 1h00m" in text


def test_sso_profile_as_source_of_alice_sts_with_the_external_id(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon, local_aws: LocalAws
) -> None:
    sso_world.sign_in()
    role = world.allowed("role-project", 'profile = "dev-sts"\n')
    wrong = world.allowed(
        "wrong-id",
        f'role_arn = "arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}"\nsource_profile = "dev"\n'
        'external_id = "not-alice"\n',
    )

    variables = world.env_json(role)
    refused = world.stsd("env", "--json", str(wrong))

    assert caller_arn(local_aws.endpoint, variables) == ASSUMED + "sso-access"  # real moto role credentials
    s3 = local_aws.client(
        "s3",
        variables["AWS_ACCESS_KEY_ID"],
        variables["AWS_SECRET_ACCESS_KEY"],
        variables["AWS_SESSION_TOKEN"],
    )
    assert BUCKET in [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
    assert refused.returncode == 1
    assert "AccessDenied" in refused.stderr
    assert sso_world.portal.calls == {"ok": 1}  # both roles assumed from one set of SSO credentials
    assert sso_world.sts.count("AssumeRole") == 2


def test_credential_process_profile_governs_a_project(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon
) -> None:
    project = world.allowed("process-project", 'profile = "proc"\n')

    first = world.env_json(project)
    again = world.env_json(project)

    assert caller_arn(sso_world.sts.endpoint, first) == USER_ARN
    assert again["AWS_SESSION_TOKEN"] == first["AWS_SESSION_TOKEN"]
    assert sso_world.process_runs == 1  # held, not run again per request
    status = world.stsd("status", check=True).stdout
    assert "  profile proc  (process)  " + USER_ARN in status
    assert "    credentials expire in " in status


def test_expired_sign_in_is_one_refusal_without_portal_calls_and_a_new_token_is_picked_up(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon
) -> None:
    sso_world.sign_in(lifetime=-60)  # the cache holds a token that has ended
    project = world.allowed("sso-project", 'profile = "dev"\n')

    refusals = [world.stsd("env", "--json", str(project)) for _ in range(3)]
    status = world.stsd("status", check=True).stdout

    assert [(r.returncode, r.stderr) for r in refusals] == [(1, f"stsd: {SIGN_IN}\n")] * 3
    assert sso_world.portal.fetches == 0  # an expired token is never sent
    assert f"needed: run aws sso login --sso-session {SSO_SESSION}" in status
    assert sso_daemon.log.count(SIGN_IN) == 1  # logged once, however often shells ask
    assert sso_daemon.log.count(f"SSO token for {START_URL} is missing, expired or refused") == 1

    sso_world.sign_in()  # `aws sso login` in another terminal writes a new cache file

    variables = world.env_json(project)
    assert caller_arn(sso_world.sts.endpoint, variables) == USER_ARN
    assert sso_daemon.process.poll() is None  # the same daemon, not restarted
    assert sso_world.portal.calls == {"ok": 1}
    assert "needed" not in world.stsd("status", check=True).stdout


def test_legacy_sso_profile_names_its_own_sign_in_command(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon
) -> None:
    project = world.allowed("legacy", 'profile = "dev-legacy"\n')

    refused = world.stsd("env", "--json", str(project))
    sso_world.sign_in(legacy=True)
    served = world.env_json(project)

    assert refused.stderr == "stsd: dev-legacy needs a new sign-in: run aws sso login --profile dev-legacy\n"
    assert caller_arn(sso_world.sts.endpoint, served) == USER_ARN


# -- an injected clock ---------------------------------------------------------------------------------


def test_every_source_kind_renews_ahead_of_expiry_with_an_injected_clock(
    sso_world: SsoWorld, sso_env: World
) -> None:
    hours = 3

    async def scenario() -> None:
        async with harness(loop=True) as h:
            sso_world.portal.now = lambda: h.clock.wall().timestamp()
            sso_world.set_process_clock(h.clock.wall().timestamp())
            sso_world.sign_in(lifetime=12 * 3600)
            requests = [
                resolve_profile(name, config=h.config) for name in ("dev", "dev-sts", "proc", "proc-sts")
            ]
            seen: dict[str, set[Any]] = {request.label: set() for request in requests}
            end = h.clock.wall() + timedelta(hours=hours)
            while h.clock.wall() < end:
                for request in requests:
                    session = await h.manager.credentials(request)
                    assert session.credentials is not None and session.expires_at is not None
                    assert session.expires_at - h.clock.wall() >= MIN_REMAINING, request.label
                    seen[request.label].add(session.credentials.expiration)  # one per fetch
                await h.advance(300)
                sso_world.set_process_clock(h.clock.wall().timestamp())

            # About every 40 min (1 h credentials renewed 20-22 min ahead, sources a minute earlier).
            for label, credentials in seen.items():
                assert hours * 60 // 40 <= len(credentials) <= hours * 60 // 30 + 1, label
            assert hours * 60 // 40 <= sso_world.portal.calls["ok"] <= hours * 60 // 30 + 1
            assert hours * 60 // 40 <= sso_world.process_runs <= hours * 60 // 30 + 1
            assert sso_world.portal.calls.keys() == {"ok"}

    run(scenario())


def test_sign_in_ending_under_an_injected_clock_is_one_refusal_until_a_new_token(
    sso_world: SsoWorld,
    sso_env: World,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stsd")

    async def scenario() -> None:
        async with harness(loop=True) as h:
            service = in_process_service(h, tmp_path)
            sso_world.portal.now = lambda: h.clock.wall().timestamp()
            sso_world.sign_in(lifetime=2 * 3600)
            own = resolve_profile("dev", config=h.config)
            role = resolve_profile("dev-sts", config=h.config)

            async def ask(profile: str) -> dict[str, Any]:
                return await service.handle({"v": 1, "op": "credentials", "profile": profile})

            # Served while the token lasts; then each session is served until it expires, then refused.
            refused_at = None
            for _ in range(60):
                replies = [await ask("dev"), await ask("dev-sts")]
                if not any(reply["ok"] for reply in replies):
                    refused_at = h.clock.wall()
                    break
                await h.advance(300)
            assert refused_at is not None
            assert all(r["error"] == {"code": "sign_in_required", "message": SIGN_IN} for r in replies)
            fetched = sso_world.portal.fetches
            for _ in range(20):
                for request in (own, role):
                    with pytest.raises(Refusal) as raised:
                        await h.manager.credentials(request)
                    assert (raised.value.code, raised.value.message) == ("sign_in_required", SIGN_IN)
                await h.advance(60)
            assert sso_world.portal.fetches == fetched  # no call with an ended token, however often
            status = await service.handle({"v": 1, "op": "status"})
            [source] = [s for s in status["sources"] if s["sso"]]
            assert source["sso"]["needs_sign_in"] is True and source["error"] == SIGN_IN
            text = render_status(status, "/")
            assert "    sign-in     token expired " in text
            assert f"; needed: run aws sso login --sso-session {SSO_SESSION}" in text
            warned = [r for r in caplog.records if "SSO token for " in r.getMessage()]
            assert len(warned) == 1  # once for the token, and once for each session waiting on it:
            assert len([r for r in caplog.records if SIGN_IN in r.getMessage()]) == 2

            sso_world.sign_in()  # a new cache file: nothing else
            assert (await ask("dev"))["ok"] is True
            assert (await ask("dev-sts"))["ok"] is True
            assert sso_world.portal.fetches == fetched + 1

    run(scenario())


def test_token_the_portal_refuses_is_a_sign_in_too_and_not_retried(
    sso_world: SsoWorld, sso_env: World
) -> None:

    async def scenario() -> None:
        async with harness(loop=True) as h:
            token = sso_world.sign_in()
            sso_world.portal.revoke(token)  # signed out elsewhere: the cache still looks valid
            request = resolve_profile("dev", config=h.config)
            for _ in range(5):
                with pytest.raises(Refusal) as raised:
                    await h.manager.credentials(request)
                assert raised.value.code == "sign_in_required"
                await h.advance(600)
            assert sso_world.portal.calls == {"unauthorized": 1}

    run(scenario())


def test_profiles_without_a_role_refuse_role_keys_and_mfa(sso_world: SsoWorld, sso_env: World) -> None:
    from stsd.daemon.config import DaemonConfig

    config = DaemonConfig(role_session_name="stsd-test")
    with pytest.raises(Refusal) as external:
        resolve_request(
            RoleSettings(profile="dev", external_id="alice"), label="/p/.stsd.toml", config=config
        )
    with pytest.raises(Refusal) as mfa:
        resolve_request(
            RoleSettings(profile="proc", mfa_serial=f"arn:aws:iam::{ACCOUNT_ID}:mfa/alice"),
            label="/p/.stsd.toml",
            config=config,
        )

    assert external.value.message == (
        "/p/.stsd.toml: external_id: applies to a role; profile 'dev' is an SSO profile and no role_arn, "
        "so it gets a session of its own"
    )
    assert mfa.value.message.startswith("/p/.stsd.toml: mfa_serial: expected a profile with access keys")


def test_token_near_its_end_is_refreshed_with_its_refresh_token_by_botocore(
    sso_world: SsoWorld, sso_env: World
) -> None:
    hours = 4

    async def scenario() -> None:
        async with harness(loop=True) as h:
            sso_world.portal.now = lambda: h.clock.wall().timestamp()
            sso_world.portal.token_lifetime = 3600
            first = sso_world.sign_in(lifetime=3600, refreshable=True)  # tokens of an hour, a day's work
            request = resolve_profile("dev", config=h.config)
            end = h.clock.wall() + timedelta(hours=hours)
            while h.clock.wall() < end:
                session = await h.manager.credentials(request)
                assert session.expires_at is not None
                assert session.expires_at - h.clock.wall() >= MIN_REMAINING
                await h.advance(300)

            refreshed = sso_world.portal.oidc["CreateToken:refresh_token:ok"]
            assert hours - 2 <= refreshed <= hours + 1
            assert sso_world.portal.calls.keys() == {"ok"}  # never a refused token
            cached = sso_world.cached_token()
            assert cached["accessToken"] != first and cached["accessToken"] in sso_world.portal.tokens
            assert cached["refreshToken"] in sso_world.portal.refresh_tokens  # the rotated one, kept
            assert cached["expiresAt"].endswith("Z") and cached["startUrl"] == START_URL

    run(scenario())


def test_stsd_login_signs_in_with_a_device_code_and_the_daemon_picks_the_token_up(
    sso_world: SsoWorld, world: World, sso_daemon: Daemon
) -> None:
    sso_world.sign_in(lifetime=-60)
    project = world.allowed("role-project", 'profile = "dev-sts"\n')
    assert world.stsd("env", "--json", str(project)).stderr == f"stsd: {SIGN_IN}\n"

    login = subprocess.Popen(
        [*STSD, "login"],
        cwd=project,
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert login.stdout is not None
    prompt = login.stdout.readline()
    assert prompt.startswith(f"stsd: to sign in to {START_URL}, open https://device.example.com/?user_code=")
    code = prompt.split()[-1]
    sso_world.portal.approve_once_polled(code)
    out, err = login.communicate(timeout=30)

    assert login.returncode == 0, err
    assert out.startswith("stsd: signed in (sso-session corp) until ")
    cached = sso_world.cached_token()
    assert cached["accessToken"] in sso_world.portal.tokens and cached["startUrl"] == START_URL
    assert cached["clientId"] in sso_world.portal.clients  # so botocore can refresh it later
    assert cached["refreshToken"] in sso_world.portal.refresh_tokens
    variables = world.env_json(project)  # the same daemon, nothing else done
    assert sso_world.portal.oidc[f"CreateToken:{DEVICE_GRANT}:ok"] == 1
    assert variables["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert sso_daemon.process.poll() is None


def test_stsd_login_refuses_a_profile_that_does_not_sign_in_with_sso(
    sso_world: SsoWorld, world: World
) -> None:
    refused = world.stsd("login", "alice")

    assert (refused.returncode, refused.stderr) == (
        1,
        "stsd: profile 'alice' does not sign in with SSO (no sso_session or sso_start_url)\n",
    )
    assert sum(sso_world.portal.oidc.values()) == 0


def test_short_lived_process_credentials_renew_at_half_their_life_not_later(
    sso_world: SsoWorld, sso_env: World
) -> None:
    (sso_world.process_dir / "lifetime").write_text("900")  # 15 min: less than the usual 20 min lead

    async def scenario() -> None:
        async with harness(loop=True) as h:
            sso_world.set_process_clock(h.clock.wall().timestamp())
            request = resolve_profile("proc", config=h.config)
            expirations: set[Any] = set()  # one per fetch of the source (the process gives one key)
            renewals: set[Any] = set()  # each schedule the session had: one per fetch of it
            for _ in range(60):
                session = await h.manager.credentials(request)
                assert session.expires_at is not None and session.credentials is not None
                # Renewed at half its life (7.5 min left), so never handed out with much less.
                assert session.expires_at - h.clock.wall() >= timedelta(minutes=6, seconds=30)
                expirations.add(session.credentials.expiration)
                renewals.add(session.renew_at)
                # The process's clock moves first, so a fetch the renewal loop starts in `advance` sees
                # the same time as the daemon (else its credentials would seem a minute shorter).
                sso_world.set_process_clock(h.clock.wall().timestamp() + 60)
                await h.advance(60)
            # The source is renewed ahead at half its life (less a minute: 6.5 min), when the loop next
            # looks on the test's minute steps: at 0, 7, 14, ... 56 min.
            assert len(expirations) == 9
            # The process ran once each time, and once more at first: botocore itself runs it again when
            # the credentials it got have under 15 min left on the real clock (the fake one soon runs
            # ahead of it).
            assert 9 <= sso_world.process_runs <= 10
            # The session is renewed only when its source has new credentials. (A short session's own
            # schedule, a fixed 2 min after each fetch, had it fetch the same ones every 2 min, and the
            # source renewed only at the next such step: later in its life.)
            assert len(renewals) == 9

    run(scenario())


def test_a_session_serving_its_sources_own_credentials_renews_when_the_source_does(
    sso_world: SsoWorld, sso_env: World
) -> None:
    (sso_world.process_dir / "lifetime").write_text("900")

    async def scenario() -> None:
        async with harness() as h:
            sso_world.set_process_clock(h.clock.wall().timestamp())
            fetched = h.clock.wall()
            session = await h.manager.credentials(resolve_profile("proc", config=h.config))
            assert session.renew_at is not None and session.expires_at is not None
            # The source is due at half its life plus a minute (renew_ahead.source_lead): 6.5 min in. Not
            # 2 min in, as the schedule of a 15 min session alone says (SHORT_SESSION_MIN_LIFE_USED).
            lifetime = session.expires_at - fetched  # 900 s less the fraction the process's clock drops
            assert session.renew_at == session.expires_at - (lifetime / 2 + timedelta(seconds=60))
            h.clock.advance(389)
            assert await h.manager.credentials(session.request) == session  # nothing fetched
            h.clock.advance(1)
            sso_world.set_process_clock(h.clock.wall().timestamp())
            renewed = await h.manager.credentials(session.request)
            assert renewed.credentials is not None and session.credentials is not None
            assert renewed.credentials.expiration == session.credentials.expiration + timedelta(seconds=390)
            assert renewed.renew_at is not None and renewed.renew_at > h.clock.wall()

    run(scenario())


@pytest.mark.parametrize(
    ("expires_in_s", "needs", "line"),
    [
        (26000, False, "    sign-in     token until 2030-01-01T16:00:00Z (7h13m left)"),
        (
            -60,
            True,
            "    sign-in     token expired 2030-01-01T16:00:00Z; needed: run aws sso login --sso-session corp",
        ),
        (
            26000,
            True,
            "    sign-in     token refused by the portal; needed: run aws sso login --sso-session corp",
        ),
        (None, True, "    sign-in     no token cached; needed: run aws sso login --sso-session corp"),
    ],
)
def test_status_text_says_where_the_sign_in_stands(expires_in_s: Any, needs: bool, line: str) -> None:
    sso = {
        "start_url": START_URL,
        "sso_session": SSO_SESSION,
        "token_expires_at": "2030-01-01T16:00:00Z" if expires_in_s is not None else None,
        "token_expires_in_s": expires_in_s,
        "needs_sign_in": needs,
        "sign_in_command": "aws sso login --sso-session corp",
    }
    source = {"name": "profile dev", "kind": "sso", "identity_arn": None, "error": None, "session": None}
    reply = {"daemon": {}, "sources": [{**source, "sso": sso, "expires_at": None, "expires_in_s": None}]}

    text = render_status(reply, "/")

    assert f"    SSO         {START_URL} (sso-session corp)" in text
    assert line in text.splitlines()
    assert "credentials expire" not in text


def test_role_next_to_an_sso_profile_says_to_name_it_as_the_source(
    sso_world: SsoWorld, sso_env: World
) -> None:
    from stsd.daemon.config import DaemonConfig

    settings = RoleSettings(profile="dev", role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/{ROLE_NAME}")
    with pytest.raises(Refusal) as raised:
        resolve_request(settings, label="/p/.stsd.toml", config=DaemonConfig(role_session_name="stsd-test"))

    assert raised.value.message == (
        "/p/.stsd.toml: profile: 'dev' has no role_arn to take settings from; to assume role_arn with its "
        'credentials, write source_profile = "dev" instead'
    )
