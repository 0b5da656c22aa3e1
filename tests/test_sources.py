"""Source credentials as botocore resolves them, against the real local STS (IAM enforcement on)."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from imds_stub import CONTAINER_PATH, INSTANCE_ID, INSTANCE_ROLE_NAME, ImdsStub, running_imds

from stsd.daemon.config import DaemonConfig
from stsd.daemon.sources import SourceError, SourceRegistry, SourceSpec
from stsd.demo.local_aws import ACCOUNT_ID, ROLE_ARN, ROLE_NAME, USER_ARN, LocalAws

CONFIG = DaemonConfig(role_session_name="stsd-test")


@pytest.fixture
def registry(world_env: Any) -> SourceRegistry:
    return SourceRegistry(CONFIG)


@pytest.fixture
def imds(world_env: Any, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImdsStub]:
    with running_imds(local_aws, monkeypatch) as stub:
        yield stub


def append(world: Any, file: str, text: str) -> None:
    path = world.home / ".aws" / file
    path.write_text(path.read_text() + "\n" + text)


def alice_keys(aws: LocalAws) -> tuple[str, str]:
    assert aws.alice is not None
    return aws.alice.access_key_id, aws.alice.secret_access_key


def test_static_keys_profile_is_described_with_its_identity(registry: SourceRegistry) -> None:
    source = registry.credentials(SourceSpec(profile="alice"))
    identity = registry.identify(SourceSpec(profile="alice"))

    assert source.kind == "static-keys"
    assert not source.temporary
    assert identity == USER_ARN
    (status,) = registry.statuses()
    assert (status.name, status.kind, status.identity_arn, status.error, status.temporary) == (
        "profile alice",
        "static-keys",
        USER_ARN,
        None,
        False,
    )


def test_source_profile_with_static_keys_uses_them_even_with_a_role(
    registry: SourceRegistry, world_env: Any, local_aws: LocalAws
) -> None:
    key, secret = alice_keys(local_aws)
    append(
        world_env, "credentials", f"[keyed]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )
    append(
        world_env,
        "config",
        f"[profile keyed]\nrole_arn = {ROLE_ARN}\nsource_profile = alice\nexternal_id = alice\n",
    )

    source = registry.credentials(SourceSpec(profile="keyed"))

    assert source.kind == "static-keys"
    assert registry.identify(SourceSpec(profile="keyed")) == USER_ARN


def test_role_profile_as_source_is_assumed_by_botocore_and_temporary(registry: SourceRegistry) -> None:
    spec = SourceSpec(profile=ROLE_NAME)

    source = registry.credentials(spec)

    assert source.kind == "assume-role"
    assert source.temporary
    assert (registry.identify(spec) or "").startswith(f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/")


def test_credential_process_profile_is_a_process_source(
    registry: SourceRegistry, world_env: Any, local_aws: LocalAws
) -> None:
    key, secret = alice_keys(local_aws)
    document = json.dumps({"Version": 1, "AccessKeyId": key, "SecretAccessKey": secret})
    script = world_env.home / "print-keys.py"
    script.write_text(f"print({document!r})\n")
    append(
        world_env, "config", f"[profile proc]\ncredential_process = {shlex.quote(sys.executable)} {script}\n"
    )

    source = registry.credentials(SourceSpec(profile="proc"))

    assert source.kind == "process"
    assert registry.identify(SourceSpec(profile="proc")) == USER_ARN


def test_environment_credential_source(
    registry: SourceRegistry, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = alice_keys(local_aws)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)

    source = registry.credentials(SourceSpec(credential_source="Environment"))

    assert source.kind == "environment"
    assert registry.identify(SourceSpec(credential_source="Environment")) == USER_ARN


def test_instance_metadata_source_is_temporary(registry: SourceRegistry, imds: ImdsStub) -> None:
    spec = SourceSpec(credential_source="Ec2InstanceMetadata")

    source = registry.credentials(spec)

    assert source.kind == "instance-metadata"
    assert source.temporary
    assert (
        registry.identify(spec)
        == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{INSTANCE_ROLE_NAME}/{INSTANCE_ID}"
    )
    assert imds.token_requests >= 1 and imds.unauthorized == 0


def test_profile_without_credentials_does_not_fall_through_to_instance_metadata(
    registry: SourceRegistry, world_env: Any, imds: ImdsStub
) -> None:
    append(world_env, "config", "[profile bare]\nregion = eu-west-1\n")

    with pytest.raises(SourceError) as raised:
        registry.credentials(SourceSpec(profile="bare"))

    assert not raised.value.transient
    assert imds.credential_reads == 0


def test_unknown_profile_is_a_permanent_source_error_shown_in_status(registry: SourceRegistry) -> None:
    with pytest.raises(SourceError) as raised:
        registry.credentials(SourceSpec(profile="ghost"))

    assert not raised.value.transient
    assert "ghost" in raised.value.message
    (status,) = registry.statuses()
    assert status.name == "profile ghost" and status.error is not None and status.kind is None


def test_fixed_keys_are_picked_up_without_restart(
    registry: SourceRegistry, world_env: Any, local_aws: LocalAws
) -> None:
    key, secret = alice_keys(local_aws)
    credentials = world_env.home / ".aws" / "credentials"
    original = credentials.read_text()
    credentials.write_text(original + f"\n[typo]\naws_access_key_id = {key}\naws_secret_access_key = wrong\n")
    spec = SourceSpec(profile="typo")

    assert registry.identify(spec) is None
    (broken,) = registry.statuses()
    assert broken.error is not None and "SignatureDoesNotMatch" in broken.error

    credentials.write_text(
        original + f"\n[typo]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )

    assert registry.identify(spec) == USER_ARN
    (fixed,) = registry.statuses()
    assert fixed.error is None


def test_status_never_shows_secrets(registry: SourceRegistry, local_aws: LocalAws) -> None:
    _, secret = alice_keys(local_aws)
    source = registry.credentials(SourceSpec(profile="alice"))
    registry.identify(SourceSpec(profile="alice"))

    assert secret not in repr(registry.statuses())
    assert secret not in repr(source)
    assert source.secret_access_key.reveal() == secret


def test_unreachable_instance_metadata_is_a_transient_source_error(
    registry: SourceRegistry, imds: ImdsStub
) -> None:
    imds.stop()

    with pytest.raises(SourceError) as raised:
        registry.credentials(SourceSpec(credential_source="Ec2InstanceMetadata"))

    assert raised.value.transient


def test_aws_file_locations_come_from_the_environment(
    registry: SourceRegistry, world_env: Any, local_aws: LocalAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, secret = alice_keys(local_aws)
    elsewhere = world_env.home / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "creds").write_text(
        f"[moved]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )
    (elsewhere / "conf").write_text("[profile moved]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(elsewhere / "creds"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(elsewhere / "conf"))

    assert registry.identify(SourceSpec(profile="moved")) == USER_ARN
    with pytest.raises(SourceError):
        registry.credentials(SourceSpec(profile="alice"))  # ~/.aws/credentials is no longer read


def test_container_credential_source(
    registry: SourceRegistry, imds: ImdsStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", imds.endpoint.rstrip("/") + CONTAINER_PATH)
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", imds.container_token)
    spec = SourceSpec(credential_source="EcsContainer")

    source = registry.credentials(spec)

    assert source.kind == "container"
    assert source.temporary
    assert (
        registry.identify(spec)
        == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{INSTANCE_ROLE_NAME}/{INSTANCE_ID}"
    )
