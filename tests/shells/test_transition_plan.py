"""The transition decision on its own (no shell, no daemon): the cases a live setup cannot stage cheaply.
`now` is passed in: the decision reads no clock of its own."""

from __future__ import annotations

import json

import pytest

from stsd import terminal, wire
from stsd.client.transition import (
    BUSY,
    FETCHING,
    STATE_VARIABLE,
    LoadedState,
    NoProject,
    Notice,
    Pending,
    Project,
    Unreachable,
    plan,
)
from stsd.protocol import Refusal

FILE = "/home/alice/project/.stsd.toml"
NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "ASIANEW", "AWS_PROFILE": None, "STSD_PROFILE": "alice-sts"}


def loaded_environment(expiration: str) -> dict[str, str]:
    state = LoadedState(
        42,
        FILE,
        "alice-sts",
        expiration,
        {"AWS_ACCESS_KEY_ID": None, "AWS_PROFILE": "work", "STSD_PROFILE": None},
    )
    return {"AWS_ACCESS_KEY_ID": "ASIAOLD", "STSD_PROFILE": "alice-sts", STATE_VARIABLE: state.encode()}


def test_daemon_down_in_same_project_keeps_unexpired_credentials_and_asks_again_soon():
    transition = plan(
        loaded_environment("2027-01-15T09:00:00Z"), Unreachable("down"), hook_file=FILE, shell_pid=42, now=NOW
    )

    assert transition.changes == {}
    assert transition.refresh_at > NOW
    assert transition.notice.cause == "unreachable"


def test_daemon_down_with_expired_credentials_unloads():
    transition = plan(
        loaded_environment("2027-01-15T07:59:59Z"), Unreachable("down"), hook_file=FILE, shell_pid=42, now=NOW
    )

    assert transition.changes == {
        "AWS_ACCESS_KEY_ID": None,
        "AWS_PROFILE": "work",
        "STSD_PROFILE": None,
        STATE_VARIABLE: None,
    }


def test_renewal_in_same_project_keeps_pre_entry_values():
    answer = Project(FILE, "alice-sts", CREDENTIALS, "2027-01-15T09:00:00Z", int(NOW) + 600, "")
    transition = plan(
        loaded_environment("2027-01-15T08:30:00Z"), answer, hook_file=FILE, shell_pid=42, now=NOW
    )

    assert transition.changes["AWS_ACCESS_KEY_ID"] == "ASIANEW"
    assert transition.state.saved["AWS_PROFILE"] == "work"
    assert transition.info is None  # a renewal is not news


def test_refusal_unloads_and_waits_for_the_user_not_the_clock():
    answer = Refusal("untrusted", terminal.refusal_line("untrusted", FILE, None, "bash"), project=FILE)
    transition = plan(
        loaded_environment("2027-01-15T09:00:00Z"), answer, hook_file=FILE, shell_pid=42, now=NOW
    )

    assert transition.state is None
    assert transition.changes["AWS_PROFILE"] == "work"
    assert transition.refresh_at == 0
    assert "stsd allow /home/alice/project" in transition.notice.line


@pytest.mark.parametrize(
    ("code", "line"),
    [
        ("mfa_required", "alice needs an MFA code: run stsd mfa"),
        ("sign_in_required", "dev needs a new sign-in: run aws sso login --sso-session corp"),
    ],
)
def test_code_or_sign_in_needed_unloads_says_it_once_and_asks_again_at_the_next_prompt(code, line):
    answer = Refusal(code, line, project=FILE)
    entering = plan({}, answer, hook_file=FILE, shell_pid=42, now=NOW)
    ended = plan(loaded_environment("2027-01-15T09:00:00Z"), answer, hook_file=FILE, shell_pid=42, now=NOW)

    for step in (entering, ended):
        assert step.state is None
        assert step.notice.line == f"stsd: {line}"
        assert step.notice.cause == f"{code}:{FILE}"  # the hook shows one cause once
        assert step.refresh_at == int(
            NOW
        )  # due at the next prompt: `stsd mfa` or `aws sso login` may have run
    assert entering.changes == {}
    assert ended.changes["AWS_ACCESS_KEY_ID"] is None


def test_unreadable_state_restores_nothing():
    environment = {"AWS_ACCESS_KEY_ID": "AKIAMINE", STATE_VARIABLE: "not hex json"}
    transition = plan(environment, NoProject(), hook_file="", shell_pid=42, now=NOW)

    assert transition.changes == {STATE_VARIABLE: None}


@pytest.mark.parametrize(
    "text", ['{"a":[1,2.5,null,true,false],"b":{"c":"\\u00e9\\ud83e\\udd8a\\n"}}', '"x"', "[]"]
)
def test_quick_json_agrees_with_json_module(text):
    assert wire.json_loads(text) == json.loads(text)
    value = json.loads(text)
    assert json.loads(wire.json_dumps(value)) == value


def test_a_shadowing_default_profile_is_said_once_at_entry():
    warning = "~/.aws/credentials [default] holds aws_access_key_id: AWS SDKs use it before the stsd endpoint"
    answer = Project(FILE, "alice-sts", CREDENTIALS, "2027-01-15T09:00:00Z", int(NOW) + 600, warning)
    entering = plan({}, answer, hook_file=FILE, shell_pid=42, now=NOW)
    assert entering.notice is not None and entering.notice.line == f"stsd: warning: {warning}"
    # Staying in the project (a renewal) says nothing again.
    staying = plan(loaded_environment("2027-01-15T08:30:00Z"), answer, hook_file=FILE, shell_pid=42, now=NOW)
    assert staying.notice is None


def test_pending_entry_sets_nothing_drops_another_project_and_asks_again_at_the_next_prompt():
    other = "/home/alice/other/.stsd.toml"
    transition = plan(
        loaded_environment("2027-01-15T09:00:00Z"),
        Pending(other, FETCHING),
        hook_file=other,
        shell_pid=42,
        now=NOW,
    )

    assert transition.state is None
    assert transition.changes["AWS_ACCESS_KEY_ID"] is None and transition.changes["AWS_PROFILE"] == "work"
    assert NOW < transition.refresh_at <= NOW + 1  # the next prompt, not the one fish draws right after `cd`
    assert transition.notice == Notice(
        f"pending:{other}",
        "stsd: fetching credentials for /home/alice/other; they will be set at the next prompt",
    )


def test_pending_renewal_in_the_same_project_keeps_the_held_credentials_silently():
    transition = plan(
        loaded_environment("2027-01-15T09:00:00Z"), Pending(FILE, BUSY), hook_file=FILE, shell_pid=42, now=NOW
    )

    assert transition.changes == {} and transition.state is not None
    assert transition.notice is None and transition.refresh_at > NOW
