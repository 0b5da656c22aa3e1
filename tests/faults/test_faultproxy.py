"""The fault proxy itself, against the local STS: each mode looks to botocore as the real fault would."""

from __future__ import annotations

from collections.abc import Iterator

import botocore.config
import botocore.exceptions
import botocore.parsers
import pytest
from faultproxy import FaultProxy

from stsd.demo.local_aws import EXTERNAL_ID, REGION, ROLE_ARN, LocalAws


@pytest.fixture
def proxy(local_aws: LocalAws) -> Iterator[FaultProxy]:
    with FaultProxy(local_aws.endpoint, slow_seconds=5) as p:
        yield p


def _sts(local_aws: LocalAws, proxy: FaultProxy):  # type: ignore[no-untyped-def]
    import boto3

    assert local_aws.alice is not None
    return boto3.client(
        "sts",
        endpoint_url=proxy.endpoint,
        region_name=REGION,
        aws_access_key_id=local_aws.alice.access_key_id,
        aws_secret_access_key=local_aws.alice.secret_access_key,
        # One attempt and short timeouts, so each fault shows as exactly one request.
        config=botocore.config.Config(retries={"total_max_attempts": 1}, read_timeout=1, connect_timeout=1),
    )


def _assume(client):  # type: ignore[no-untyped-def]
    return client.assume_role(RoleArn=ROLE_ARN, RoleSessionName="proxy-test", ExternalId=EXTERNAL_ID)


def test_pass_forwards_signed_requests_and_counts_them(local_aws: LocalAws, proxy: FaultProxy) -> None:
    reply = _assume(_sts(local_aws, proxy))
    assert reply["Credentials"]["AccessKeyId"].startswith("ASIA")
    assert proxy.count("AssumeRole") == 1


def test_down_refuses_connections_and_comes_back_on_the_same_port(
    local_aws: LocalAws, proxy: FaultProxy
) -> None:
    client = _sts(local_aws, proxy)
    port = proxy.port
    proxy.set_mode("down")
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        _assume(client)
    proxy.set_mode("pass")
    assert proxy.port == port
    assert _assume(client)["Credentials"]["AccessKeyId"].startswith("ASIA")


@pytest.mark.parametrize(
    ("kind", "expected"), [("400", "Throttling"), ("429", "TooManyRequestsException"), ("503", "503")]
)
def test_throttle_answers_like_a_throttled_sts(
    local_aws: LocalAws, proxy: FaultProxy, kind: str, expected: str
) -> None:
    proxy.set_mode("throttle", throttle_kind=kind)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        _assume(_sts(local_aws, proxy))
    assert raised.value.response["Error"]["Code"] == expected
    assert proxy.count("AssumeRole") == 1


def test_garbage_is_not_parseable(local_aws: LocalAws, proxy: FaultProxy) -> None:
    proxy.set_mode("garbage")
    with pytest.raises(botocore.parsers.ResponseParserError):
        _assume(_sts(local_aws, proxy))


def test_slow_exceeds_the_client_read_timeout(local_aws: LocalAws, proxy: FaultProxy) -> None:
    proxy.set_mode("slow")
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        _assume(_sts(local_aws, proxy))


def test_error_mode_returns_the_chosen_code_only_for_chosen_actions(
    local_aws: LocalAws, proxy: FaultProxy
) -> None:
    client = _sts(local_aws, proxy)
    proxy.set_mode("error", actions={"AssumeRole"}, error_code="ExpiredToken")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        _assume(client)
    assert raised.value.response["Error"]["Code"] == "ExpiredToken"
    assert client.get_caller_identity()["Arn"].endswith(":user/alice")
    assert [c.mode for c in proxy.calls()] == ["error", "pass"]
