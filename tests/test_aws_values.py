"""stsd.aws_values: each AWS value's pattern or range and its message, checked once at its boundaries; the
project file, a request from ~/.aws/config and the daemon config refuse with the same words; and no
module of stsd holds a copy of a pattern or a range."""

from __future__ import annotations

import tokenize
from pathlib import Path
from typing import Any

import pytest
from conftest import stsd_tokens

from stsd import aws_values
from stsd.daemon.config import ConfigError, DaemonConfig, load_config
from stsd.daemon.requests import resolve_request
from stsd.daemon.sources import CREDENTIAL_SOURCES
from stsd.project.projectfile import ProjectFileError, RoleSettings, load_project_file
from stsd.protocol import Refusal

ARN = "arn:aws:iam::123456789012:role/"

# rule, values it accepts (the boundaries included), values it refuses (just past them)
BOUNDARIES: list[tuple[str, list[Any], list[Any]]] = [
    (
        "ROLE_ARN",
        [ARN + "a", ARN + "r" * 64, ARN + "path/to/r", "arn:aws-us-gov:iam::123456789012:role/r"],
        [ARN + "r" * 65, "arn:aws:iam::12345678901:role/r", "arn:aws:iam::123456789012:user/r", ARN, "r"],
    ),
    ("SESSION_NAME", ["ab", "s" * 64, "a+=,.@_-b"], ["a", "s" * 65, "has space", "\u00e9t\u00e9", None]),
    ("EXTERNAL_ID", ["ab", "e" * 1224, "a:b/c"], ["a", "e" * 1225, "a b"]),
    ("MFA_SERIAL", ["GAHT12345", "s" * 256, "arn:aws:iam::123456789012:mfa/alice"], ["GAHT1234", "s" * 257]),
    (
        "REGION",
        ["us-east-1", "us-gov-west-1", "eu-central-12"],
        ["US-EAST-1", "useast1", "us-east-", "eu-west-123"],
    ),
    ("MFA_CODE", ["000000", "123456"], ["12345", "1234567", "12345a", 123456]),
    ("PROFILE_NAME", ["a", "p" * 128, "my profile"], ["", " a", "a ", "p" * 129, "a\tb", 3]),
    ("CREDENTIAL_SOURCE", ["Environment", "Ec2InstanceMetadata", "EcsContainer"], ["Ec2", "environment"]),
    ("ROLE_DURATION", [900, 43200], [899, 43201, True, "3600"]),
    ("SESSION_TOKEN_DURATION", [900, 129600], [899, 129601, 900.0]),
]


@pytest.mark.parametrize(("name", "accepted", "refused"), BOUNDARIES, ids=[b[0] for b in BOUNDARIES])
def test_each_rule_accepts_up_to_its_boundaries_and_nothing_past_them(
    name: str, accepted: list[Any], refused: list[Any]
) -> None:
    rule = getattr(aws_values, name)
    assert [value for value in accepted if not rule.accepts(value)] == []
    assert [value for value in refused if rule.accepts(value)] == []
    assert rule.problem.startswith("expected ") and "{" not in rule.problem


def test_every_rule_is_checked_here() -> None:
    rules = {name for name, value in vars(aws_values).items() if isinstance(value, aws_values.Rule)}
    assert rules == {name for name, _, _ in BOUNDARIES}


def test_ranges_say_their_bounds() -> None:
    assert "900..43200" in aws_values.ROLE_DURATION.problem
    assert "900..129600" in aws_values.SESSION_TOKEN_DURATION.problem
    assert (
        aws_values.CREDENTIAL_SOURCE.problem
        == "expected one of Environment, Ec2InstanceMetadata, EcsContainer"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("stsd-alice@box", "stsd-alice@box"), ("stsd-j\u00e9r\u00f4me@box", "stsd-j-r-me@box"), ("x", "x-")],
)
def test_any_text_becomes_a_session_name_sts_accepts(text: str, expected: str) -> None:
    assert aws_values.session_name(text) == expected
    assert aws_values.SESSION_NAME.accepts(aws_values.session_name(text))


