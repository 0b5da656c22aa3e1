"""`.stsd.toml` discovery and strict validation: every problem is one line naming file, line and key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stsd import variables
from stsd.project.projectfile import (
    MAX_FILE_BYTES,
    PROJECT_FILE_NAME,
    ProjectFileError,
    RoleSettings,
    find_project_file,
    load_project_file,
)

ROLE = 'role_arn = "arn:aws:iam::123456789012:role/alice-sts"\nsource_profile = "alice"\n'


def write(directory: Path, body: str | bytes) -> Path:
    path = directory / PROJECT_FILE_NAME
    if isinstance(body, str):
        path.write_text(body)
    else:
        path.write_bytes(body)
    return path


def load_error(directory: Path, body: str | bytes) -> ProjectFileError:
    path = write(directory, body)
    with pytest.raises(ProjectFileError) as caught:
        load_project_file(path)
    assert "\n" not in str(caught.value)
    return caught.value


# -- discovery -------------------------------------------------------------------------------------------


def test_nearest_project_file_walking_up_wins(tmp_path: Path) -> None:
    (tmp_path / "app" / "src" / "lib").mkdir(parents=True)
    outer = write(tmp_path, ROLE)
    inner = write(tmp_path / "app", ROLE)

    assert find_project_file(tmp_path / "app" / "src" / "lib") == inner
    assert find_project_file(tmp_path) == outer


def test_no_project_file_up_to_the_root_gives_none(tmp_path: Path) -> None:
    above = [parent / PROJECT_FILE_NAME for parent in tmp_path.parents]
    if any(os.path.lexists(p) for p in above):
        pytest.skip(f"a stray {PROJECT_FILE_NAME} exists above {tmp_path}")
    (tmp_path / "a" / "b").mkdir(parents=True)

    assert find_project_file(tmp_path / "a" / "b") is None


def test_symlinked_directory_is_searched_along_the_path_the_user_took(tmp_path: Path) -> None:
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere" / "data"
    elsewhere.mkdir(parents=True)
    project.mkdir()
    expected = write(project, ROLE)
    (project / "data").symlink_to(elsewhere)

    # The physical directory has no project above it; the logical one (like $PWD) does.
    assert find_project_file(project / "data") == expected
    assert find_project_file(elsewhere) != expected


def test_relative_start_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = write(tmp_path, ROLE)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")

    assert find_project_file(Path(".")) == expected


# -- valid files ---------------------------------------------------------------------------------------


def test_every_documented_key_is_read(tmp_path: Path) -> None:
    body = (
        'role_arn = "arn:aws:iam::123456789012:role/team/alice-sts"\n'
        'source_profile = "alice"\n'
        'external_id = "alice"\n'
        'role_session_name = "s3-access"\n'
        "duration_seconds = 3600\n"
        'region = "eu-central-1"\n'
        'mfa_serial = "arn:aws:iam::123456789012:mfa/alice"\n'
        "[env]\n"
        'AWS_DEFAULT_OUTPUT = "json"\n'
        'AWS_MAX_ATTEMPTS = "5"\n'
    )
    path = write(tmp_path, body)

    project = load_project_file(path)

    assert project.path == path
    assert project.content == body.encode()
    assert project.settings == RoleSettings(
        role_arn="arn:aws:iam::123456789012:role/team/alice-sts",
        source_profile="alice",
        external_id="alice",
        role_session_name="s3-access",
        duration_seconds=3600,
        region="eu-central-1",
        mfa_serial="arn:aws:iam::123456789012:mfa/alice",
    )
    assert dict(project.env) == {"AWS_DEFAULT_OUTPUT": "json", "AWS_MAX_ATTEMPTS": "5"}
    assert project.name == "alice-sts"


def test_a_profile_alone_is_enough_and_names_the_project(tmp_path: Path) -> None:
    project = load_project_file(write(tmp_path, 'profile = "alice-sts"\n'))

    assert project.settings.profile == "alice-sts"
    assert project.name == "alice-sts"
    assert dict(project.env) == {}


def test_instance_metadata_source_is_accepted(tmp_path: Path) -> None:
    body = (
        'role_arn = "arn:aws-us-gov:iam::123456789012:role/ops"\ncredential_source = "Ec2InstanceMetadata"\n'
    )

    project = load_project_file(write(tmp_path, body))

    assert project.settings.credential_source == "Ec2InstanceMetadata"
    assert project.name == "ops"


def test_project_path_keeps_the_logical_path_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    write(real, ROLE)
    (tmp_path / "link").symlink_to(real)

    project = load_project_file(tmp_path / "link" / PROJECT_FILE_NAME)

    assert project.path == tmp_path / "link" / PROJECT_FILE_NAME


# -- invalid files: one line, file:line: key: expected -----------------------------------------------------

INVALID = [
    pytest.param(
        ROLE + "duration_seconds = 899\n", 3, "duration_seconds", "900..43200", id="duration-too-short"
    ),
    pytest.param(
        ROLE + "duration_seconds = 43201\n", 3, "duration_seconds", "900..43200", id="duration-too-long"
    ),
    pytest.param(
        ROLE + 'duration_seconds = "3600"\n',
        3,
        "duration_seconds",
        "900..43200 (15 min to 12 h), got a string",
        id="duration-string",
    ),
    pytest.param(
        ROLE + "duration_seconds = true\n",
        3,
        "duration_seconds",
        "900..43200 (15 min to 12 h), got a boolean",
        id="duration-bool",
    ),
    pytest.param(
        'role_arn = "arn:aws:iam::1234:role/x"\nsource_profile = "a"\n',
        1,
        "role_arn",
        "12-digit",
        id="arn-account",
    ),
    pytest.param(
        'source_profile = "a"\nrole_arn = "arn:aws:iam::123456789012:user/x"\n',
        2,
        "role_arn",
        ":role/",
        id="arn-user",
    ),
    pytest.param(
        'role_arn = "alice-sts"\nsource_profile = "a"\n', 1, "role_arn", "arn:aws:iam::", id="arn-bare-name"
    ),
    pytest.param(ROLE + 'role_session_name = "a"\n', 3, "role_session_name", "2-64", id="session-name-short"),
    pytest.param(
        ROLE + 'role_session_name = "has space"\n', 3, "role_session_name", "2-64", id="session-name-space"
    ),
    pytest.param(
        ROLE + f'role_session_name = "{"s" * 65}"\n', 3, "role_session_name", "2-64", id="session-name-long"
    ),
    pytest.param(ROLE + 'external_id = "a"\n', 3, "external_id", "2-1224", id="external-id-short"),
    pytest.param(ROLE + f'external_id = "{"e" * 1225}"\n', 3, "external_id", "2-1224", id="external-id-long"),
    pytest.param(
        'role_arn = "arn:aws:iam::123456789012:role/r"\ncredential_source = "Ec2"\n',
        2,
        "credential_source",
        "Environment, Ec2InstanceMetadata, EcsContainer",
        id="credential-source-unknown",
    ),
    pytest.param(
        ROLE + 'credential_source = "Environment"\n', 3, "credential_source", "not both", id="both-sources"
    ),
    pytest.param('region = "us-east-1"\n', 1, "role_arn", "profile", id="neither-profile-nor-role"),
    pytest.param(
        'role_arn = "arn:aws:iam::123456789012:role/r"\n',
        1,
        "role_arn",
        "source_profile",
        id="role-without-source",
    ),
    pytest.param(ROLE + 'region = "US-EAST-1"\n', 3, "region", "us-east-1", id="region-capitals"),
    pytest.param(ROLE + 'region = "useast1"\n', 3, "region", "us-east-1", id="region-shape"),
    pytest.param(ROLE + 'mfa_serial = "x"\n', 3, "mfa_serial", "MFA", id="mfa-serial"),
    pytest.param(
        ROLE + "profile = 3\n", 3, "profile", "expected a string, got a number", id="profile-number"
    ),
    pytest.param(
        ROLE + "profile = ['a']\n", 3, "profile", "expected a string, got an array", id="profile-array"
    ),
    pytest.param(ROLE + "\n\nrolearn = 'x'\n", 5, "rolearn", "did you mean role_arn?", id="unknown-key-typo"),
    pytest.param(
        ROLE + "duration = 3600\n", 3, "duration", "did you mean duration_seconds?", id="unknown-key-short"
    ),
    pytest.param(
        ROLE + "colour = 'red'\n", 3, "colour", "expected one of profile, role_arn", id="unknown-key"
    ),
    pytest.param(ROLE + "[profiles]\nx = 1\n", 3, "profiles", "did you mean profile?", id="unknown-table"),
    pytest.param(ROLE + 'env = "AWS_X=1"\n', 3, "env", "table", id="env-not-a-table"),
    pytest.param(
        ROLE + '[env]\nAWS_OK = "1"\naws_lower = "x"\n', 5, "env.aws_lower", "AWS_*", id="env-lower-case"
    ),
    pytest.param(
        ROLE + "[env]\nAWS_MAX_ATTEMPTS = 3\n",
        4,
        "env.AWS_MAX_ATTEMPTS",
        "expected a string",
        id="env-number",
    ),
    pytest.param(ROLE + '[env]\nAWS_X = "a\\u0000b"\n', 4, "env.AWS_X", "NUL", id="env-nul"),
    pytest.param(
        ROLE + '[env]\nAWS_REGION = "us-east-1"\n', 4, "env.AWS_REGION", "region =", id="env-region"
    ),
    pytest.param(
        ROLE + '[env]\nAWS_A = "1"\n[env.AWS_NESTED]\nx = 1\n',
        5,
        "env.AWS_NESTED",
        "got a table",
        id="env-sub-table",
    ),
    pytest.param(ROLE + '[[env]]\nAWS_A = "1"\n', 3, "env", "table", id="env-array-of-tables"),
    pytest.param(ROLE + 'env.PATH = "/tmp/evil"\n', 3, "env.PATH", "AWS_*", id="env-dotted-path"),
    pytest.param(
        ROLE + 'env = { AWS_OK = "1", LD_PRELOAD = "/x.so" }\n',
        3,
        "env.LD_PRELOAD",
        "AWS_*",
        id="env-inline-ld-preload",
    ),
]


@pytest.mark.parametrize(("body", "line", "key", "expected"), INVALID)
def test_invalid_setting_gives_one_line_with_file_line_and_key(
    tmp_path: Path, body: str, line: int, key: str, expected: str
) -> None:
    error = load_error(tmp_path, body)

    assert str(error).startswith(f"{tmp_path / PROJECT_FILE_NAME}:{line}: {key}: ")
    assert expected in str(error)
    assert (error.line, error.key) == (line, key)


@pytest.mark.parametrize(
    "name",
    [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CREDENTIAL_EXPIRATION",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CREDENTIAL_FILE",  # botocore's Ec2Config credential provider
        "AWS_LOGIN_CACHE_DIRECTORY",  # where botocore reads `aws login` tokens
        "AWS_BEARER_TOKEN_BEDROCK",  # a bearer token botocore sends instead of signing
        "AWS_",
        "AWS_lower",
        "PATH",
        "LD_PRELOAD",
    ],
)
def test_env_cannot_set_credentials_or_non_aws_variables(tmp_path: Path, name: str) -> None:
    error = load_error(tmp_path, ROLE + f'[env]\n{name} = "x"\n')

    assert str(error).startswith(f"{tmp_path / PROJECT_FILE_NAME}:4: env.{name}: ")


def test_env_refusals_come_from_the_one_definition_in_stsd_variables(tmp_path: Path) -> None:
    # Anything added to stsd.variables is refused here without a second list to keep in step.
    for name in (*sorted(variables.MANAGED_VARIABLES), *(f"{p}ANY" for p in variables.MANAGED_PREFIXES)):
        assert "managed by stsd" in str(load_error(tmp_path, ROLE + f'[env]\n{name} = "x"\n')), name
    for name in variables.REGION_VARIABLES:
        assert "region =" in str(load_error(tmp_path, ROLE + f'[env]\n{name} = "us-east-1"\n')), name


def test_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, ROLE + "region = \n")

    assert str(error).startswith(f"{tmp_path / PROJECT_FILE_NAME}:3: invalid TOML: ")
    assert "column" in str(error)


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, ROLE + 'source_profile = "bob"\n')

    assert "invalid TOML" in str(error)


def test_key_with_a_newline_in_its_name_still_gives_one_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, ROLE + '"evil\\nkey" = 1\n')

    assert str(error).count("\n") == 0
    assert "unknown key" in str(error)


# -- what is not a small UTF-8 file --------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_fifo_named_like_a_project_file_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / PROJECT_FILE_NAME)

    found = find_project_file(tmp_path)
    assert found == tmp_path / PROJECT_FILE_NAME
    with pytest.raises(ProjectFileError, match="not a regular file"):
        load_project_file(found)


def test_directory_named_like_a_project_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / PROJECT_FILE_NAME).mkdir()

    found = find_project_file(tmp_path)
    assert found == tmp_path / PROJECT_FILE_NAME
    with pytest.raises(ProjectFileError, match="is a directory"):
        load_project_file(found)


def test_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    error = load_error(tmp_path, ROLE.encode() + b'region = "\xff"\n')

    assert str(error).startswith(f"{tmp_path / PROJECT_FILE_NAME}:3: ")
    assert "UTF-8" in str(error)


def test_huge_file_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, ROLE + "# " + "x" * MAX_FILE_BYTES + "\n")

    assert "at most" in str(error)


def test_unreadable_path_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ProjectFileError, match="cannot be read") as caught:
        load_project_file(tmp_path / "missing" / PROJECT_FILE_NAME)
    assert "\n" not in str(caught.value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_any_content_either_loads_or_gives_one_line_error(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content)
    try:
        project = load_project_file(path)
    except ProjectFileError as error:
        assert "\n" not in str(error)
        assert str(error).startswith(str(path))
    else:
        assert project.content == content
