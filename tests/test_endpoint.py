"""The credentials endpoint against a real `stsd serve` and the real local STS: what `stsd env` exports in
each mode, what the endpoint answers, and everything it refuses (wrong or missing token, another Host, a
browser's Origin, another local user with the right URL and token, an edited or denied file)."""

from __future__ import annotations

import http.client
import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import Daemon, World, ask_daemon
from other_user import SYSTEM_PYTHON, as_root, run_as

from stsd.daemon.endpoint import _diag_uid, _proc_address, _proc_uid, peer_uid

ENDPOINT_PROJECT = 'profile = "alice-sts"\ncredentials = "endpoint"\n'
SHORT_ENDPOINT_PROJECT = 'profile = "alice-sts"\ncredentials = "endpoint"\nduration_seconds = 900\n'


@pytest.fixture
def endpoint_daemon(world: World) -> Iterator[Daemon]:
    # Forced renewals once a second: the SDK tests renew several times within one process's life.
    world.write_config("forced_renewal_interval_seconds = 1\n")
    with Daemon(world) as daemon:
        yield daemon


def endpoint_of(world: World, body: str = ENDPOINT_PROJECT) -> tuple[Path, str, str]:
    """A trusted project in endpoint mode: its directory, and the URL and token `stsd env` gives for it."""
    directory = world.allowed("p", body)
    variables = world.env_json(directory)
    return (
        directory,
        variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"],
        variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
    )


def applied(world: World, variables: dict[str, Any]) -> dict[str, str]:
    environment = dict(world.env)
    for name, value in variables.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    return environment


def get(
    url: str,
    token: str | None,
    *,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest(method, parts.path, skip_host=True)
        connection.putheader("Host", host or parts.netloc)
        if token is not None:
            connection.putheader("Authorization", token)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- what the shell gets ----------------------------------------------------------------------------------


def test_endpoint_mode_exports_the_url_and_token_and_unsets_keys_and_profiles(
    world: World, endpoint_daemon: Daemon
) -> None:
    directory = world.allowed("p", ENDPOINT_PROJECT)
    variables = world.env_json(directory)
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    assert url.startswith("http://127.0.0.1:") and url.endswith("/credentials")
    assert len(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]) >= 43  # 256 bits, base64url
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ):
        assert variables[name] is None, name
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == "us-east-1"
    assert variables["STSD_PROFILE"] == "alice-sts"


def test_env_mode_clears_container_variables(world: World, endpoint_daemon: Daemon) -> None:
    directory = world.allowed("p", 'profile = "alice-sts"\n')
    variables = world.env_json(directory)
    assert variables["AWS_ACCESS_KEY_ID"]
    for name in (
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ):
        assert variables[name] is None, name


