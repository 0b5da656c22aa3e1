"""The daemon's STS calls follow the endpoint and CA settings of ~/.aws/config as the AWS CLI does for the
source profile (`endpoint_url`, `[services]` sections, `ca_bundle`, AWS_CA_BUNDLE), with no
AWS_ENDPOINT_URL in the daemon's environment. A real `stsd serve`, the local STS (moto, IAM enforcement
on) reached only through a FaultProxy on a port of its own, which counts what arrives there; plain HTTP,
or HTTPS with a self-signed certificate made by the openssl command line."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Daemon, World, caller_arn
from faultproxy import FaultProxy
from test_cli_commands import ROLE_PROJECT

from stsd.demo.local_aws import (
    ACCOUNT_ID,
    EXTERNAL_ID,
    REGION,
    ROLE_ARN,
    ROLE_NAME,
    USER_ARN,
    USER_NAME,
    free_port,
)

ASSUMED_ROLE = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/s3-access"
PROJECT = ROLE_PROJECT


@pytest.fixture
def aws_config_world(world: World) -> World:
    """The world without AWS_ENDPOINT_URL or AWS_CA_BUNDLE: where STS is, and which certificate it has,
    come from ~/.aws/config alone. Should the daemon
    ignore that file, its calls go to AWS's own HTTPS endpoints, and those only through a proxy that is
    not listening: nothing leaves the machine, and the test fails."""
    del world.env["AWS_ENDPOINT_URL"]
    # A CA bundle of the machine's (some set AWS_CA_BUNDLE globally) would beat ca_bundle in the profile.
    world.env.pop("AWS_CA_BUNDLE", None)
    world.env.update(
        HTTPS_PROXY=f"http://127.0.0.1:{free_port()}",
        HTTP_PROXY=f"http://127.0.0.1:{free_port()}",
        NO_PROXY="127.0.0.1,localhost",
    )
    return world


@pytest.fixture
def sts_proxy(aws_config_world: World) -> Iterator[FaultProxy]:
    with FaultProxy(aws_config_world.aws.endpoint) as proxy:
        yield proxy


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (key next to it), as a local HTTPS endpoint would have."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "sts-cert.pem", tmp_path / "sts-key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert


@pytest.fixture
def tls_proxy(aws_config_world: World, certificate: Path) -> Iterator[FaultProxy]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_name("sts-key.pem"))
    with FaultProxy(aws_config_world.aws.endpoint, tls=context) as proxy:
        yield proxy


def write_config(world: World, *, alice: str = "", extra: str = "") -> None:
    """~/.aws/config as local_aws writes it, with `alice` lines added to the source profile."""
    (world.home / ".aws" / "config").write_text(
        f"[profile {USER_NAME}]\nregion = {REGION}\n{alice}\n"
        f"[profile {ROLE_NAME}]\nrole_arn = {ROLE_ARN}\nsource_profile = {USER_NAME}\n"
        f"external_id = {EXTERNAL_ID}\nrole_session_name = s3-access\nregion = {REGION}\n\n{extra}"
    )


def allowed_project(world: World, name: str = "proj") -> Path:
    return world.allowed(name, PROJECT)


def status_json(world: World, directory: Path) -> dict:
    result = world.stsd("status", "--json", cwd=directory)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def source_identity(world: World, directory: Path) -> str | None:
    """The source's identity as status shows it, once the background lookup has answered."""
    for _ in range(200):
        sources = status_json(world, directory)["sources"]
        if sources and (sources[0]["identity_arn"] or sources[0]["error"]):
            return sources[0]["identity_arn"] or sources[0]["error"]
        threading.Event().wait(0.05)
    return None


def assert_served_through(world: World, proxy: FaultProxy, directory: Path) -> None:
    """env and status work end to end, and the AssumeRole went to `proxy`, nowhere else."""
    daemon = Daemon(world)
    try:
        variables = world.env_json(directory)
        assert caller_arn(world.aws.endpoint, variables) == ASSUMED_ROLE
        assert proxy.count("AssumeRole") == 1
        [session] = status_json(world, directory)["sessions"]
        assert session["assumed_role_arn"] == ASSUMED_ROLE
        assert session["last_error"] is None
        text = world.stsd("status", cwd=directory)
        assert text.returncode == 0 and ASSUMED_ROLE in text.stdout, text.stdout
        # The source's identity (GetCallerIdentity, looked up in the background) went there too.
        assert source_identity(world, directory) == USER_ARN
        assert proxy.count("GetCallerIdentity") == 1
    finally:
        daemon.stop()
    assert "Traceback" not in daemon.log


