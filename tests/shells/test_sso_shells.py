"""An SSO sign-in ending, in real bash, zsh and fish on a pty, against a real `stsd serve`, the SSO portal stub
and the local STS behind the MFA stub's STS stand-in (tests/sso_stub.py): entering with an expired token
says once which `aws sso login` to run and exports nothing; once a new token is in the cache (what
`aws sso login` writes, here from another "terminal"), the next prompt loads the project, with the same
daemon."""

from __future__ import annotations

import pytest
from conftest import CREDENTIAL_VARIABLES as CREDENTIALS
from conftest import Daemon, caller_arn

from stsd.demo.local_aws import USER_ARN

NOTICE = "stsd: dev needs a new sign-in: run aws sso login --sso-session corp"


@pytest.fixture
def sso_project(sso_world, world):
    with Daemon(world) as daemon:
        yield world.allowed("sso-project", 'profile = "dev"\n'), daemon


def test_expired_sign_in_is_one_notice_and_the_next_sign_in_loads_at_the_next_prompt(
    sso_world, sso_project, open_shell
):
    directory, daemon = sso_project
    sso_world.sign_in(lifetime=-60)
    shell = open_shell()

    entered = shell.cd(directory)
    waiting = [shell.prompt(), shell.prompt()]
    status = shell.run("stsd status")

    assert entered.count(NOTICE) == 1
    assert not any(name in shell.env() for name in CREDENTIALS)
    assert all(NOTICE not in output for output in waiting)  # asked again at each prompt, said once
    assert "needed: run aws sso login --sso-session corp" in status
    assert sso_world.portal.fetches == 0

    sso_world.sign_in()  # `aws sso login` in another terminal
    loaded = shell.prompt()

    assert "stsd: loaded dev" in loaded
    environment = shell.env()
    assert caller_arn(sso_world.sts.endpoint, environment) == USER_ARN
    assert environment["STSD_PROFILE"] == "dev"
    assert daemon.process.poll() is None and sso_world.portal.calls == {"ok": 1}
