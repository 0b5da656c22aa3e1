"""The shared case list: every case runs in real bash, zsh and fish on a pty, with the hook installed as a
user would, against a real `stsd serve` daemon and the local STS (moto, IAM enforcement on)."""

from __future__ import annotations

import json
import socket
import sys
import time

import boto3
import pytest

from stsd.demo.local_aws import ROLE_ARN
from stsd.shells import hook_text

ALPHA = 'profile = "alice-sts"\n'
BETA = (
    f'role_arn = "{ROLE_ARN}"\nsource_profile = "alice"\nexternal_id = "alice"\n'
    'role_session_name = "beta"\nregion = "eu-west-1"\n'
)
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "STSD_PROFILE")


@pytest.fixture
def alpha(world, daemon):
    directory = world.project("alpha", ALPHA)
    world.stsd("allow", str(directory), check=True)
    return directory


@pytest.fixture
def beta(world, daemon):
    directory = world.project("beta", BETA)
    world.stsd("allow", str(directory), check=True)
    return directory


def loaded(environment: dict[str, str]) -> bool:
    return any(name in environment for name in CREDENTIAL_VARIABLES)


def caller_arn(world, environment: dict[str, str]) -> str:
    sts = boto3.client(
        "sts",
        endpoint_url=world.aws.endpoint,
        region_name=environment["AWS_REGION"],
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=environment["AWS_SESSION_TOKEN"],
    )
    return sts.get_caller_identity()["Arn"]


def test_entering_project_exports_working_role_credentials(world, alpha, open_shell):
    shell = open_shell()
    output = shell.cd(alpha)
    environment = shell.env()

    assert environment["STSD_PROFILE"] == "alice-sts"
    assert environment["AWS_REGION"] == environment["AWS_DEFAULT_REGION"] == "us-east-1"
    assert environment["AWS_CREDENTIAL_EXPIRATION"].endswith("Z")
    assert caller_arn(world, environment).endswith(":assumed-role/alice-sts/s3-access")
    assert "loaded alice-sts" in output


def test_moving_within_project_changes_nothing_and_runs_no_client(world, alpha, open_shell):
    (alpha / "sub" / "deeper").mkdir(parents=True)
    shell = open_shell()
    shell.cd(alpha)
    before = shell.env()
    stamp = world.runtime / "stsd" / "shells" / str(shell.process.pid)
    stamped = stamp.stat().st_mtime_ns

    outputs = [shell.cd(alpha / "sub"), shell.cd("deeper"), shell.prompt(), shell.cd(alpha)]

    assert shell.env() == before
    assert outputs == ["", "", "", ""]
    assert stamp.stat().st_mtime_ns == stamped  # the client touches it on every run: it did not run


def test_leaving_project_restores_previous_profile(world, alpha, open_shell):
    shell = open_shell()
    shell.set_var("AWS_PROFILE", "work")
    shell.set_var("AWS_REGION", "ap-south-1")
    shell.set_var("AWS_ACCESS_KEY_ID", "AKIAOUTSIDE")
    before = shell.env()

    shell.cd(alpha)
    inside = shell.env()
    assert "AWS_PROFILE" not in inside
    assert inside["AWS_REGION"] == "us-east-1"
    assert inside["AWS_ACCESS_KEY_ID"] != "AKIAOUTSIDE"

    output = shell.cd(world.home)
    assert shell.env() == before
    assert "unloaded alice-sts" in output


def test_switching_projects_changes_in_one_step(world, alpha, beta, open_shell):
    shell = open_shell()
    shell.cd(alpha)
    in_alpha = shell.env()

    shell.cd(beta)
    in_beta = shell.env()
    assert in_beta["AWS_REGION"] == "eu-west-1"
    assert in_beta["AWS_ACCESS_KEY_ID"] != in_alpha["AWS_ACCESS_KEY_ID"]
    assert caller_arn(world, in_beta).endswith(":assumed-role/alice-sts/beta")

    shell.cd(world.home)
    assert not loaded(shell.env())
    assert "AWS_REGION" not in shell.env()