# -- (a) endpoint_url in the source profile ----------------------------------------------------------------


def test_endpoint_url_in_the_source_profile_routes_assume_role(
    aws_config_world: World, sts_proxy: FaultProxy
) -> None:
    world = aws_config_world
    write_config(world, alice=f"endpoint_url = {sts_proxy.endpoint}\n")

    assert_served_through(world, sts_proxy, allowed_project(world))


@pytest.mark.parametrize(
    "alice, extra",
    [
        pytest.param("", "[profile elsewhere]\nendpoint_url = {endpoint}\n", id="another-profile"),
        pytest.param("endpoint_url = {endpoint}\nignore_configured_endpoint_urls = true\n", "", id="ignored"),
    ],
)
def test_endpoint_url_applies_only_to_its_profile_and_only_unless_ignored(
    aws_config_world: World, sts_proxy: FaultProxy, alice: str, extra: str
) -> None:
    """The source profile's settings, not another profile's; and none when the profile says to ignore
    configured endpoints: the daemon's AssumeRole from alice then goes to AWS (here: the dead proxy)."""
    world = aws_config_world
    endpoint = sts_proxy.endpoint
    write_config(world, alice=alice.format(endpoint=endpoint), extra=extra.format(endpoint=endpoint))
    directory = allowed_project(world)
    daemon = Daemon(world)
    try:
        result = world.stsd("env", "--json", str(directory))
    finally:
        daemon.stop()

    assert result.returncode != 0
    assert f"AssumeRole {ROLE_ARN}: STS unreachable" in result.stderr, result.stderr
    assert sts_proxy.count() == 0


# -- (b) a [services] section --------------------------------------------------------------------------------


def test_services_section_with_an_sts_endpoint_routes_assume_role(
    aws_config_world: World, sts_proxy: FaultProxy
) -> None:
    world = aws_config_world
    write_config(
        world,
        alice="services = local-sts\n",
        extra=f"[services local-sts]\nsts =\n  endpoint_url = {sts_proxy.endpoint}\n",
    )

    assert_served_through(world, sts_proxy, allowed_project(world))


# -- (c) a local HTTPS endpoint with a self-signed certificate ------------------------------------------------


def test_untrusted_certificate_is_one_clear_line_then_ca_bundle_in_the_profile_fixes_it(
    aws_config_world: World, tls_proxy: FaultProxy, certificate: Path
) -> None:
    world = aws_config_world
    write_config(world, alice=f"endpoint_url = {tls_proxy.endpoint}\n")
    directory = allowed_project(world)
    daemon = Daemon(world)
    try:
        refused = world.stsd("env", "--json", str(directory))
        [session] = status_json(world, directory)["sessions"]

        write_config(world, alice=f"endpoint_url = {tls_proxy.endpoint}\nca_bundle = {certificate}\n")
        variables = world.env_json(directory)
    finally:
        daemon.stop()

    assert refused.returncode != 0 and refused.stdout == ""
    line = refused.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert f"AssumeRole {ROLE_ARN}: STS's certificate is not trusted" in line, line
    assert "set ca_bundle in the AWS config profile, or AWS_CA_BUNDLE for the daemon" in line
    assert "certificate is not trusted" in session["last_error"]
    assert caller_arn(world.aws.endpoint, variables) == ASSUMED_ROLE
    assert tls_proxy.count("AssumeRole") == 1  # the refused handshake never got as far as a request
    assert "Traceback" not in daemon.log


def test_aws_ca_bundle_of_the_daemon_trusts_the_local_https_endpoint(
    aws_config_world: World, tls_proxy: FaultProxy, certificate: Path
) -> None:
    world = aws_config_world
    write_config(world, alice=f"endpoint_url = {tls_proxy.endpoint}\n")
    world.env["AWS_CA_BUNDLE"] = str(certificate)

    assert_served_through(world, tls_proxy, allowed_project(world))


# -- (d) an edit is picked up without a restart ----------------------------------------------------------------


