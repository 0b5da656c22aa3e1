"""An MFA day in real bash, zsh and fish on a pty, against a real `stsd serve` and the local STS behind the
MFA stub (tests/mfa_stub.py): entering says once that a code is needed and exports nothing; `stsd mfa`
with the code on stdin unlocks it, and the credentials are there at the next prompt; a wrong code is one
clear line."""

from __future__ import annotations

import pytest
from conftest import CREDENTIAL_VARIABLES as CREDENTIALS
from conftest import Daemon, caller_arn
from mfa_stub import MFA_ROLE_NAME, totp, wrong_code

from stsd.demo.local_aws import ACCOUNT_ID

NOTICE = "stsd: alice needs an MFA code: run stsd mfa"


@pytest.fixture
def mfa_project(mfa_world):
    with Daemon(mfa_world):
        yield mfa_world.allowed("mfa-project", 'profile = "alice-mfa"\n')


def test_code_on_stdin_unlocks_the_project_at_the_next_prompt(mfa_world, mfa_sts, mfa_project, open_shell):
    shell = open_shell()

    entered = shell.cd(mfa_project)
    waiting = [shell.prompt(), shell.prompt()]

    assert entered.count(NOTICE) == 1
    assert not any(name in shell.env() for name in CREDENTIALS)
    assert all(NOTICE not in output for output in waiting)  # asked again at each prompt, said once

    unlocked = shell.run(f"echo {totp()} | stsd mfa")

    assert shell.last_status == 0
    assert "stsd: MFA session for alice held until " in unlocked
    assert "stsd: loaded alice-mfa" in unlocked  # the prompt right after `stsd mfa`
    environment = shell.env()
    assert (
        caller_arn(mfa_sts.endpoint, environment)
        == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{MFA_ROLE_NAME}/mfa-access"
    )
    assert mfa_sts.count("GetSessionToken") == 1 and mfa_sts.codes_accepted == 1


def test_wrong_code_is_one_clear_error_and_a_right_one_still_works(
    mfa_world, mfa_sts, mfa_project, open_shell
):
    shell = open_shell()
    shell.cd(mfa_project)

    refused = shell.run(f"echo {wrong_code()} | stsd mfa")

    assert shell.last_status == 1
    [line] = refused.strip().splitlines()
    assert line.startswith("stsd: GetSessionToken for alice with MFA ")
    assert "AccessDenied: MultiFactorAuthentication failed with invalid MFA one time pass code." in line
    assert not any(name in shell.env() for name in CREDENTIALS)

    shell.run(f"echo {totp()} | stsd mfa")
    assert shell.last_status == 0
    assert all(name in shell.env() for name in CREDENTIALS)
    assert (mfa_sts.codes_refused, mfa_sts.codes_accepted) == (1, 1)