def test_nested_project_nearest_file_wins(world, alpha, open_shell):
    inner = world.project("alpha/inner", BETA)
    world.stsd("allow", str(inner), check=True)
    shell = open_shell()

    shell.cd(inner)
    assert shell.env()["AWS_REGION"] == "eu-west-1"
    shell.cd(alpha)
    assert shell.env()["AWS_REGION"] == "us-east-1"


def test_untrusted_project_gets_nothing_says_how_once_and_allow_applies_at_next_prompt(
    world, daemon, open_shell
):
    project = world.project("stranger", ALPHA)
    shell = open_shell()

    output = shell.cd(project)
    assert not loaded(shell.env())
    assert f"stsd allow {project}" in output
    assert shell.prompt() == ""  # shown once per cause, not at every prompt

    shell.run("stsd allow .")
    assert shell.env()["STSD_PROFILE"] == "alice-sts"


def test_entering_untrusted_project_drops_previous_credentials(world, alpha, open_shell):
    stranger = world.project("stranger", BETA)
    shell = open_shell()
    shell.cd(alpha)

    shell.cd(stranger)
    assert not loaded(shell.env())


def test_edited_project_file_is_untrusted_at_next_prompt(world, alpha, open_shell):
    shell = open_shell()
    shell.cd(alpha)
    assert loaded(shell.env())

    output = shell.run("echo 'duration_seconds = 1800' >> .stsd.toml")
    assert not loaded(shell.env())
    assert "stsd allow" in output

    shell.run("stsd allow .")
    assert loaded(shell.env())


def test_broken_project_file_unloads_and_names_the_problem(world, alpha, open_shell):
    shell = open_shell()
    shell.cd(alpha)

    output = shell.run("echo 'region = ' >> .stsd.toml")
    assert not loaded(shell.env())
    assert ".stsd.toml" in output


def test_each_new_error_of_a_file_being_fixed_is_reported_once(world, daemon, open_shell):
    project = world.project("fixing", 'regoin = "us-east-1"\n')
    shell = open_shell()

    first = shell.cd(project)
    again = shell.prompt()
    # The next mistake (an unquoted value), written with a newer mtime than the shell's stamp.
    second = shell.run("sleep 1; printf 'profile = alice-sts\\n' > .stsd.toml")
    last = shell.prompt()

    assert "regoin" in first and "regoin" not in again
    assert 'values are quoted in TOML: profile = "alice-sts"' in second
    assert "TOML" not in last
    assert not loaded(shell.env())


def test_deleted_project_file_unloads(world, alpha, open_shell):
    shell = open_shell()
    shell.cd(alpha)

    shell.run("rm .stsd.toml")
    assert not loaded(shell.env())
    assert "__STSD_STATE" not in shell.env()


def test_denying_loaded_project_unloads_at_next_prompt(world, alpha, open_shell):
    shell = open_shell()
    shell.cd(alpha)

    shell.run("stsd deny .")
    assert not loaded(shell.env())


def test_renewal_reaches_shell_at_next_prompt(world, alpha, open_shell):
    shell = open_shell()
    shell.cd(alpha)
    first = shell.env()["AWS_ACCESS_KEY_ID"]

    renewed = daemon_request(world, {"op": "renew", "dir": str(alpha)})
    assert renewed["vars"]["AWS_ACCESS_KEY_ID"] != first
    # Fake clock: the daemon answers "ask again in >= 30 s"; rather than wait, tell the shell that
    # time has come (the same state the shell's own clock reaches then).
    shell.make_refresh_due()

    shell.prompt()
    assert shell.env()["AWS_ACCESS_KEY_ID"] == renewed["vars"]["AWS_ACCESS_KEY_ID"]