def test_exec_endpoint_overrides_an_env_mode_project(world: World, endpoint_daemon: Daemon) -> None:
    directory = world.allowed("p", 'profile = "alice-sts"\n')
    result = world.stsd(
        "exec", "--endpoint", "--dir", str(directory), "--", sys.executable, "-c",
        "import os, json; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('AWS_')}))",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in seen and "AWS_CONTAINER_AUTHORIZATION_TOKEN" in seen
    assert "AWS_ACCESS_KEY_ID" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen


def test_credentials_mode_is_validated_strictly(world: World, endpoint_daemon: Daemon) -> None:
    directory = world.project("p", 'profile = "alice-sts"\ncredentials = "endpionts"\n')
    result = world.stsd("allow", str(directory))
    assert result.returncode != 0
    assert ':2: credentials: expected "env" or "endpoint", got "endpionts"' in result.stderr


def test_daemon_config_sets_the_default_mode(world: World) -> None:
    world.write_config('credentials = "endpoint"\n')
    with Daemon(world):
        directory = world.allowed("p", 'profile = "alice-sts"\n')
        assert world.env_json(directory)["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        # A project that says env keeps env.
        other = world.allowed("q", 'profile = "alice-sts"\ncredentials = "env"\n')
        assert world.env_json(other)["AWS_ACCESS_KEY_ID"]
    world.write_config('credentials = "both"\n')
    result = world.stsd("serve")
    assert result.returncode == 2
    assert 'credentials: expected "env" or "endpoint"' in result.stderr


# -- what the endpoint answers ----------------------------------------------------------------------------


def test_endpoint_answers_the_daemons_current_session(world: World, endpoint_daemon: Daemon) -> None:
    directory, url, token = endpoint_of(world)
    status, body = get(url, token)
    assert status == 200, body
    assert set(body) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration", "RoleArn"}
    assert body["Expiration"].endswith("Z") and body["RoleArn"].endswith(":role/alice-sts")
    [renewed] = ask_daemon(world.socket, {"op": "renew", "dir": str(directory)})
    assert renewed["ok"], renewed
    status, after = get(url, token)
    assert status == 200 and after["AccessKeyId"] != body["AccessKeyId"]


@pytest.mark.parametrize(
    ("token", "host", "headers", "method", "status", "code"),
    [
        (None, None, {}, "GET", 401, "unauthorized"),
        ("wrong", None, {}, "GET", 401, "unauthorized"),
        ("RIGHT", "evil.example:80", {}, "GET", 400, "bad_host"),
        ("RIGHT", None, {"Origin": "http://evil.example"}, "GET", 403, "browser_refused"),
        ("RIGHT", None, {}, "POST", 405, "method_not_allowed"),
    ],
    ids=["missing-token", "wrong-token", "wrong-host", "origin", "post"],
)
def test_endpoint_refuses(
    world: World, endpoint_daemon: Daemon, token: str | None, host: str | None, headers: dict, method: str, status: int, code: str
) -> None:  # fmt: skip
    directory = world.allowed("p", ENDPOINT_PROJECT)
    variables = world.env_json(directory)
    url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
    if token == "RIGHT":
        token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    got, body = get(url, token, host=host, headers=headers, method=method)
    assert (got, body["code"]) == (status, code)
    assert "AccessKeyId" not in body and "\n" not in body["message"]


def test_editing_or_denying_the_file_revokes_its_token_with_a_message_naming_the_fix(
    world: World, endpoint_daemon: Daemon
) -> None:
    directory, url, token = endpoint_of(world)
    assert get(url, token)[0] == 200
    (directory / ".stsd.toml").write_text(ENDPOINT_PROJECT + 'region = "us-east-2"\n')
    status, body = get(url, token)
    assert status == 403 and body["code"] == "untrusted"
    assert "stsd allow" in body["message"] and "start the process again" in body["message"]
    # Allowing the edited file does not bring the old token back: it was bound to the old content.
    assert world.stsd("allow", str(directory)).returncode == 0
    status, body = get(url, token)
    assert status == 403 and body["code"] == "untrusted"  # every later request is told why
    fresh = world.env_json(directory)["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    assert fresh != token and get(url, fresh)[0] == 200
    assert world.stsd("deny", str(directory)).returncode == 0
    for _ in range(2):
        status, body = get(url, fresh)
        assert status == 403 and body["code"] == "denied" and "stsd allow" in body["message"]


def test_stsd_stop_revokes_every_token(world: World) -> None:
    started = world.stsd("start", timeout=60)
    assert started.returncode == 0, started.stderr
    directory, url, token = endpoint_of(world)
    assert get(url, token)[0] == 200
    assert world.stsd("stop").returncode == 0
    with pytest.raises(OSError):
        get(url, token)
    with Daemon(world):
        new = world.env_json(directory)
        status, body = get(new["AWS_CONTAINER_CREDENTIALS_FULL_URI"], token)
        assert (status, body["code"]) == (401, "unauthorized")


def test_a_brief_restart_keeps_serving_the_same_url_and_token(world: World, endpoint_daemon: Daemon) -> None:
    """systemctl restart, an upgrade, a crash: processes started before keep their URL and token, so
    credentials they still hold never turn into a failed call at their next refresh."""
    directory, url, token = endpoint_of(world)
    endpoint_daemon.stop()  # SIGTERM, as systemd sends it
    with Daemon(world):
        status, body = get(url, token)
        assert status == 200, body
        assert world.env_json(directory)["AWS_CONTAINER_AUTHORIZATION_TOKEN"] == token


def test_token_file_mode_writes_a_private_file_without_newline(world: World) -> None:
    world.write_config("endpoint_token_file = true\n")
    with Daemon(world):
        directory = world.allowed("p", ENDPOINT_PROJECT)
        variables = world.env_json(directory)
        assert variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"] is None
        path = Path(variables["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"])
        assert path.stat().st_mode & 0o777 == 0o600
        token = path.read_text()
        assert "\n" not in token and len(token) >= 43
        assert get(variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"], token)[0] == 200
    assert path.exists()  # kept for a brief restart
    assert world.stsd("stop").returncode == 0  # no daemon runs: stop still revokes what was saved
    assert not path.exists()


def test_two_hundred_concurrent_requests_are_served(world: World, endpoint_daemon: Daemon) -> None:
    _, url, token = endpoint_of(world)
    results: list[int] = []
    barrier = threading.Barrier(200)

    def one() -> None:
        barrier.wait()
        results.append(get(url, token)[0])

    threads = [threading.Thread(target=one) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [200] * 200


def test_status_shows_the_endpoint(world: World, endpoint_daemon: Daemon) -> None:
    directory = world.allowed("p", ENDPOINT_PROJECT)
    world.env_json(directory)
    result = world.stsd("status", cwd=str(directory))
    assert "endpoint  http://127.0.0.1:" in result.stdout, result.stdout


def test_a_default_profile_with_keys_is_named_at_env_and_in_status(
    world: World, endpoint_daemon: Daemon
) -> None:
    credentials = world.home / ".aws" / "credentials"
    credentials.write_text(
        credentials.read_text() + "\n[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = x\n"
    )
    directory = world.allowed("p", ENDPOINT_PROJECT)
    result = world.stsd("env", "--json", str(directory))
    assert result.returncode == 0
    [line] = result.stderr.splitlines()
    assert f"{credentials} [default] holds aws_access_key_id" in line
    status = world.stsd("status", cwd=str(directory))
    assert f"warning   {credentials} [default]" in status.stdout
    assert "AKIAEXAMPLE" not in status.stdout + result.stderr


# -- another local user -------------------------------------------------------------------------------------


@as_root
def test_another_local_user_with_the_right_url_and_token_is_refused(
    world: World, endpoint_daemon: Daemon
) -> None:
    _, url, token = endpoint_of(world)
    script = (
        "import sys, urllib.request, urllib.error\n"
        "request = urllib.request.Request(sys.argv[1], headers={'Authorization': sys.argv[2]})\n"
        "try:\n    print(urllib.request.urlopen(request, timeout=10).status, urllib.request.urlopen(request).read())\n"
        "except urllib.error.HTTPError as error:\n    print(error.code, error.read().decode())\n"
    )
    result = run_as([SYSTEM_PYTHON, "-I", "-c", script, url, token], timeout=30, cwd="/")
    assert result.stdout.startswith("403 "), result.stdout + result.stderr
    assert '"forbidden_user"' in result.stdout and "SecretAccessKey" not in result.stdout
    assert get(url, token)[0] == 200  # the same token still works for the user


def test_peer_uid_reads_the_kernels_table_of_tcp_sockets() -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        with socket.create_connection(listener.getsockname()):
            server, _ = listener.accept()
            with server:
                peer, local = server.getpeername(), server.getsockname()
                assert peer_uid(peer, local) == os.getuid()
                # Both ways the kernel tells: sock_diag's exact lookup and the /proc/net/tcp table.
                assert _diag_uid(peer, local) == _proc_uid(peer, local, "/proc/net") == os.getuid()
                assert _diag_uid(("127.0.0.1", 1), local) is None
                assert _proc_uid(("127.0.0.1", 1), local, "/proc/net") is None
    assert (
        _proc_address("127.0.0.1", 8080)
        == ("0100007F" if sys.byteorder == "little" else "7F000001") + ":1F90"
    )


def test_bounds_request_head_and_per_token_rate(world: World) -> None:
    world.write_config("endpoint_requests_per_second = 1\n")
    with Daemon(world):
        directory = world.allowed("p", ENDPOINT_PROJECT)
        variables = world.env_json(directory)
        url = variables["AWS_CONTAINER_CREDENTIALS_FULL_URI"]
        token = variables["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        status, body = get(url, token, headers={"X-Padding": "x" * 9000})
        assert (status, body["code"]) == (413, "too_large")
        statuses = [get(url, token)[0] for _ in range(400)]  # a burst of 400, then 1 per second
        assert statuses == [200] * 400
        refusals = [body for status, body in (get(url, token) for _ in range(20)) if status == 429]
        assert refusals and refusals[0]["code"] == "rate_limited"
        assert "endpoint_requests_per_second" in refusals[0]["message"]
