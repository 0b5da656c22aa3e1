"""The daemon's config file: optional, strict, one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from stsd.aws_values import SESSION_NAME
from stsd.daemon.config import ConfigError, DaemonConfig, SourceSettings, load_config


def load(tmp_path: Path, text: str) -> DaemonConfig:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return load_config(path)


def error_for(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path, text)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "config.toml") + ": ")
    return message


def test_missing_file_means_the_documented_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)

    config = load_config(tmp_path / "absent.toml")

    assert config.renew_before_seconds == 1200
    assert config.renew_jitter_seconds == 120
    assert config.min_remaining_seconds == 900
    assert config.idle_timeout_seconds == 8 * 3600
    assert (config.sts_connect_timeout, config.sts_read_timeout) == (3, 10)
    assert (config.backoff_initial_seconds, config.backoff_max_seconds) == (5, 300)
    assert config.region == "us-east-1"
    assert config.idle_exit_seconds is None


def test_settings_are_read(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        'renew_before_seconds = 1800\nregion = "eu-central-1"\nrole_session_name = "laptop"\n'
        "idle_exit_seconds = 600\nsts_read_timeout = 2.5\n",
    )

    assert config.renew_before_seconds == 1800
    assert config.region == "eu-central-1"
    assert config.role_session_name == "laptop"
    assert config.idle_exit_seconds == 600
    assert config.sts_read_timeout == 2.5
    assert config.min_remaining_seconds == 900  # untouched keys keep their defaults


def test_region_defaults_to_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-southeast-2")

    assert load_config(tmp_path / "absent.toml").region == "ap-southeast-2"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    message = error_for(tmp_path, "renew_befor_seconds = 1200\n")

    assert "renew_befor_seconds: unknown setting" in message
    assert "renew_before_seconds" in message  # the list of known keys helps spot the typo


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('renew_before_seconds = "1200"', "renew_before_seconds"),
        ("renew_before_seconds = true", "renew_before_seconds"),
        ("renew_jitter_seconds = 1.5", "renew_jitter_seconds"),
        ("min_remaining_seconds = -1", "min_remaining_seconds"),
        ("idle_timeout_seconds = 0", "idle_timeout_seconds"),
        ("sts_connect_timeout = 0", "sts_connect_timeout"),
        ('region = "Europe"', "region"),
        ('role_session_name = "has space"', "role_session_name"),
        ("idle_exit_seconds = -5", "idle_exit_seconds"),
    ],
)
def test_wrong_value_says_what_is_expected(tmp_path: Path, line: str, key: str) -> None:
    assert f": {key}: expected " in error_for(tmp_path, line + "\n")


def test_mfa_settings_apply_to_every_source_or_to_one_profile(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        'mfa_session_duration = 28800\nmfa_process = "pass otp aws/work"\n\n'
        '[profiles.alice]\nmfa_process = ["oathtool", "--totp", "-b", "KEY"]\n\n'
        "[profiles.bob]\nmfa_session_duration = 3600\n",
    )

    assert config.source_settings("alice") == SourceSettings(28800, ("oathtool", "--totp", "-b", "KEY"))
    assert config.source_settings("bob") == SourceSettings(3600, ("pass", "otp", "aws/work"))
    assert config.source_settings("carol") == SourceSettings(28800, ("pass", "otp", "aws/work"))
    assert DaemonConfig().source_settings("alice") == SourceSettings(43200, None)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("mfa_session_duration = 899\n", "mfa_session_duration: expected whole seconds 900..129600"),
        ("mfa_session_duration = 129601\n", "mfa_session_duration: expected whole seconds 900..129600"),
        ('mfa_process = ""\n', "mfa_process: expected a command that prints a one-time code"),
        ("mfa_process = []\n", "mfa_process: expected a command"),
        ("[profiles.alice]\nmfa_session_duration = 60\n", "profiles.alice.mfa_session_duration: expected"),
        ("[profiles.alice]\nregion = 'eu-west-1'\n", "profiles.alice.region: unknown setting"),
        ("profiles = 1\n", "profiles: expected tables like [profiles.NAME]"),
    ],
)
def test_mfa_settings_out_of_range_say_what_is_expected(tmp_path: Path, text: str, where: str) -> None:
    assert where in error_for(tmp_path, text)


def test_backoff_ceiling_below_floor_is_rejected(tmp_path: Path) -> None:
    message = error_for(tmp_path, "backoff_initial_seconds = 60\nbackoff_max_seconds = 30\n")

    assert "backoff_max_seconds" in message


def test_broken_toml_names_the_line(tmp_path: Path) -> None:
    message = error_for(tmp_path, "renew_before_seconds = 1200\nregion = \n")

    assert "line 2" in message


def test_default_session_name_is_valid_and_names_the_user() -> None:
    name = DaemonConfig().role_session_name

    assert SESSION_NAME.accepts(name)
    assert name.startswith("stsd-")
    assert "@" in name