def test_a_long_text_is_cut_to_the_longest_session_name() -> None:
    assert aws_values.session_name("u" * 100) == "u" * 64


def test_the_default_session_name_is_one_sts_accepts() -> None:
    assert aws_values.SESSION_NAME.accepts(DaemonConfig().role_session_name)


def test_the_sources_credential_source_providers_are_the_rules_choices() -> None:
    assert tuple(CREDENTIAL_SOURCES) == aws_values.CREDENTIAL_SOURCE.choices


# -- one rule, the same words wherever the value is refused ----------------------------------------------


def test_a_project_file_a_request_and_the_daemon_config_refuse_with_the_rules_words(tmp_path: Path) -> None:
    rule = aws_values.SESSION_NAME
    (tmp_path / ".stsd.toml").write_text(
        f'role_arn = "{ARN}r"\ncredential_source = "Environment"\nrole_session_name = "a"\n'
    )
    with pytest.raises(ProjectFileError) as in_project:
        load_project_file(tmp_path / ".stsd.toml")
    with pytest.raises(Refusal) as in_request:
        settings = RoleSettings(role_arn=ARN + "r", credential_source="Environment", role_session_name="a")
        resolve_request(settings, label="p", config=DaemonConfig())
    (tmp_path / "config.toml").write_text('role_session_name = "a"\n')
    with pytest.raises(ConfigError) as in_config:
        load_config(tmp_path / "config.toml")

    for refused in (in_project.value, in_request.value, in_config.value):
        assert str(refused).endswith(f"role_session_name: {rule.problem}")


def test_a_project_file_and_a_request_refuse_a_duration_with_the_rules_words(tmp_path: Path) -> None:
    problem = aws_values.ROLE_DURATION.problem
    (tmp_path / ".stsd.toml").write_text(
        f'role_arn = "{ARN}r"\ncredential_source = "Environment"\nduration_seconds = 60\n'
    )
    with pytest.raises(ProjectFileError) as in_project:
        load_project_file(tmp_path / ".stsd.toml")
    with pytest.raises(Refusal) as in_request:
        settings = RoleSettings(role_arn=ARN + "r", credential_source="Environment", duration_seconds=60)
        resolve_request(settings, label="p", config=DaemonConfig())

    assert str(in_project.value).endswith(f"duration_seconds: {problem}, got 60")
    assert str(in_request.value) == f"p: duration_seconds: {problem}"


# -- no copies -------------------------------------------------------------------------------------------

# What a copy of an AWS value's pattern or range looks like in source text.
PATTERN_PIECES = (
    "\\w+=",
    "\\d{12}",
    "\\d{6}",
    "[a-z]{2}",
    "2-64",
    "2-1224",
    "9-256",
    "1-128",
    "900..",
    "15 min to 12 h",
)
BOUNDS = {900, 1224, 43200, 129600}
# Numbers equal to a bound that are not one: the SDKs' refresh window (15 min), not an STS duration.
NOT_BOUNDS = {("daemon/config.py", "min_remaining_seconds")}


def test_no_module_but_aws_values_holds_a_pattern_or_range_of_an_aws_value() -> None:
    copies = []
    for where, token in stsd_tokens("aws_values.py"):
        line = token.line
        if token.type == tokenize.NUMBER and token.string.isdigit() and int(token.string) in BOUNDS:
            if not any(where == file and name in line for file, name in NOT_BOUNDS):
                copies.append(f"{where}:{token.start[0]}: {line.strip()}")
        elif token.type == tokenize.STRING and any(piece in token.string for piece in PATTERN_PIECES):
            copies.append(f"{where}:{token.start[0]}: {line.strip()}")
    assert not copies, "import the Rule from stsd.aws_values instead: " + "; ".join(copies)
