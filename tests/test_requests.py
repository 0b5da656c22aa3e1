"""Building a RoleRequest from a project's settings or a ~/.aws/config role profile (read by botocore)."""

from __future__ import annotations

from typing import Any

import pytest

from stsd.daemon.config import DaemonConfig
from stsd.daemon.requests import RoleRequest, resolve_profile, resolve_request
from stsd.daemon.sources import SourceSpec
from stsd.demo.local_aws import EXTERNAL_ID, REGION, ROLE_ARN, ROLE_NAME
from stsd.project.projectfile import RoleSettings
from stsd.protocol import Refusal

CONFIG = DaemonConfig(region="eu-west-1", role_session_name="stsd-tester@box")
PROJECT = "/home/alice/app/.stsd.toml"


def add_profiles(world: Any, text: str) -> None:
    config = world.home / ".aws" / "config"
    config.write_text(config.read_text() + "\n" + text)


def project_error(settings: RoleSettings) -> Refusal:
    with pytest.raises(Refusal) as raised:
        resolve_request(settings, label=PROJECT, config=CONFIG)
    assert "\n" not in str(raised.value)
    return raised.value


def profile_error(name: str) -> Refusal:
    with pytest.raises(Refusal) as raised:
        resolve_profile(name, config=CONFIG)
    assert "\n" not in str(raised.value)
    return raised.value


def test_role_profile_resolves_to_its_source_and_role(world_env: Any) -> None:
    request = resolve_profile(ROLE_NAME, config=CONFIG)

    assert request == RoleRequest(
        source=SourceSpec(profile="alice"),
        role_arn=ROLE_ARN,
        external_id=EXTERNAL_ID,
        session_name="s3-access",
        duration_seconds=None,
        region=REGION,
    )
    assert request.label == f"profile {ROLE_NAME}"
    assert request.account == "123456789012"


def test_project_keys_override_the_profile_it_names(world_env: Any) -> None:
    settings = RoleSettings(profile=ROLE_NAME, role_session_name="project-x", duration_seconds=1800)

    request = resolve_request(settings, label=PROJECT, config=CONFIG)

    assert request.role_arn == ROLE_ARN
    assert request.external_id == EXTERNAL_ID  # from the profile
    assert request.session_name == "project-x"
    assert request.duration_seconds == 1800
    assert request.label == PROJECT


def test_inline_project_without_region_or_session_name_uses_daemon_defaults(world_env: Any) -> None:
    settings = RoleSettings(role_arn=ROLE_ARN, source_profile="alice", external_id=EXTERNAL_ID)

    request = resolve_request(settings, label=PROJECT, config=CONFIG)

    assert request.source == SourceSpec(profile="alice")
    assert request.region == "eu-west-1"
    assert request.session_name == "stsd-tester@box"


def test_project_source_replaces_the_profile_source(world_env: Any) -> None:
    settings = RoleSettings(profile=ROLE_NAME, credential_source="Ec2InstanceMetadata")

    request = resolve_request(settings, label=PROJECT, config=CONFIG)

    assert request.source == SourceSpec(credential_source="Ec2InstanceMetadata")


def test_requests_differing_only_in_label_are_one_session(world_env: Any) -> None:
    first = resolve_request(RoleSettings(profile=ROLE_NAME), label="/a/.stsd.toml", config=CONFIG)
    second = resolve_request(RoleSettings(profile=ROLE_NAME), label="/b/.stsd.toml", config=CONFIG)

    assert first == second and hash(first) == hash(second)
    assert first != resolve_request(
        RoleSettings(profile=ROLE_NAME, external_id="other"), label="/a", config=CONFIG
    )


def test_duration_from_a_profile_is_read_as_seconds(world_env: Any) -> None:
    add_profiles(
        world_env, f"[profile long]\nrole_arn = {ROLE_ARN}\nsource_profile = alice\nduration_seconds = 7200\n"
    )

    assert resolve_profile("long", config=CONFIG).duration_seconds == 7200


def test_profile_with_static_keys_may_be_its_own_source(world_env: Any) -> None:
    add_profiles(
        world_env,
        f"[profile self]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"
        f"role_arn = {ROLE_ARN}\nsource_profile = self\n",
    )

    assert resolve_profile("self", config=CONFIG).source == SourceSpec(profile="self")


def test_unknown_profile_is_named(world_env: Any) -> None:
    error = profile_error("nope")

    assert error.code == "unknown_profile"
    assert "'nope'" in error.message


def test_profile_without_any_credentials_is_refused(world_env: Any) -> None:
    add_profiles(world_env, "[profile bare]\nregion = eu-west-1\n")

    error = profile_error("bare")

    assert error.code == "unknown_profile"
    assert error.message == (
        "profile bare: profile 'bare' gives no credentials of its own: expected role_arn, access keys, "
        "an SSO account and role (sso_account_id, sso_role_name) or credential_process"
    )


def test_profile_with_keys_and_no_role_is_its_own_session_token(world_env: Any) -> None:
    request = resolve_profile("alice", config=CONFIG)

    assert request == RoleRequest(
        source=SourceSpec(profile="alice", session_token=True),
        role_arn=None,
        external_id=None,
        session_name=None,
        duration_seconds=None,
        region=REGION,
    )
    assert request.account is None
    assert resolve_request(RoleSettings(profile="alice"), label=PROJECT, config=CONFIG) == request


def test_role_keys_next_to_a_keys_only_profile_are_refused(world_env: Any) -> None:
    error = project_error(RoleSettings(profile="alice", external_id="alice"))

    assert error.code == "invalid_project"
    assert error.message == (
        f"{PROJECT}: external_id: applies to a role; profile 'alice' has keys and no role_arn, "
        "so it gets a session of its own"
    )