@pytest.mark.slow
def test_renewal_reaches_shell_by_its_own_clock(world, daemon, open_shell):
    """No fake clock: a 900 s session makes the daemon say "ask again in 30 s"; the daemon renews
    meanwhile, and the first prompt after that time has the fresh credentials."""
    project = world.project("short", ALPHA + "duration_seconds = 900\n")
    world.stsd("allow", str(project), check=True)
    shell = open_shell()
    shell.cd(project)
    refresh_at = int(shell.run(shell.kind.show_refresh_at).strip())
    renewed = daemon_request(world, {"op": "renew", "dir": str(project)})["vars"]["AWS_ACCESS_KEY_ID"]
    assert shell.env()["AWS_ACCESS_KEY_ID"] != renewed

    time.sleep(max(0.0, refresh_at - time.time()) + 1.5)
    shell.prompt()
    assert shell.env()["AWS_ACCESS_KEY_ID"] == renewed


def test_daemon_down_prompt_returns_with_one_message(world, daemon, alpha, open_shell):
    shell = open_shell()
    daemon.stop()

    first = shell.cd(alpha)
    second = shell.prompt()
    third = shell.cd(alpha / "..")

    assert "daemon" in first
    assert second == "" and third == ""
    assert not loaded(shell.env())


def test_daemon_down_leaving_still_restores(world, daemon, alpha, open_shell):
    shell = open_shell()
    shell.set_var("AWS_PROFILE", "work")
    shell.cd(alpha)
    daemon.stop()

    shell.cd(world.home)
    environment = shell.env()
    assert environment["AWS_PROFILE"] == "work"
    assert not loaded(environment)


def test_child_shell_outside_project_drops_inherited_credentials(world, alpha, open_shell):
    parent = open_shell()
    parent.set_var("AWS_PROFILE", "work")
    parent.cd(alpha)
    inherited = parent.env()

    # A terminal (tmux window, editor) opened elsewhere with the parent's environment.
    child = open_shell(cwd=world.home, env=inherited)
    environment = child.env()
    assert not loaded(environment)
    assert environment["AWS_PROFILE"] == "work"


def test_child_shell_inside_project_keeps_credentials_and_restores_pre_entry_values(world, alpha, open_shell):
    parent = open_shell()
    parent.set_var("AWS_PROFILE", "work")
    parent.cd(alpha)

    child = open_shell(cwd=alpha, env=parent.env())
    assert child.env()["STSD_PROFILE"] == "alice-sts"
    child.cd(world.home)
    environment = child.env()
    assert not loaded(environment)
    assert environment["AWS_PROFILE"] == "work"  # the parent's value before entry, not the project's


def test_missing_stsd_installation_is_reported_once_and_loads_nothing(
    world, alpha, open_shell, shell_kind, tmp_path
):
    # An installation the hook was pinned to, then removed (uninstalled, or a venv deleted).
    python = tmp_path / "old-install" / "python"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    hook = tmp_path / f"hook.{shell_kind.name}"
    hook.write_text(hook_text(shell_kind.name, python=str(python)))
    shell = open_shell(install=False)
    shell.run(shell_kind.source.format(path=hook))
    shell.cd(alpha)
    assert loaded(shell.env())

    python.unlink()
    shell.cd(world.home)
    assert not loaded(shell.env())  # leaving needs no client
    first = shell.cd(alpha)
    again = [shell.prompt(), shell.cd(world.home), shell.cd(alpha)]

    assert f"{python} is missing" in first
    assert not any("missing" in text for text in again)
    assert not loaded(shell.env())


def test_installing_twice_hooks_once(world, alpha, open_shell):
    shell = open_shell()
    shell.install()
    shell.install()

    assert shell.run(shell.kind.count_hooks).strip() == "1"
    assert "loaded" in shell.cd(alpha)


def test_prompt_keeps_exit_status(world, alpha, open_shell):
    shell = open_shell()
    shell.run(f"cd {alpha}; false")
    assert shell.last_status == 1
    shell.run("false")
    assert shell.last_status == 1


