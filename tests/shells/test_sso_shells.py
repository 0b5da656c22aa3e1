"""An SSO sign-in ending, in real bash, zsh and fish on a pty, against a real `stsd serve`, the SSO portal stub
and the local STS behind the MFA stub's STS stand-in (tests/sso_stub.py): entering with an expired token
says once which `aws sso login` to run and exports nothing; once a new token is in the cache (what
`aws sso login` writes, here from another "terminal"), the next prompt loads the project, with the same
daemon."""

from __future__ import annotations

import boto3
import pytest
from conftest import Daemon

from stsd.demo.local_aws import REGION, USER_ARN

CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
NOTICE = "stsd: dev needs a new sign-in: run aws sso login --sso-session corp"


@pytest.fixture
def sso_project(sso_world, world):
    daemon = Daemon(world)
    directory = world.project("sso-project", 'profile = "dev"\n')
    world.stsd("allow", str(directory), check=True)
    yield directory, daemon
    daemon.stop()


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
    sts = boto3.client(
        "sts",
        endpoint_url=sso_world.sts.endpoint,
        region_name=REGION,
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=environment["AWS_SESSION_TOKEN"],
    )
    assert sts.get_caller_identity()["Arn"] == USER_ARN
    assert environment["STSD_PROFILE"] == "dev"
    assert daemon.process.poll() is None and sso_world.portal.calls == {"ok": 1}