def test_mfa_serial_makes_the_source_an_mfa_session_wherever_it_is_written(world_env: Any) -> None:
    serial = "arn:aws:iam::123456789012:mfa/alice"
    add_profiles(
        world_env,
        f"[profile with-mfa]\nrole_arn = {ROLE_ARN}\nsource_profile = alice\nmfa_serial = {serial}\n",
    )
    mfa_source = SourceSpec(profile="alice", mfa_serial=serial)

    on_role_profile = resolve_profile("with-mfa", config=CONFIG)
    inline = resolve_request(
        RoleSettings(role_arn=ROLE_ARN, source_profile="alice", mfa_serial=serial),
        label=PROJECT,
        config=CONFIG,
    )
    over_a_profile = resolve_request(
        RoleSettings(profile=ROLE_NAME, mfa_serial=serial), label=PROJECT, config=CONFIG
    )

    assert on_role_profile.source == inline.source == over_a_profile.source == mfa_source
    assert mfa_source.session_token and on_role_profile.mfa_serial == serial
    assert mfa_source.base == SourceSpec(profile="alice")


def test_project_naming_an_unknown_profile_is_reported(world_env: Any) -> None:
    error = project_error(RoleSettings(profile="nope"))

    assert error.code == "unknown_profile"
    assert error.message.startswith(PROJECT)


def test_profile_with_both_sources_is_rejected(world_env: Any) -> None:
    add_profiles(
        world_env,
        f"[profile both]\nrole_arn = {ROLE_ARN}\nsource_profile = alice\ncredential_source = Environment\n",
    )

    error = profile_error("both")

    assert error.code == "unknown_profile"
    assert (
        "profile both: credential_source: expected either source_profile or credential_source"
        in error.message
    )


def test_profile_with_no_source_is_rejected(world_env: Any) -> None:
    add_profiles(world_env, f"[profile sourceless]\nrole_arn = {ROLE_ARN}\n")

    error = profile_error("sourceless")

    assert "source_profile" in error.message


def test_source_profile_cycle_is_rejected(world_env: Any) -> None:
    add_profiles(
        world_env,
        f"[profile ping]\nrole_arn = {ROLE_ARN}\nsource_profile = pong\n\n"
        f"[profile pong]\nrole_arn = {ROLE_ARN}\nsource_profile = ping\n",
    )

    error = profile_error("ping")

    assert "cycle" in error.message
    assert "ping -> pong -> ping" in error.message


def test_missing_source_profile_is_reported_against_the_project(world_env: Any) -> None:
    error = project_error(RoleSettings(role_arn=ROLE_ARN, source_profile="ghost"))

    assert error.code == "invalid_project"
    assert error.message.startswith(f"{PROJECT}: source_profile:")
    assert "'ghost'" in error.message


def test_project_without_role_is_rejected(world_env: Any) -> None:
    error = project_error(RoleSettings(region="eu-west-1"))

    assert error.code == "invalid_project"
    assert "role_arn" in error.message


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"role_arn": "arn:aws:iam::123:role/x"}, "role_arn"),
        ({"role_arn": "arn:aws:iam::123456789012:user/alice"}, "role_arn"),
        ({"role_session_name": "x"}, "role_session_name"),
        ({"role_session_name": "x" * 65}, "role_session_name"),
        ({"role_session_name": "has space"}, "role_session_name"),
        ({"external_id": "a"}, "external_id"),
        ({"external_id": "a" * 1225}, "external_id"),
        ({"duration_seconds": 899}, "duration_seconds"),
        ({"duration_seconds": 43201}, "duration_seconds"),
        ({"region": "Mars"}, "region"),
        ({"credential_source": "Floppy", "source_profile": None}, "credential_source"),
    ],
)
def test_invalid_project_values_name_the_key(world_env: Any, override: dict[str, Any], key: str) -> None:
    values: dict[str, Any] = {"role_arn": ROLE_ARN, "source_profile": "alice", "external_id": EXTERNAL_ID}
    values.update(override)

    error = project_error(RoleSettings(**values))

    assert error.code == "invalid_project"
    assert error.message.startswith(f"{PROJECT}: {key}: expected")


def test_boundary_values_are_accepted(world_env: Any) -> None:
    for duration, session_name, external_id in ((900, "ab", "ab"), (43200, "x" * 64, "e" * 1224)):
        settings = RoleSettings(
            role_arn=ROLE_ARN,
            source_profile="alice",
            duration_seconds=duration,
            role_session_name=session_name,
            external_id=external_id,
        )
        request = resolve_request(settings, label=PROJECT, config=CONFIG)
        assert (request.duration_seconds, request.session_name, request.external_id) == (
            duration,
            session_name,
            external_id,
        )


def test_bad_duration_in_a_profile_blames_the_profile(world_env: Any) -> None:
    add_profiles(
        world_env, f"[profile weird]\nrole_arn = {ROLE_ARN}\nsource_profile = alice\nduration_seconds = 1h\n"
    )

    error = project_error(RoleSettings(profile="weird"))

    assert error.code == "unknown_profile"
    assert error.message.startswith("profile weird: duration_seconds: expected")


def test_unparseable_aws_config_is_one_line(world_env: Any) -> None:
    (world_env.home / ".aws" / "config").write_text("[profile broken\nrole_arn = x\n")

    error = profile_error("broken")

    assert error.code == "unknown_profile"
    assert "cannot read the AWS config" in error.message