def test_quiet_setting_silences_information_but_not_problems(world, alpha, open_shell):
    stranger = world.project("stranger", BETA)
    shell = open_shell(STSD_QUIET="1")

    assert shell.cd(alpha) == ""
    assert loaded(shell.env())
    assert "stsd allow" in shell.cd(stranger)


# fish has no nounset/errexit options: the case applies to bash and zsh only.
@pytest.mark.parametrize("shell_kind", ["bash", "zsh"], indirect=True)
def test_strict_shell_options_do_not_break_the_hook(world, alpha, open_shell, shell_kind):
    shell = open_shell(install=False)
    shell.run(shell_kind.strict)
    shell.install()

    outputs = [shell.cd(alpha), shell.cd("/"), shell.prompt()]
    assert not any("unbound" in text or "parameter not set" in text for text in outputs)
    assert shell.run("echo alive") == "alive\n"


@pytest.mark.parametrize("shell_kind", ["bash"], indirect=True)  # PROMPT_COMMAND is bash's
def test_array_prompt_command_keeps_existing_entries(world, alpha, open_shell, shell_kind):
    shell = open_shell(install=False)
    shell.run("PROMPT_COMMAND=('echo first-entry' 'echo second-entry')")
    shell.install()

    output = shell.cd(alpha)
    assert "first-entry" in output and "second-entry" in output
    assert loaded(shell.env())


@pytest.mark.parametrize("shell_kind", ["bash"], indirect=True)  # PROMPT_COMMAND is bash's
def test_string_prompt_command_keeps_existing_entry(world, alpha, open_shell, shell_kind):
    shell = open_shell(install=False)
    shell.run("PROMPT_COMMAND='echo existing-entry'")
    shell.install()
    shell.install()

    output = shell.cd(alpha)
    assert output.count("existing-entry") == 1
    assert loaded(shell.env())


def daemon_request(world, message: dict) -> dict:
    """One protocol request straight to the world's daemon socket (what `stsd` clients send)."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(30)
        connection.connect(str(world.socket))
        connection.sendall(json.dumps({"v": 1, **message}).encode() + b"\n")
        reply = connection.makefile("rb").readline()
    decoded = json.loads(reply)
    assert decoded["ok"], decoded
    return decoded


ENDPOINT = 'profile = "alice-sts"\ncredentials = "endpoint"\n'


def test_endpoint_project_exports_the_endpoint_and_leaving_restores_keys_and_profile(
    world, daemon, open_shell
):
    project = world.project("endpoint", ENDPOINT)
    world.stsd("allow", str(project), check=True)
    shell = open_shell()
    shell.set_var("AWS_PROFILE", "work")
    shell.set_var("AWS_ACCESS_KEY_ID", "AKIAOUTSIDE")
    before = shell.env()

    shell.cd(project)
    inside = shell.env()
    assert inside["AWS_CONTAINER_CREDENTIALS_FULL_URI"].startswith("http://127.0.0.1:")
    assert inside["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        assert name not in inside, name
    assert inside["STSD_PROFILE"] == "alice-sts"
    # A real SDK in the shell's environment gets the role from the endpoint.
    code = "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])"
    arn = shell.run(f'{sys.executable} -I -c "{code}"').strip()
    assert arn.endswith(":assumed-role/alice-sts/s3-access"), arn

    shell.cd(world.home)
    assert shell.env() == before


def test_env_project_clears_and_restores_the_shells_own_container_variables(world, alpha, open_shell):
    shell = open_shell()
    shell.set_var("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials")
    shell.set_var("AWS_CONTAINER_AUTHORIZATION_TOKEN", "theirs")
    before = shell.env()
    shell.cd(alpha)
    inside = shell.env()
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in inside
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN" not in inside
    assert inside["AWS_ACCESS_KEY_ID"]
    shell.cd(world.home)
    assert shell.env() == before
