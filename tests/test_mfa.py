"""MFA sources against the local STS (moto, IAM enforcement on) behind the MFA stub (tests/mfa_stub.py):
one code per source unlocks every role and shell of it, roles renew without another code, the end of the
MFA session is one notice and no STS loop, a wrong code is one clear line, and a profile with keys and no
role gets a GetSessionToken session, never its long-term keys.

Counts are the stub's own (what reached "STS"), not the daemon's idea of them. Time is a FakeClock
(tests/fakes.py) where a test needs hours to pass; elsewhere a real `stsd serve` and real client processes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import Daemon, World, caller_arn, enter_world
from harness import harness, in_process_service, run
from mfa_stub import (
    MFA_ROLE_ARN,
    MFA_ROLE_NAME,
    MFA_SERIAL,
    TOTP_SCRIPT,
    UNVALIDATED_MESSAGE,
    WRONG_CODE_MESSAGE,
    StsMfaStub,
    totp,
    wrong_code,
)

from stsd.client.commands import render_status
from stsd.daemon import session_token
from stsd.daemon.config import SourceSettings
from stsd.daemon.requests import resolve_profile, resolve_request
from stsd.daemon.sources import SourceError, SourceSpec
from stsd.demo.local_aws import ACCOUNT_ID, REGION, USER_ARN, LocalAws
from stsd.project.projectfile import RoleSettings
from stsd.protocol import Refusal

MFA_SOURCE = SourceSpec(profile="alice", mfa_serial=MFA_SERIAL)
NEEDS_CODE = "alice needs an MFA code: run stsd mfa"
PROFILE_PROJECT = 'profile = "alice-mfa"\n'
INLINE_PROJECT = (
    f'role_arn = "{MFA_ROLE_ARN}"\nsource_profile = "alice"\nmfa_serial = "{MFA_SERIAL}"\n'
    f'role_session_name = "b-access"\nregion = "{REGION}"\n'
)
ASSUMED = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{MFA_ROLE_NAME}/"


@pytest.fixture
def mfa_daemon(mfa_world: World) -> Iterator[Daemon]:
    with Daemon(mfa_world) as daemon:
        yield daemon


@pytest.fixture
def mfa_env(mfa_world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """In-process daemon code runs in the MFA world (its STS reached through the stub)."""
    return enter_world(mfa_world, monkeypatch)


def sts_as(stub: StsMfaStub, key: str, secret: str, token: str | None = None) -> Any:
    import boto3

    return boto3.client(
        "sts",
        endpoint_url=stub.endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def in_parallel(world: World, *argv: tuple[str, ...]) -> list[Any]:
    """Run several client processes at once (three shells entering at the same moment)."""
    with ThreadPoolExecutor(len(argv)) as pool:
        return list(pool.map(lambda args: world.stsd(*args), argv))


# -- the stub is honest about what it closes ------------------------------------------------------------


def test_moto_alone_lets_a_role_that_requires_mfa_be_assumed_without_it(
    mfa_sts: StsMfaStub, local_aws: LocalAws
) -> None:
    """Why the stub checks aws:MultiFactorAuthPresent itself (if this fails, moto learned it: drop that part)."""
    assert local_aws.alice is not None
    sts = local_aws.client("sts", local_aws.alice.access_key_id, local_aws.alice.secret_access_key)

    reply = sts.assume_role(RoleArn=MFA_ROLE_ARN, RoleSessionName="no-mfa")

    assert reply["AssumedRoleUser"]["Arn"] == ASSUMED + "no-mfa"


def test_stub_refuses_missing_or_wrong_codes_and_roles_without_mfa(
    mfa_sts: StsMfaStub, local_aws: LocalAws
) -> None:
    assert local_aws.alice is not None
    sts = sts_as(mfa_sts, local_aws.alice.access_key_id, local_aws.alice.secret_access_key)

    def code_of(call: Any) -> tuple[str, str]:
        with pytest.raises(ClientError) as raised:
            call()
        return raised.value.response["Error"]["Code"], raised.value.response["Error"]["Message"]

    assert code_of(lambda: sts.get_session_token(SerialNumber=MFA_SERIAL)) == (
        "AccessDenied",
        UNVALIDATED_MESSAGE,
    )
    assert code_of(lambda: sts.get_session_token(SerialNumber=MFA_SERIAL, TokenCode=wrong_code())) == (
        "AccessDenied",
        WRONG_CODE_MESSAGE,
    )
    assert code_of(lambda: sts.assume_role(RoleArn=MFA_ROLE_ARN, RoleSessionName="xx"))[0] == "AccessDenied"
    plain = sts.get_session_token()["Credentials"]
    with_plain = sts_as(mfa_sts, plain["AccessKeyId"], plain["SecretAccessKey"], plain["SessionToken"])
    assert with_plain.get_caller_identity()["Arn"] == USER_ARN
    assert (
        code_of(lambda: with_plain.assume_role(RoleArn=MFA_ROLE_ARN, RoleSessionName="xx"))[0]
        == "AccessDenied"
    )
    forged = sts_as(mfa_sts, plain["AccessKeyId"], "not-the-secret", plain["SessionToken"])
    assert code_of(forged.get_caller_identity)[0] == "SignatureDoesNotMatch"

    mfa = sts.get_session_token(SerialNumber=MFA_SERIAL, TokenCode=totp(), DurationSeconds=3600)[
        "Credentials"
    ]
    assert mfa["AccessKeyId"] != local_aws.alice.access_key_id
    with_mfa = sts_as(mfa_sts, mfa["AccessKeyId"], mfa["SecretAccessKey"], mfa["SessionToken"])
    assert (
        with_mfa.assume_role(RoleArn=MFA_ROLE_ARN, RoleSessionName="ok")["AssumedRoleUser"]["Arn"]
        == ASSUMED + "ok"
    )
    assert code_of(with_mfa.get_session_token)[0] == "AccessDenied"  # not with session credentials
    assert (mfa_sts.codes_accepted, mfa_sts.codes_refused) == (1, 2)


# -- one code per source, whatever the number of projects and shells ---------------------------------


def test_two_projects_and_three_clients_cost_one_code_and_one_get_session_token(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub
) -> None:
    first = mfa_world.allowed("first", PROFILE_PROJECT)
    second = mfa_world.allowed("second", INLINE_PROJECT)
    clients = (("env", "--json", str(first)), ("env", "--json", str(second)), ("env", "--json", str(first)))

    locked = in_parallel(mfa_world, *clients)

    for result in locked:
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr.strip() == f"stsd: {NEEDS_CODE}"
    assert mfa_sts.count("GetSessionToken") == 0 and mfa_sts.count("AssumeRole") == 0
    status = json.loads(mfa_world.stsd("status", "--json", check=True).stdout)
    [source] = [s for s in status["sources"] if s["session"]]
    assert source["session"]["needs_code"] is True and source["session"]["held"] is False
    assert "needs a code: run stsd mfa" in mfa_world.stsd("status", check=True).stdout

    unlocked = mfa_world.stsd("mfa", "--dir", str(first), input=totp() + "\n")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.startswith("stsd: MFA session for alice held until ")

    served = in_parallel(mfa_world, *clients)

    variables = [json.loads(result.stdout) for result in served]
    assert [result.returncode for result in served] == [0, 0, 0]
    assert caller_arn(mfa_sts.endpoint, variables[0]) == ASSUMED + "mfa-access"
    assert caller_arn(mfa_sts.endpoint, variables[1]) == ASSUMED + "b-access"
    assert variables[0] == variables[2]
    assert mfa_sts.count("GetSessionToken") == 1
    assert mfa_sts.codes_accepted == 1 and mfa_sts.codes_refused == 0
    assert mfa_sts.count("AssumeRole") == 2  # one per distinct role session, none per client
    status = json.loads(mfa_world.stsd("status", "--json", check=True).stdout)
    [source] = [s for s in status["sources"] if s["session"]]
    assert source["session"]["held"] is True and source["session"]["mfa_serial"] == MFA_SERIAL
    assert 43000 < source["session"]["expires_in_s"] <= 43200
    assert source["identity_arn"] == USER_ARN
    text = mfa_world.stsd("status", check=True).stdout
    assert "MFA session  held until" in text


def test_wrong_code_is_one_clear_line_and_the_next_code_works(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub
) -> None:
    project = mfa_world.allowed("proj", PROFILE_PROJECT)

    refused = mfa_world.stsd("mfa", "--dir", str(project), "--code", wrong_code())

    assert refused.returncode == 1 and refused.stdout == ""
    [line] = refused.stderr.splitlines()
    assert line.startswith("stsd: GetSessionToken for alice with MFA ")
    assert "AccessDenied: MultiFactorAuthentication failed with invalid MFA one time pass code." in line
    assert "check the code your device shows now" in line
    assert mfa_world.stsd("env", "--json", str(project)).stderr.strip() == f"stsd: {NEEDS_CODE}"

    accepted = mfa_world.stsd("mfa", "--code", totp(), cwd=project)
    assert accepted.returncode == 0, accepted.stderr
    assert mfa_world.stsd("env", "--json", str(project)).returncode == 0
    assert (mfa_sts.codes_refused, mfa_sts.codes_accepted, mfa_sts.count("GetSessionToken")) == (1, 1, 2)


def test_mfa_refuses_what_is_not_a_code_and_targets_without_mfa(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub
) -> None:
    project = mfa_world.allowed("proj", PROFILE_PROJECT)
    plain = mfa_world.allowed("plain", 'profile = "alice-sts"\n')

    not_digits = mfa_world.stsd("mfa", "--dir", str(project), input="12ab56\n")
    empty = mfa_world.stsd("mfa", "--dir", str(project), input="")
    no_mfa = mfa_world.stsd("mfa", "--dir", str(plain), "--code", "123456")
    by_profile = mfa_world.stsd("mfa", "--profile", "alice-sts", input="123456\n")

    assert not_digits.returncode == 2 and "expected the 6 digits" in not_digits.stderr
    assert empty.returncode == 2 and "no MFA code given" in empty.stderr
    for result in (no_mfa, by_profile):
        assert result.returncode == 1
        assert "has no mfa_serial; no MFA code is needed" in result.stderr
    assert mfa_sts.count("GetSessionToken") == 0


# -- profiles with keys and no role ---------------------------------------------------------------------


def test_keys_only_project_gets_a_session_token_never_the_long_term_keys(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub, local_aws: LocalAws
) -> None:
    assert local_aws.alice is not None
    project = mfa_world.allowed("keys", 'profile = "alice"\n')

    variables = mfa_world.env_json(project)
    process = json.loads(mfa_world.stsd("credential-process", "alice", check=True).stdout)

    assert variables["AWS_ACCESS_KEY_ID"] != local_aws.alice.access_key_id
    assert variables["AWS_SECRET_ACCESS_KEY"] != local_aws.alice.secret_access_key
    assert variables["AWS_SESSION_TOKEN"]
    assert variables["STSD_PROFILE"] == "alice"
    assert caller_arn(mfa_sts.endpoint, variables) == USER_ARN
    assert process["SessionToken"] == variables["AWS_SESSION_TOKEN"]  # the same session for both
    assert mfa_sts.count("GetSessionToken") == 1 and mfa_sts.codes_accepted == 0
    status = json.loads(mfa_world.stsd("status", "--json", check=True).stdout)
    [session] = status["sessions"]
    assert session["role_arn"] is None and session["source"] == "profile alice (session token)"
    assert "(no role)" in mfa_world.stsd("status", check=True).stdout
    for text in (json.dumps(status), mfa_world.stsd("status", check=True).stdout):
        assert local_aws.alice.secret_access_key not in text


def test_mfa_serial_on_the_source_profile_guards_its_roles_and_its_own_session(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub, local_aws: LocalAws
) -> None:
    assert local_aws.alice is not None
    own = mfa_world.allowed("own", 'profile = "alice-otp"\n')
    role = mfa_world.allowed("role", 'profile = "alice-otp-role"\n')

    assert (
        mfa_world.stsd("env", "--json", str(own)).stderr.strip()
        == "stsd: alice-otp needs an MFA code: run stsd mfa"
    )
    assert (
        mfa_world.stsd("env", "--json", str(role)).stderr.strip()
        == "stsd: alice-otp needs an MFA code: run stsd mfa"
    )
    mfa_world.stsd("mfa", "--profile", "alice-otp", "--code", totp(), check=True)

    own_vars = mfa_world.env_json(own)
    role_vars = mfa_world.env_json(role)
    assert caller_arn(mfa_sts.endpoint, own_vars) == USER_ARN
    assert own_vars["AWS_ACCESS_KEY_ID"] != local_aws.alice.access_key_id
    assert caller_arn(mfa_sts.endpoint, role_vars) == ASSUMED + "otp-access"
    assert mfa_sts.count("GetSessionToken") == 1


# -- mfa_process -----------------------------------------------------------------------------------------


def test_mfa_process_gives_the_code_without_a_person(mfa_world: World, mfa_sts: StsMfaStub) -> None:
    import sys

    script = mfa_world.home / "totp.py"
    script.write_text(TOTP_SCRIPT)
    mfa_world.write_config(
        f"[profiles.alice]\nmfa_process = [{json.dumps(sys.executable)}, {json.dumps(str(script))}]\n",
    )
    with Daemon(mfa_world) as daemon:
        project = mfa_world.allowed("proj", PROFILE_PROJECT)
        variables = mfa_world.env_json(project)
        text = mfa_world.stsd("status", check=True).stdout

    assert caller_arn(mfa_sts.endpoint, variables) == ASSUMED + "mfa-access"
    assert mfa_sts.codes_accepted == 1 and mfa_sts.count("GetSessionToken") == 1
    assert "renewed with mfa_process" in text
    assert totp() not in daemon.log  # the code is never logged


def test_failing_mfa_process_is_reported_like_a_credential_process(
    mfa_world: World, mfa_sts: StsMfaStub
) -> None:
    import sys

    mfa_world.write_config(
        f'mfa_process = [{json.dumps(sys.executable)}, "-c", "import sys; sys.exit(\'no token in the keyring\')"]\n',
    )
    with Daemon(mfa_world):
        project = mfa_world.allowed("proj", PROFILE_PROJECT)
        result = mfa_world.stsd("env", "--json", str(project))

    assert result.returncode == 1
    assert result.stderr.strip() == "stsd: mfa_process for alice failed (exit 1): no token in the keyring"
    assert mfa_sts.count("GetSessionToken") == 0


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (("sleep", "5"), "mfa_process for alice: no code within 0.3 s"),
        (("echo", "not-a-code"), "mfa_process for alice printed no code; expected the 6 digits"),
        (("/nonexistent/otp",), "mfa_process for alice: cannot run /nonexistent/otp: No such file"),
    ],
)
def test_mfa_process_timeouts_and_bad_output_are_transient_source_errors(
    mfa_env: World,
    mfa_sts: StsMfaStub,
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    expected: str,
) -> None:
    monkeypatch.setattr(session_token, "MFA_PROCESS_TIMEOUT_S", 0.3)

    async def scenario() -> SourceError:
        async with harness() as h:
            provider = h.sources.provider(MFA_SOURCE)
            provider._settings = SourceSettings(mfa_process=argv)  # type: ignore[attr-defined]
            with pytest.raises(SourceError) as raised:
                h.sources.credentials(MFA_SOURCE)
            return raised.value

    error = run(scenario())

    assert error.message.startswith(expected)
    assert error.transient and error.code == "source_error"
    assert mfa_sts.count("GetSessionToken") == 0


# -- a day with a fake clock: renewals without a code, one notice at the end --------------------------


def test_roles_renew_without_another_code_and_the_end_of_the_mfa_session_is_one_notice(
    mfa_env: World,
    mfa_sts: StsMfaStub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="stsd")
    hours = 3

    async def scenario() -> None:
        async with harness(loop=True, mfa_session_duration=hours * 3600) as h:
            service = in_process_service(h, tmp_path)
            first = resolve_profile("alice-mfa", config=h.config)
            second = resolve_request(
                RoleSettings(
                    role_arn=MFA_ROLE_ARN,
                    source_profile="alice",
                    mfa_serial=MFA_SERIAL,
                    duration_seconds=7200,
                ),
                label="/home/alice/b/.stsd.toml",
                config=h.config,
            )
            assert first.source == second.source == MFA_SOURCE

            async def ask(profile: str = "alice-mfa") -> dict[str, Any]:
                return await service.handle({"v": 1, "op": "credentials", "profile": profile})

            locked = await ask()
            assert locked["error"] == {"code": "mfa_required", "message": NEEDS_CODE}
            h.sources.unlock(MFA_SOURCE, totp())
            assert (await ask())["ok"] is True
            capped = await h.manager.credentials(second)
            assert capped.capped_note == (
                "roles assumed from a GetSessionToken (MFA) session are capped at 1 h; asked 7200 s"
            )
            assert capped.expires_at is not None
            assert capped.expires_at - h.clock.wall() <= timedelta(seconds=3600)

            # Shells ask every few minutes; the loop renews each role session ahead of its expiry.
            ending_seen = False
            end = h.clock.wall() + timedelta(hours=hours) - session_token.ENDS_BEFORE_EXPIRY
            while h.clock.wall() < end - timedelta(minutes=5):
                await h.advance(300)
                assert (await ask())["ok"] is True
                await h.manager.credentials(second)
                status = await service.handle({"v": 1, "op": "status"})
                [source] = [s for s in status["sources"] if s["session"]]
                assert source["session"]["held"] is True
                ending_seen |= source["session"]["ending_soon"]
            renewals = mfa_sts.count("AssumeRole")
            assert renewals >= 2 * hours + 2  # each role renewed about every 40 min
            assert mfa_sts.count("GetSessionToken") == 1 and mfa_sts.codes_accepted == 1
            assert ending_seen  # status said it was about to end

            # The MFA session ends: the old role credentials are served until they expire, then one
            # refusal, the same for every asker, and no STS call at all however often they ask.
            for _ in range(12):
                await h.advance(600)
                reply = await ask()
                if not reply["ok"]:
                    break
            assert reply["error"] == {"code": "mfa_required", "message": NEEDS_CODE}
            calls = sum(mfa_sts.requests.values())
            for _ in range(20):
                assert (await ask())["error"]["code"] == "mfa_required"
                with pytest.raises(Refusal) as raised:
                    await h.manager.credentials(second)
                assert (raised.value.code, raised.value.message) == ("mfa_required", NEEDS_CODE)
                await h.advance(60)
            assert sum(mfa_sts.requests.values()) == calls
            status = await service.handle({"v": 1, "op": "status"})
            [source] = [s for s in status["sources"] if s["session"]]
            assert source["session"]["needs_code"] is True and source["session"]["ended_at"]
            ended = [r for r in caplog.records if "MFA session of alice ended" in r.getMessage()]
            assert len(ended) == 1

            # The next code unlocks both again without anything else.
            h.sources.unlock(MFA_SOURCE, totp())
            assert (await ask())["ok"] is True
            assert (await h.manager.credentials(second)).credentials is not None
            assert mfa_sts.count("GetSessionToken") == 2

    run(scenario())


def test_mfa_session_served_without_a_role_ends_without_spinning(mfa_env: World, mfa_sts: StsMfaStub) -> None:
    async def scenario() -> None:
        async with harness(loop=True, mfa_session_duration=3600) as h:
            request = resolve_profile("alice-otp", config=h.config)
            assert request.role_arn is None and request.source == SourceSpec(
                profile="alice-otp", mfa_serial=MFA_SERIAL
            )
            asked = 0
            original = h.sources.credentials

            def counting(spec: SourceSpec) -> Any:
                nonlocal asked
                asked += 1
                return original(spec)

            h.sources.credentials = counting  # type: ignore[method-assign]
            h.sources.unlock(request.source, totp())
            session = await h.manager.credentials(request)
            assert session.expires_at is not None and session.renew_at is not None
            assert session.expires_at - session.renew_at == timedelta(seconds=60)  # served to its end
            for _ in range(70):
                await h.advance(60)
            assert asked <= 3  # the first fetch, and one at the end: no loop
            with pytest.raises(Refusal) as raised:
                await h.manager.credentials(request)
            assert raised.value.code == "mfa_required"
            assert mfa_sts.count("GetSessionToken") == 1

    run(scenario())


def test_plain_session_token_renews_itself_ahead(mfa_env: World, mfa_sts: StsMfaStub) -> None:
    async def scenario() -> None:
        async with harness(loop=True, mfa_session_duration=3600) as h:
            request = resolve_profile("alice", config=h.config)
            first = await h.manager.credentials(request)
            assert first.renew_at is not None
            await h.advance_to(first.renew_at + timedelta(seconds=1))
            renewed = await h.manager.credentials(request)
            assert renewed.credentials != first.credentials
            assert mfa_sts.count("GetSessionToken") == 2
            assert renewed.expires_at is not None
            assert renewed.expires_at - h.clock.wall() > timedelta(minutes=55)

    run(scenario())


# -- requests and status rendering ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            RoleSettings(
                role_arn=MFA_ROLE_ARN, credential_source="Ec2InstanceMetadata", mfa_serial=MFA_SERIAL
            ),
            "/p/.stsd.toml: mfa_serial: expected a source_profile with access keys",
        ),
        (
            RoleSettings(role_arn=MFA_ROLE_ARN, source_profile="alice-sts", mfa_serial=MFA_SERIAL),
            "'alice-sts' to hold access keys",
        ),
        (
            RoleSettings(role_arn=MFA_ROLE_ARN, source_profile="alice-mfa"),
            "profile 'alice-mfa' is a role that needs MFA",
        ),
    ],
    ids=["from-instance", "from-role", "through-mfa-role"],
)
def test_mfa_needs_a_source_with_long_term_keys(
    mfa_env: World, settings: RoleSettings, expected: str
) -> None:
    from stsd.daemon.config import DaemonConfig

    with pytest.raises(Refusal) as raised:
        resolve_request(settings, label="/p/.stsd.toml", config=DaemonConfig(role_session_name="stsd-test"))

    assert expected in raised.value.message
    if expected.startswith("/p/"):
        assert raised.value.message.startswith(expected)


_HELD = {"held": True, "expires_at": "2030-01-01T18:00:00Z", "needs_code": False}


@pytest.mark.parametrize(
    ("session", "line"),
    [
        (
            {**_HELD, "expires_in_s": 7200, "ending_soon": False},
            "    MFA session  held until 2030-01-01T18:00:00Z (2h00m left)",
        ),
        ({**_HELD, "expires_in_s": 600, "ending_soon": True}, "ends soon: run stsd mfa for a new one"),
        (
            {
                "held": False,
                "expires_at": None,
                "expires_in_s": None,
                "ending_soon": False,
                "needs_code": True,
                "ended_at": "2030-01-01T18:00:00Z",
            },
            "    MFA session  ended 2030-01-01T18:00:00Z; needs a code: run stsd mfa",
        ),
    ],
    ids=["held", "ending", "needed"],
)
def test_status_text_says_held_ending_or_code_needed(session: dict[str, Any], line: str) -> None:
    base = {"mfa_serial": MFA_SERIAL, "mfa_process": False, "last_error": None, "ended_at": None}
    source = {"name": "profile alice (MFA session)", "kind": "mfa-session", "identity_arn": USER_ARN}
    reply = {
        "daemon": {},
        "sources": [{**source, "error": None, "session": {**base, **session}}],
        "sessions": [],
    }

    assert line in render_status(reply, "/")
