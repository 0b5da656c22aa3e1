"""`stsd allow` run as a user would: before trusting a file it shows every [env] variable that redirects AWS
requests or makes a tool run something, and names any other user's file it passed over."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import World

from stsd.demo.local_aws import EXTERNAL_ID, ROLE_ARN, USER_NAME
from stsd.project.discovery import PROJECT_FILE_NAME
from stsd.variables import risk_of

NOBODY = 65534
ROLE = f'role_arn = "{ROLE_ARN}"\nsource_profile = "{USER_NAME}"\nexternal_id = "{EXTERNAL_ID}"\n'

as_root = pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown files to another user")


def allowed_records(world: World) -> list[Path]:
    directory = Path(world.env["XDG_DATA_HOME"]) / "stsd" / "trust" / "allowed"
    return sorted(directory.iterdir()) if directory.exists() else []


def test_allow_shows_each_redirecting_or_executing_variable_then_trusts(world: World) -> None:
    directory = world.project(
        "proj",
        ROLE + "[env]\n"
        'AWS_DEFAULT_OUTPUT = "json"\n'
        'AWS_ENDPOINT_URL = "http://127.0.0.1:9"\n'
        'AWS_ENDPOINT_URL_S3 = "http://10.0.0.1:9000"\n'
        'AWS_PAGER = "less -R"\n'
        'AWS_RETRY_MODE = "standard"\n'
        'AWS_CSM_HOST = "collector.example"\n'
        'AWS_CA_BUNDLE = "/tmp/ca.pem"\n',
    )

    result = world.stsd("allow", str(directory))

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "stsd: this file sets AWS_ENDPOINT_URL = http://127.0.0.1:9 (redirects AWS requests)",
        "stsd: this file sets AWS_ENDPOINT_URL_S3 = http://10.0.0.1:9000 (redirects AWS requests)",
        "stsd: this file sets AWS_PAGER = less -R (runs a program on AWS CLI output)",
        "stsd: this file sets AWS_CSM_HOST = collector.example "
        "(client-side monitoring: sends data about AWS requests to a host)",
        "stsd: this file sets AWS_CA_BUNDLE = /tmp/ca.pem (changes which certificates AWS requests trust)",
    ]
    assert result.stdout == f"stsd: allowed {directory / PROJECT_FILE_NAME}\n"
    assert len(allowed_records(world)) == 1


def test_allow_escapes_control_characters_in_the_values_it_shows(world: World) -> None:
    directory = world.project(
        "proj", ROLE + '[env]\nAWS_PAGER = "less\\u001b]0;owned\\u0007\\nAWS_ENDPOINT_URL = fine"\n'
    )

    result = world.stsd("allow", str(directory))

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "stsd: this file sets AWS_PAGER = less\\x1b]0;owned\\x07\\x0aAWS_ENDPOINT_URL = fine "
        "(runs a program on AWS CLI output)"
    ]


def test_allow_of_a_file_without_such_variables_says_only_allowed(world: World) -> None:
    directory = world.project("proj", ROLE + '[env]\nAWS_DEFAULT_OUTPUT = "json"\nAWS_MAX_ATTEMPTS = "5"\n')

    result = world.stsd("allow", str(directory))

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"stsd: allowed {directory / PROJECT_FILE_NAME}\n"


@as_root
def test_allow_names_another_users_file_it_passed_over_and_allows_the_parent(world: World) -> None:
    directory = world.project("proj", ROLE)
    theirs = directory / "vendor" / PROJECT_FILE_NAME
    theirs.parent.mkdir()
    theirs.write_text(ROLE + '[env]\nAWS_ENDPOINT_URL = "http://evil.example"\n')
    os.chown(theirs, NOBODY, NOBODY)

    result = world.stsd("allow", str(directory / "vendor"))

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"stsd: ignored {theirs}: owned by uid {NOBODY}, not you or root\n"
    assert result.stdout == f"stsd: allowed {directory / PROJECT_FILE_NAME}\n"


@as_root
def test_allow_refuses_another_users_file_named_by_its_path(world: World) -> None:
    directory = world.project("proj", ROLE)
    os.chown(directory / PROJECT_FILE_NAME, NOBODY, NOBODY)

    result = world.stsd("allow", str(directory / PROJECT_FILE_NAME))

    assert result.returncode == 1
    assert f"owned by uid {NOBODY}, not you or root" in result.stderr
    assert allowed_records(world) == []


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("AWS_ENDPOINT_URL", "redirects AWS requests"),
        ("AWS_ENDPOINT_URL_STS", "redirects AWS requests"),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", "redirects AWS requests"),
        ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "changes which endpoint AWS requests go to"),
        ("AWS_DATA_PATH", "loads service models and data from these paths"),
        ("AWS_CLI_HISTORY_FILE", "records AWS CLI commands and responses in this file"),
        ("AWS_CSM_ENABLED", "client-side monitoring: sends data about AWS requests to a host"),
        ("AWS_CSM_PORT", "client-side monitoring: sends data about AWS requests to a host"),
        ("AWS_DEFAULT_OUTPUT", ""),
        ("AWS_USE_FIPS_ENDPOINT", ""),
        ("AWS_ENDPOINT_DISCOVERY_ENABLED", ""),
    ],
)
def test_which_variables_are_shown_and_why(name: str, why: str) -> None:
    assert risk_of(name) == why