def test_edited_endpoint_url_is_used_from_the_next_call_without_a_restart(
    aws_config_world: World, sts_proxy: FaultProxy
) -> None:
    world = aws_config_world
    write_config(world, alice=f"endpoint_url = {sts_proxy.endpoint}\n")
    directory = allowed_project(world)
    with FaultProxy(world.aws.endpoint) as moved:
        daemon = Daemon(world)
        try:
            first = world.env_json(directory)
            write_config(world, alice=f"endpoint_url = {moved.endpoint}\n")
            renewed = world.stsd("renew", "--dir", str(directory))
            second = world.env_json(directory)
        finally:
            daemon.stop()

        assert renewed.returncode == 0, renewed.stderr
        assert second["AWS_ACCESS_KEY_ID"] != first["AWS_ACCESS_KEY_ID"]
        assert caller_arn(world.aws.endpoint, second) == ASSUMED_ROLE
        assert sts_proxy.count("AssumeRole") == 1
        assert moved.count("AssumeRole") == 1


# -- which profile's settings: the source's; a credential_source's role profile ---------------------------


def test_get_session_token_of_a_profile_with_keys_goes_to_its_endpoint_url(
    aws_config_world: World, sts_proxy: FaultProxy
) -> None:
    """The proxy's count shows where the call went. The scenario gives alice AssumeRole only, so the
    local STS refuses it, unless a test run before this one (MFA) has allowed it: either answer is its."""
    world = aws_config_world
    write_config(world, alice=f"endpoint_url = {sts_proxy.endpoint}\n")
    directory = world.project("keys", f'profile = "{USER_NAME}"\n')
    world.stsd("allow", str(directory), check=True)
    daemon = Daemon(world)
    try:
        result = world.stsd("env", "--json", str(directory))
    finally:
        daemon.stop()

    assert sts_proxy.count("GetSessionToken") == 1
    if result.returncode == 0:  # moto's session credentials are fixed ones nothing accepts: not asked
        variables = json.loads(result.stdout)
        assert world.aws.alice is not None
        assert variables["AWS_SESSION_TOKEN"]
        assert variables["AWS_ACCESS_KEY_ID"] != world.aws.alice.access_key_id
    else:
        assert f"{USER_ARN} is not authorized to perform: sts:GetSessionToken" in result.stderr, result.stderr


def test_credential_source_follows_the_role_profile_it_lives_in(
    aws_config_world: World, sts_proxy: FaultProxy
) -> None:
    """A credential_source has no profile of its own: the role profile's endpoint_url applies, as the AWS
    CLI's AssumeRole for `--profile env-role` would use it."""
    world = aws_config_world
    assert world.aws.alice is not None
    write_config(
        world,
        extra=f"[profile env-role]\nrole_arn = {ROLE_ARN}\ncredential_source = Environment\n"
        f"external_id = {EXTERNAL_ID}\nrole_session_name = s3-access\nregion = {REGION}\n"
        f"endpoint_url = {sts_proxy.endpoint}\n",
    )
    directory = world.project("env-role", 'profile = "env-role"\n')
    world.stsd("allow", str(directory), check=True)
    keys = {
        "AWS_ACCESS_KEY_ID": world.aws.alice.access_key_id,
        "AWS_SECRET_ACCESS_KEY": world.aws.alice.secret_access_key,
    }
    daemon = Daemon(world, extra_env=keys)
    try:
        variables = world.env_json(directory)
    finally:
        daemon.stop()

    assert caller_arn(world.aws.endpoint, variables) == ASSUMED_ROLE
    assert sts_proxy.count("AssumeRole") == 1


def test_requests_name_the_profile_whose_sts_settings_apply(world_env: World) -> None:
    from stsd.daemon.config import DaemonConfig
    from stsd.daemon.requests import resolve_profile, resolve_request
    from stsd.project.projectfile import RoleSettings

    write_config(
        world_env,
        extra=f"[profile imds-role]\nrole_arn = {ROLE_ARN}\ncredential_source = Ec2InstanceMetadata\n",
    )
    config = DaemonConfig()
    inline = RoleSettings(role_arn=ROLE_ARN, credential_source="Ec2InstanceMetadata")

    assert resolve_profile(ROLE_NAME, config=config).sts_profile == USER_NAME  # the source profile
    assert resolve_profile(USER_NAME, config=config).sts_profile == USER_NAME  # its own session
    assert resolve_profile("imds-role", config=config).sts_profile == "imds-role"
    assert resolve_request(inline, label="p", config=config).sts_profile is None  # the default profile
