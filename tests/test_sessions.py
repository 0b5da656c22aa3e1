"""The session manager against a real local STS (moto over HTTP, IAM enforcement on).

Time is a FakeClock (tests/fakes.py): a session lives an hour, and a test cannot wait for one.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import random
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError
from fakes import FakeClock, external_id_required
from harness import harness, run
from hypothesis import given
from hypothesis import strategies as st
from imds_stub import APP_ROLE_ARN, ImdsStub, running_imds

from stsd.daemon.requests import RoleRequest, resolve_profile
from stsd.daemon.secret import Secret
from stsd.daemon.sessions import RoleSession, backoff_delay
from stsd.daemon.sources import SourceSpec
from stsd.daemon.sts_errors import FailureKind, classify
from stsd.demo.local_aws import (
    ACCOUNT_ID,
    EXTERNAL_ID,
    REGION,
    ROLE_ARN,
    ROLE_NAME,
    LocalAws,
    free_port,
)
from stsd.protocol import Refusal

ALICE = SourceSpec(profile="alice")


def role_request(
    source: SourceSpec = ALICE, external_id: str | None = EXTERNAL_ID, **fields: Any
) -> RoleRequest:
    values: dict[str, Any] = {
        "role_arn": ROLE_ARN,
        "session_name": "s3-access",
        "duration_seconds": None,
        "region": REGION,
        "label": "test",
    }
    values.update(fields)
    return RoleRequest(source=source, external_id=external_id, **values)


def caller_arn(aws: LocalAws, session: RoleSession) -> str:
    creds = session.credentials
    assert creds is not None
    sts = aws.client(
        "sts", creds.access_key_id, creds.secret_access_key.reveal(), creds.session_token.reveal()
    )
    return str(sts.get_caller_identity()["Arn"])


def remaining(session: RoleSession, clock: FakeClock) -> timedelta:
    assert session.expires_at is not None
    return session.expires_at - clock.wall()


@pytest.fixture
def imds(world_env: Any, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImdsStub]:
    with running_imds(local_aws, monkeypatch) as stub:
        yield stub


# -- getting credentials ----------------------------------------------------------------------------


def test_static_keys_assume_role_with_external_id_give_role_credentials(
    world_env: Any, local_aws: LocalAws
) -> None:
    async def scenario() -> RoleSession:
        async with harness() as h:
            return await h.manager.credentials(resolve_profile(ROLE_NAME, config=h.config))

    session = run(scenario())

    assert session.credentials is not None
    assert session.credentials.access_key_id.startswith("ASIA")
    expected = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/s3-access"
    assert session.assumed_role_arn == expected
    assert caller_arn(local_aws, session) == expected
    assert session.last_error is None


def test_wrong_external_id_is_denied_with_the_reason(world_env: Any) -> None:
    async def scenario() -> Refusal:
        async with harness() as h:
            with pytest.raises(Refusal) as raised:
                await h.manager.credentials(role_request(external_id="not-alice"))
            return raised.value

    error = run(scenario())

    assert error.code == "sts_denied"
    assert "AccessDenied" in error.message
    assert ROLE_ARN in error.message
    assert "\n" not in error.message


def test_missing_external_id_is_denied(world_env: Any) -> None:
    async def scenario() -> Refusal:
        async with harness() as h:
            with pytest.raises(Refusal) as raised:
                await h.manager.credentials(role_request(external_id=None))
            return raised.value

    with external_id_required():
        error = run(scenario())

    assert error.code == "sts_denied"
    assert "AccessDenied" in error.message


def test_concurrent_requests_share_one_assume_role(world_env: Any) -> None:
    async def scenario() -> tuple[list[RoleSession], int]:
        async with harness() as h:
            sessions = await asyncio.gather(*(h.manager.credentials(role_request()) for _ in range(50)))
            return sessions, h.manager.assume_role_calls

    sessions, calls = run(scenario())

    assert calls == 1
    assert len({s.credentials.access_key_id for s in sessions if s.credentials}) == 1


def test_requests_differing_only_in_label_share_a_session(world_env: Any) -> None:
    async def scenario() -> tuple[RoleSession, RoleSession, int]:
        async with harness() as h:
            first = await h.manager.credentials(role_request(label="/home/a/.stsd.toml"))
            second = await h.manager.credentials(role_request(label="/home/b/.stsd.toml"))
            return first, second, h.manager.assume_role_calls

    first, second, calls = run(scenario())

    assert calls == 1
    assert first.credentials == second.credentials


# -- renewing ahead ---------------------------------------------------------------------------------


def test_renews_once_ahead_of_expiry_in_the_background(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            first = await h.manager.credentials(role_request())
            assert first.renew_at is not None and first.expires_at is not None
            lead = first.expires_at - first.renew_at
            assert timedelta(seconds=1200) <= lead <= timedelta(seconds=1200 + 120)

            await h.advance_to(first.renew_at - timedelta(seconds=1))
            assert h.manager.assume_role_calls == 1

            await h.advance(2)
            assert h.manager.assume_role_calls == 2
            (renewed,) = h.manager.sessions()
            assert renewed.credentials is not None and first.credentials is not None
            assert renewed.credentials.access_key_id != first.credentials.access_key_id
            assert renewed.renew_at is not None and renewed.renew_at > first.expires_at - timedelta(
                seconds=60
            )

            served = await h.manager.credentials(role_request())
            assert served.credentials == renewed.credentials
            await h.advance(600)
            assert h.manager.assume_role_calls == 2  # once per renewal, not again and again

    run(scenario())


def test_never_hands_out_less_than_fifteen_minutes_while_renewal_is_possible(world_env: Any) -> None:
    async def scenario() -> None:
        # No background loop and no renew-ahead lead: only the minimum-remaining rule can renew here.
        async with harness(renew_before_seconds=0, renew_jitter_seconds=0) as h:
            first = await h.manager.credentials(role_request())
            assert first.expires_at is not None

            h.clock.advance((first.expires_at - h.clock.wall()).total_seconds() - 901)
            still = await h.manager.credentials(role_request())
            assert still.credentials == first.credentials
            assert remaining(still, h.clock) >= timedelta(seconds=900)

            h.clock.advance(2)
            renewed = await h.manager.credentials(role_request())
            assert h.manager.assume_role_calls == 2
            assert renewed.credentials != first.credentials
            assert remaining(renewed, h.clock) >= timedelta(seconds=900)

    run(scenario())


def test_short_sessions_hand_out_as_much_life_as_the_duration_permits(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            # 900 s: consumers refetch on every call whatever stsd does; renewed 2 min after each fetch,
            # so a hand-out keeps at least 13 min (not half the life, as a half-life renewal would).
            session = await h.manager.credentials(role_request(duration_seconds=900))
            assert session.expires_at is not None and session.renew_at is not None
            assert session.expires_at - session.renew_at == timedelta(seconds=780)
            assert session.cost_note is not None and "every call" in session.cost_note
            # 1200 s: renewed with 16 min left, so every hand-out stays outside botocore's 15-min window.
            session = await h.manager.credentials(role_request(duration_seconds=1200, session_name="s-1200"))
            assert session.expires_at is not None and session.renew_at is not None
            assert session.expires_at - session.renew_at == timedelta(seconds=960)
            assert session.cost_note == (
                "a 20 min session: an AssumeRole every 4 min; each hand-out keeps 15 min or more"
            )

    run(scenario())


def test_clock_jump_past_renewal_renews_before_serving(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            first = await h.manager.credentials(role_request())
            assert first.renew_at is not None
            # The laptop slept: wall time moved, monotonic time did not.
            h.clock.jump((first.renew_at - h.clock.wall()).total_seconds() + 5)
            served = await h.manager.credentials(role_request())
            assert h.manager.assume_role_calls == 2
            assert served.credentials != first.credentials
            assert remaining(served, h.clock) > timedelta(seconds=3000)

    run(scenario())


def test_renewal_loop_catches_up_within_one_step_after_suspend(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            first = await h.manager.credentials(role_request())
            assert first.expires_at is not None
            h.clock.jump((first.expires_at - h.clock.wall()).total_seconds() - 300)  # suspended
            await h.advance(30)  # the loop's bounded sleep ends on monotonic time
            assert h.manager.assume_role_calls == 2
            (renewed,) = h.manager.sessions()
            assert remaining(renewed, h.clock) > timedelta(seconds=3000)

    run(scenario())


# -- failures ---------------------------------------------------------------------------------------


def test_unreachable_sts_backs_off_with_growing_jittered_delays_and_serves_old_credentials_until_expiry(
    world_env: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        async with harness(loop=True) as h:
            first = await h.manager.credentials(role_request())
            assert first.renew_at is not None and first.expires_at is not None
            # Nothing listens on this port: every STS call now fails to connect.
            monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{free_port()}")
            await h.advance_to(first.renew_at)

            delays = []
            while True:
                (failing,) = h.manager.sessions()
                assert failing.retry_at is not None
                delays.append((failing.retry_at - h.clock.wall()).total_seconds())
                assert failing.error_code == "sts_unavailable"
                if failing.retry_at >= first.expires_at - timedelta(seconds=60):
                    break
                calls = h.manager.assume_role_calls
                served = await h.manager.credentials(role_request())
                assert served.credentials == first.credentials  # old, still valid, served
                assert served.last_error is not None and "unreachable" in served.last_error
                assert h.manager.assume_role_calls == calls  # backing off: the request did not call STS
                await h.advance_to(failing.retry_at)

            initial, maximum = h.config.backoff_initial_seconds, h.config.backoff_max_seconds
            for attempt, delay in enumerate(delays, start=1):
                assert initial <= delay <= min(maximum, initial * 2**attempt)
            assert len(set(delays)) == len(delays)  # jittered
            assert sum(delays[-3:]) > sum(delays[:3])  # growing

            h.clock.advance((first.expires_at - h.clock.wall()).total_seconds() - 59)
            with pytest.raises(Refusal) as raised:
                await h.manager.credentials(role_request())
            assert raised.value.code == "sts_unavailable"
            h.clock.advance(120)
            with pytest.raises(Refusal):
                await h.manager.credentials(role_request())

    run(scenario())


def test_sts_that_never_answers_times_out(world_env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A listening socket nobody accepts from: the kernel completes the handshake, no reply ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{silent.getsockname()[1]}")

        async def scenario() -> Refusal:
            async with harness(sts_read_timeout=0.3) as h:
                with pytest.raises(Refusal) as raised:
                    await h.manager.credentials(role_request())
                return raised.value

        error = run(scenario())

    assert error.code == "timeout"
    assert ROLE_ARN in error.message


@given(
    failures=st.integers(min_value=1, max_value=200),
    initial=st.floats(min_value=0.1, max_value=60),
    maximum=st.floats(min_value=60, max_value=3600),
    seed=st.integers(),
)
def test_backoff_stays_between_initial_and_a_doubling_ceiling(
    failures: int, initial: float, maximum: float, seed: int
) -> None:
    delay = backoff_delay(failures, initial=initial, maximum=maximum, rng=random.Random(seed))

    assert initial <= delay <= min(maximum, initial * 2.0**failures)


def _write_source_profile(world: Any, name: str, access_key_id: str, secret: str) -> Path:
    credentials = world.home / ".aws" / "credentials"
    text = credentials.read_text()
    block = f"[{name}]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n"
    start = text.find(f"[{name}]")
    text = text + "\n" + block if start < 0 else text[:start] + block
    credentials.write_text(text)
    return credentials


def test_permanent_failure_is_not_retried_until_the_credentials_file_changes(
    world_env: Any, local_aws: LocalAws
) -> None:
    assert local_aws.alice is not None
    alice = local_aws.alice
    _write_source_profile(world_env, "typo", alice.access_key_id, "not-the-secret")
    request = role_request(source=SourceSpec(profile="typo"))

    async def scenario() -> None:
        async with harness(loop=True) as h:
            with pytest.raises(Refusal) as raised:
                await h.manager.credentials(request)
            assert raised.value.code == "source_error"
            assert "SignatureDoesNotMatch" in raised.value.message
            assert "not-the-secret" not in raised.value.message

            with pytest.raises(Refusal):
                await h.manager.credentials(request)
            await h.advance(3600)
            assert h.manager.assume_role_calls == 1

            _write_source_profile(world_env, "typo", alice.access_key_id, alice.secret_access_key)
            fixed = await h.manager.credentials(request)
            assert fixed.credentials is not None and fixed.last_error is None
            assert h.manager.assume_role_calls == 2

    run(scenario())


def test_explicit_renew_does_not_retry_a_permanent_failure(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            request = role_request(external_id="not-alice")
            with pytest.raises(Refusal):
                await h.manager.credentials(request)
            for _ in range(3):
                with pytest.raises(Refusal) as raised:
                    await h.manager.renew(request)
                assert "not retried until the AWS config or credentials files change" in raised.value.message
                h.clock.advance(3600)  # no interval lets a renew past it either
            assert h.manager.assume_role_calls == 1

    run(scenario())


def test_explicit_renew_fetches_new_credentials_now(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness() as h:
            first = await h.manager.credentials(role_request())
            renewed = await h.manager.renew(role_request())
            assert h.manager.assume_role_calls == 2
            assert renewed.credentials != first.credentials
            assert (await h.manager.credentials(role_request())).credentials == renewed.credentials

    run(scenario())


def test_idle_session_stops_renewing_until_asked_again(world_env: Any) -> None:
    async def scenario() -> None:
        async with harness(loop=True, idle_timeout_seconds=600) as h:
            first = await h.manager.credentials(role_request())
            assert first.renew_at is not None
            await h.advance(601)
            assert [s.idle for s in h.manager.sessions()] == [True]

            await h.advance_to(first.renew_at + timedelta(seconds=300))
            assert h.manager.assume_role_calls == 1

            again = await h.manager.credentials(role_request())
            assert h.manager.assume_role_calls == 2
            assert not again.idle
            assert remaining(again, h.clock) > timedelta(seconds=3000)

    run(scenario())


def _client_error(code: str, status: int) -> ClientError:
    reply: Any = {
        "Error": {"Code": code, "Message": f"{code} said\nacross lines"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(reply, "AssumeRole")


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (_client_error("AccessDenied", 403), FailureKind.PERMANENT, "sts_denied"),
        (_client_error("ValidationError", 400), FailureKind.PERMANENT, "sts_denied"),
        (_client_error("MalformedPolicyDocument", 400), FailureKind.PERMANENT, "sts_denied"),
        (_client_error("RegionDisabledException", 403), FailureKind.PERMANENT, "sts_denied"),
        (_client_error("InvalidClientTokenId", 403), FailureKind.PERMANENT, "source_error"),
        (_client_error("SignatureDoesNotMatch", 403), FailureKind.PERMANENT, "source_error"),
        (_client_error("ExpiredToken", 400), FailureKind.SOURCE_EXPIRED, "source_error"),
        (_client_error("Throttling", 400), FailureKind.TRANSIENT, "sts_unavailable"),
        (_client_error("RequestLimitExceeded", 400), FailureKind.TRANSIENT, "sts_unavailable"),
        (_client_error("SlowDown", 429), FailureKind.TRANSIENT, "sts_unavailable"),
        (_client_error("InternalFailure", 500), FailureKind.TRANSIENT, "sts_unavailable"),
        (_client_error("503", 503), FailureKind.TRANSIENT, "sts_unavailable"),
        (
            EndpointConnectionError(endpoint_url="https://sts.example"),
            FailureKind.TRANSIENT,
            "sts_unavailable",
        ),
        (ConnectTimeoutError(endpoint_url="https://sts.example"), FailureKind.TRANSIENT, "sts_unavailable"),
        (ReadTimeoutError(endpoint_url="https://sts.example"), FailureKind.TRANSIENT, "timeout"),
        (ResponseParserError("<html>"), FailureKind.TRANSIENT, "sts_unavailable"),
    ],
)
def test_sts_errors_are_classified_by_what_helps(error: Exception, kind: FailureKind, code: str) -> None:
    failure = classify(error, action=f"AssumeRole {ROLE_ARN}")

    assert (failure.kind, failure.error_code) == (kind, code)
    assert failure.message.startswith(f"AssumeRole {ROLE_ARN}")
    assert "\n" not in failure.message


def test_access_denied_message_says_what_to_check() -> None:
    failure = classify(_client_error("AccessDenied", 403), action=f"AssumeRole {ROLE_ARN}")

    assert failure.message == (
        f"AssumeRole {ROLE_ARN} denied: AccessDenied: AccessDenied said across lines "
        "(check external_id and the role's trust policy)"
    )


# -- instance metadata and role chaining ------------------------------------------------------------


def test_instance_metadata_source_is_read_with_imdsv2(imds: ImdsStub, local_aws: LocalAws) -> None:
    # The stub really requires the token: a plain GET is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(imds.endpoint + "latest/meta-data/iam/security-credentials/", timeout=5)
    assert refused.value.code == 401
    request = role_request(
        source=SourceSpec(credential_source="Ec2InstanceMetadata"),
        external_id=None,
        role_arn=APP_ROLE_ARN,
        session_name="app",
    )

    async def scenario() -> RoleSession:
        async with harness() as h:
            return await h.manager.credentials(request)

    session = run(scenario())

    assert caller_arn(local_aws, session) == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/ec2-app/app"
    assert imds.token_requests >= 1
    assert imds.credential_reads >= 1
    assert imds.unauthorized == 1  # only our own probe above


def test_chained_source_caps_duration_at_one_hour_with_a_note(imds: ImdsStub) -> None:
    request = role_request(
        source=SourceSpec(credential_source="Ec2InstanceMetadata"),
        external_id=None,
        role_arn=APP_ROLE_ARN,
        duration_seconds=7200,
    )

    async def scenario() -> tuple[RoleSession, FakeClock]:
        async with harness() as h:
            return await h.manager.credentials(request), h.clock

    session, clock = run(scenario())

    assert session.capped_note == "role chaining caps sessions at 1 h; asked 7200 s"
    assert session.expires_at is not None and session.credentials is not None
    assert session.expires_at - clock.wall() <= timedelta(seconds=3600)
    # What STS itself granted (its own clock): one hour, not two.
    granted = session.credentials.expiration - clock.wall()
    assert timedelta(seconds=3500) < granted < timedelta(seconds=3660)


# -- secrets ----------------------------------------------------------------------------------------


def test_secret_never_shows_its_value(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("wJalrXUtnFEMI/K7MDENG")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("stsd.test").info("secret is %s / %r", secret, secret)

    shown = [repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", "{}".format(secret), caplog.text]  # noqa: UP032
    assert all("wJalr" not in text for text in shown)
    assert secret.reveal() == "wJalrXUtnFEMI/K7MDENG"
    with pytest.raises(TypeError):
        pickle.dumps(secret)  # nor can it be written out by accident


def test_sessions_and_logs_never_show_secrets(
    world_env: Any, local_aws: LocalAws, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="stsd")

    async def scenario() -> RoleSession:
        async with harness() as h:
            session = await h.manager.credentials(role_request())
            with pytest.raises(Refusal):
                await h.manager.credentials(role_request(external_id="wrong-id"))
            return session

    session = run(scenario())

    assert session.credentials is not None and local_aws.alice is not None
    secrets = [
        session.credentials.secret_access_key.reveal(),
        session.credentials.session_token.reveal(),
        local_aws.alice.secret_access_key,
    ]
    for text in (repr(session), str(session.credentials), caplog.text):
        for secret in secrets:
            assert secret not in text
