"""Source credentials revoked (InvalidClientTokenId) or expired (ExpiredToken) mid-day: status shows it,
a shell gets one clear line, STS is not asked again and again, and fixing the credentials file heals it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import Daemon, World, ask_daemon
from faultproxy import FaultProxy
from mfa_stub import second_access_key

from stsd.demo.local_aws import USER_NAME, AliceKeys, LocalAws

ASKS = 20


@pytest.fixture
def spare_key(local_aws: LocalAws) -> Iterator[AliceKeys]:
    """A second access key for alice that the test may revoke (the shared first key must survive)."""
    with second_access_key(local_aws) as key:
        yield key


def _use_key(world: World, key_id: str, secret: str) -> None:
    (world.home / ".aws" / "credentials").write_text(
        f"[{USER_NAME}]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )


def _projects(world: World) -> tuple[str, str]:
    """Two allowed projects on the same role with distinct sessions: one fetched before the fault, one after."""
    early = world.project("early", 'profile = "alice-sts"\nrole_session_name = "early"\n')
    late = world.project("late", 'profile = "alice-sts"\nrole_session_name = "late"\n')
    for project in (early, late):
        world.stsd("allow", str(project), check=True)
    return str(early), str(late)


def _assert_one_clear_failure_and_no_storm(
    world: World, proxy: FaultProxy, late: str, words: tuple[str, ...]
) -> None:
    before = proxy.count("AssumeRole")
    shell = world.stsd("env", "--json", late)
    assert shell.returncode != 0 and shell.stdout == ""
    [line] = shell.stderr.strip().splitlines()
    assert any(word in line for word in words), line

    replies = ask_daemon(world.socket, *[{"op": "env", "dir": late}] * ASKS)
    assert {reply["error"]["code"] for reply in replies} == {"source_error"}
    assert proxy.count("AssumeRole") - before <= 1, (
        "a permanent source failure must not be retried per request"
    )

    status = json.loads(world.stsd("status", "--json", check=True).stdout)
    errors = [s["last_error"] for s in status["sessions"] if s["session_name"] == "late"]
    assert errors and errors[0] and any(word in errors[0] for word in words), status["sessions"]
    text = world.stsd("status", check=True).stdout
    assert any(word in text for word in words), text


def test_revoked_source_key_is_reported_once_clearly_and_healed_by_fixing_the_file(
    world: World, proxy: FaultProxy, spare_key: AliceKeys, local_aws: LocalAws
) -> None:
    _use_key(world, spare_key.access_key_id, spare_key.secret_access_key)
    daemon = Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint})
    try:
        early, late = _projects(world)
        held = json.loads(world.stsd("env", "--json", early, check=True).stdout)

        with local_aws.unenforced():
            local_aws.client("iam").delete_access_key(UserName=USER_NAME, AccessKeyId=spare_key.access_key_id)

        _assert_one_clear_failure_and_no_storm(
            world, proxy, late, ("InvalidClientTokenId", "unknown or deactivated")
        )
        # The session fetched before the revocation stays valid until it expires: still served.
        still = json.loads(world.stsd("env", "--json", early, check=True).stdout)
        assert still["AWS_ACCESS_KEY_ID"] == held["AWS_ACCESS_KEY_ID"]

        assert local_aws.alice is not None
        _use_key(world, local_aws.alice.access_key_id, local_aws.alice.secret_access_key)
        healed = world.stsd("env", "--json", late)
        assert healed.returncode == 0, healed.stderr
        assert json.loads(healed.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    finally:
        daemon.stop()


def test_expired_source_session_is_reported_once_clearly(
    world: World, proxy: FaultProxy, proxied_daemon: Daemon
) -> None:
    early, late = _projects(world)
    world.stsd("env", "--json", early, check=True)
    proxy.set_mode("error", actions={"AssumeRole"}, error_code="ExpiredToken", error_status=400)
    _assert_one_clear_failure_and_no_storm(world, proxy, late, ("ExpiredToken", "expired"))
    assert world.stsd("env", "--json", early).returncode == 0
