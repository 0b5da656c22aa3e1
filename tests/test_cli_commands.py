"""The client commands end to end: a real `stsd serve` daemon, the local STS (moto over HTTP, IAM
enforcement on), and the `stsd` command line run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STSD

from stsd.demo.local_aws import ACCOUNT_ID, EXTERNAL_ID, REGION, ROLE_ARN, ROLE_NAME, USER_NAME

ASSUMED_ROLE_PREFIX = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/"

ROLE_PROJECT = (  # the scenario's role, written inline in .stsd.toml
    f'role_arn = "{ROLE_ARN}"\n'
    f'source_profile = "{USER_NAME}"\n'
    f'external_id = "{EXTERNAL_ID}"\n'
    f'role_session_name = "s3-access"\n'
    f'region = "{REGION}"\n'
)
PROJECT = ROLE_PROJECT + '[env]\nAWS_DEFAULT_OUTPUT = "json"\n'

CALLER_IDENTITY = """
import json, sys, boto3
session = boto3.Session(profile_name=sys.argv[1]) if len(sys.argv) > 1 else boto3.Session()
print(session.client("sts", region_name="us-east-1").get_caller_identity()["Arn"])
"""


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, stderr
    return stderr.strip()


def caller_arn(world, env: dict[str, str], *profile: str) -> str:  # type: ignore[no-untyped-def]
    """Who the local STS says these credentials are, asked by a separate SDK process."""
    result = subprocess.run(
        [sys.executable, "-c", CALLER_IDENTITY, *profile], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def allowed_project(world, name: str = "proj", body: str = PROJECT) -> Path:  # type: ignore[no-untyped-def]
    directory = world.project(name, body)
    world.stsd("allow", str(directory), check=True)
    return directory


def secrets_of(world, daemon_vars: dict) -> list[str]:  # type: ignore[no-untyped-def]
    assert world.aws.alice is not None
    return [
        world.aws.alice.secret_access_key,
        daemon_vars["AWS_SECRET_ACCESS_KEY"],
        daemon_vars["AWS_SESSION_TOKEN"],
    ]


# -- env -------------------------------------------------------------------------------------------------


def test_env_json_gives_working_role_credentials_for_an_allowed_project(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)

    result = world.stsd("env", "--json", str(directory))

    assert result.returncode == 0, result.stderr
    variables = json.loads(result.stdout)
    assert variables["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert variables["AWS_CREDENTIAL_EXPIRATION"].endswith("Z")
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == REGION
    assert variables["AWS_DEFAULT_OUTPUT"] == "json"
    assert variables["STSD_PROFILE"] == ROLE_NAME
    assert variables["AWS_PROFILE"] is None and variables["AWS_SECURITY_TOKEN"] is None
    sdk_env = {**world.env, **{k: v for k, v in variables.items() if v is not None}}
    assert caller_arn(world, sdk_env) == ASSUMED_ROLE_PREFIX + "s3-access"


def test_env_sh_output_is_safe_to_eval_and_gives_what_json_gives(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    as_json = json.loads(world.stsd("env", "--json", str(directory), check=True).stdout)

    sh = world.stsd("env", str(directory), check=True).stdout
    # Evaluated by a real shell that had AWS_PROFILE set: what it exports afterwards is the JSON's view.
    shown = subprocess.run(
        ["bash", "--norc", "-c", 'export AWS_PROFILE=leftover; eval "$1"; env -0', "bash", sh],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    exported = dict(entry.split("=", 1) for entry in shown.split("\0") if "=" in entry)

    assert "unset AWS_PROFILE" in sh.splitlines()
    assert "AWS_PROFILE" not in exported
    for name, value in as_json.items():
        assert exported.get(name) == value, name


def test_env_dotenv_output_parses_back_to_the_variables_to_set(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    as_json = json.loads(world.stsd("env", "--format", "json", str(directory), check=True).stdout)

    dotenv = world.stsd("env", "--format", "dotenv", str(directory), check=True).stdout

    parsed = {}
    for line in dotenv.splitlines():
        name, _, quoted = line.partition("=")
        assert quoted.startswith('"') and quoted.endswith('"'), line
        parsed[name] = json.loads(quoted.replace("\\$", "$"))  # the same escapes as a JSON string, and \$
    assert parsed == {name: value for name, value in as_json.items() if value is not None}


def test_export_json_gives_the_changes_for_the_current_environment(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    env = {**world.env, "AWS_PROFILE": "leftover", "PWD": str(directory)}

    entered = subprocess.run(
        [*STSD, "export", "json"], cwd=directory, env=env, capture_output=True, text=True, check=True
    )
    changes = json.loads(entered.stdout)

    assert changes["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    assert changes["AWS_PROFILE"] is None
    inside = {k: v for k, v in {**env, **changes}.items() if v is not None}  # as the editor applies them
    left = subprocess.run(
        [*STSD, "export", "json"], cwd=world.home, env={**inside, "PWD": str(world.home)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(left.stdout)["AWS_PROFILE"] == "leftover"


def test_env_of_the_current_directory_is_the_default(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    (directory / "src").mkdir()

    result = world.stsd("env", "--json", cwd=directory / "src")

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["STSD_PROFILE"] == ROLE_NAME


def test_env_outside_any_project_is_an_empty_object(world, daemon) -> None:  # type: ignore[no-untyped-def]
    outside = world.home / "plain"
    outside.mkdir()

    result = world.stsd("env", "--json", str(outside))

    assert (result.returncode, result.stdout.strip()) == (0, "{}")


def test_untrusted_project_gets_nothing_and_says_how_to_allow(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("proj", PROJECT)

    result = world.stsd("env", "--json", str(directory))

    assert result.returncode == 1
    assert result.stdout == ""
    message = one_line(result.stderr)
    assert message.startswith(f"stsd: {directory / '.stsd.toml'} ")
    assert f"stsd allow {directory}" in message


def test_edited_project_is_untrusted_again(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    (directory / ".stsd.toml").write_text(PROJECT.replace("s3-access", "edited"))

    result = world.stsd("env", "--json", str(directory))

    assert result.returncode == 1
    assert "not trusted" in one_line(result.stderr)


def test_denied_project_stays_denied_after_an_edit_until_allowed(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    denied = world.stsd("deny", str(directory))
    (directory / ".stsd.toml").write_text(PROJECT.replace("s3-access", "edited"))

    refused = world.stsd("env", "--json", str(directory))
    world.stsd("allow", str(directory), check=True)
    allowed = world.stsd("env", "--json", str(directory))

    assert (denied.returncode, denied.stdout.strip()) == (0, f"stsd: denied {directory / '.stsd.toml'}")
    assert refused.returncode == 1 and "denied" in one_line(refused.stderr)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")


def test_env_of_a_missing_directory_is_one_line(world, daemon) -> None:  # type: ignore[no-untyped-def]
    result = world.stsd("env", "--json", str(world.home / "nowhere"))

    assert result.returncode == 1
    assert one_line(result.stderr) == f"stsd: {world.home / 'nowhere'}: no such directory"


# -- allow / deny --------------------------------------------------------------------------------------------


def test_allow_records_trust_for_the_governing_file(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("proj", PROJECT)
    (directory / "deep" / "er").mkdir(parents=True)

    result = world.stsd("allow", str(directory / "deep" / "er"))

    assert (result.returncode, result.stdout.strip()) == (0, f"stsd: allowed {directory / '.stsd.toml'}")


def test_allow_refuses_a_broken_file_with_its_line_and_key(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("proj", "duration_seconds = 60\n" + PROJECT)

    result = world.stsd("allow", str(directory))

    assert result.returncode == 1
    message = one_line(result.stderr)
    assert message.startswith(
        f"stsd: {directory / '.stsd.toml'}:1: duration_seconds: expected whole seconds 900..43200"
    )
    assert not (Path(world.env["XDG_DATA_HOME"]) / "stsd" / "trust" / "allowed").exists()


def test_allow_without_a_project_file_says_so(world) -> None:  # type: ignore[no-untyped-def]
    plain = world.home / "plain"
    plain.mkdir()

    result = world.stsd("allow", str(plain))

    assert result.returncode == 1
    assert "no .stsd.toml in" in one_line(result.stderr)


# -- exec --------------------------------------------------------------------------------------------------


def test_exec_runs_the_command_with_the_project_credentials_and_no_profile(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    show = "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('AWS_PROFILE', 'STSD_PROFILE', 'AWS_ACCESS_KEY_ID')}))"

    result = subprocess.run(
        [sys.executable, "-m", "stsd", "exec", "--dir", str(directory), "--", sys.executable, "-c", show],
        env={**world.env, "AWS_PROFILE": "someone-else"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["AWS_PROFILE"] is None
    assert seen["STSD_PROFILE"] == ROLE_NAME
    assert seen["AWS_ACCESS_KEY_ID"].startswith("ASIA")


def test_exec_passes_the_command_exit_status_through(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)

    result = world.stsd("exec", "--dir", str(directory), "--", sys.executable, "-c", "raise SystemExit(5)")

    assert result.returncode == 5


def test_exec_outside_a_project_refuses_to_run(world, daemon) -> None:  # type: ignore[no-untyped-def]
    plain = world.home / "plain"
    plain.mkdir()

    result = world.stsd("exec", "--dir", str(plain), "--", "true")

    assert result.returncode == 1
    assert "no .stsd.toml governs" in one_line(result.stderr)


def test_exec_of_an_unknown_command_is_127(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)

    result = world.stsd("exec", "--dir", str(directory), "--", "no-such-command-stsd")

    assert result.returncode == 127
    assert one_line(result.stderr) == "stsd: no-such-command-stsd: command not found"


# -- credential-process -------------------------------------------------------------------------------------


def test_credential_process_serves_a_profile_to_the_sdk(world, daemon) -> None:  # type: ignore[no-untyped-def]
    # botocore runs credential_process itself (plain argv, no shell) and uses what it prints.
    config = world.home / "sdk-config"
    command = f"{sys.executable} -m stsd credential-process {ROLE_NAME}"
    config.write_text(f"[profile via-stsd]\ncredential_process = {command}\nregion = {REGION}\n")

    arn = caller_arn(world, {**world.env, "AWS_CONFIG_FILE": str(config)}, "via-stsd")

    assert arn.startswith(ASSUMED_ROLE_PREFIX)


def test_credential_process_prints_exactly_the_documented_document(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)

    by_profile = world.stsd("credential-process", ROLE_NAME)
    by_dir = world.stsd("credential-process", str(directory))

    for result in (by_profile, by_dir):
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert list(document) == ["Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"]
        assert document["Version"] == 1
        assert document["AccessKeyId"].startswith("ASIA")
        assert document["Expiration"].endswith("Z")
        assert result.stderr == ""


def test_credential_process_for_an_unknown_profile_fails_on_stderr_only(world, daemon) -> None:  # type: ignore[no-untyped-def]
    result = world.stsd("credential-process", "no-such-profile")

    assert result.returncode == 1
    assert result.stdout == ""
    assert "no-such-profile" in one_line(result.stderr)


# -- status ---------------------------------------------------------------------------------------------------


def test_status_shows_daemon_session_and_project_but_no_secret(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    variables = json.loads(world.stsd("env", "--json", str(directory), check=True).stdout)

    text = world.stsd("status", cwd=directory)
    as_json = world.stsd("status", "--json", cwd=directory)

    assert text.returncode == 0, text.stderr
    assert f"pid {daemon.process.pid}" in text.stdout
    assert ASSUMED_ROLE_PREFIX + "s3-access" in text.stdout
    assert f"project   {directory / '.stsd.toml'} ({ROLE_NAME}): allowed" in text.stdout
    reply = json.loads(as_json.stdout)
    assert reply["daemon"]["pid"] == daemon.process.pid
    assert reply["project"]["trust"] == "allowed"
    for secret in secrets_of(world, variables):
        assert secret not in text.stdout
        assert secret not in as_json.stdout


def test_status_without_a_daemon_says_so_and_still_shows_the_project(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("proj", PROJECT)

    text = world.stsd("status", cwd=directory)
    as_json = world.stsd("status", "--json", cwd=directory)

    assert text.returncode == 3
    assert text.stdout.startswith("daemon    not running")
    assert "stsd start" in text.stdout
    assert f"{directory / '.stsd.toml'} ({ROLE_NAME}): untrusted; run: stsd allow {directory}" in text.stdout
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["project"] == {
        "path": str(directory / ".stsd.toml"),
        "name": ROLE_NAME,
        "trust": "untrusted",
    }


# -- autostart ------------------------------------------------------------------------------------------------


def test_first_request_starts_the_daemon_when_autostart_is_on(world) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    env = {k: v for k, v in world.env.items() if k != "STSD_NO_AUTOSTART"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "stsd", "env", "--json", str(directory)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["AWS_ACCESS_KEY_ID"].startswith("ASIA")
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "stsd", "stop"], env=env, capture_output=True, text=True, timeout=30
        )
    assert stop.returncode == 0, stop.stderr
    assert not os.path.exists(world.socket)


@pytest.mark.parametrize("target", ["..", "./", "sub/"])
def test_credential_process_reads_path_like_targets_as_directories(world, daemon, target: str) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    (directory / "sub" / "inner").mkdir(parents=True)

    result = world.stsd(
        "credential-process", target, cwd=directory / "sub" / "inner" if target == ".." else directory
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["AccessKeyId"].startswith("ASIA")


def test_env_follows_the_shell_path_through_a_symlinked_directory(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    elsewhere = world.home / "elsewhere"
    elsewhere.mkdir()
    (directory / "data").symlink_to(elsewhere)

    # As after `cd proj/data`: the kernel's cwd is `elsewhere`, the shell's $PWD is the path taken.
    result = subprocess.run(
        [sys.executable, "-m", "stsd", "env", "--json"],
        cwd=elsewhere,
        env={**world.env, "PWD": str(directory / "data")},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["STSD_PROFILE"] == ROLE_NAME


def test_allow_accepts_the_project_file_itself(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("proj", PROJECT)

    result = world.stsd("allow", str(directory / ".stsd.toml"))

    assert (result.returncode, result.stdout.strip()) == (0, f"stsd: allowed {directory / '.stsd.toml'}")


def test_commands_in_a_deleted_directory_give_one_line(world) -> None:  # type: ignore[no-untyped-def]
    gone = world.home / "gone"
    script = f'mkdir "{gone}" && cd "{gone}" && rmdir "{gone}" && exec "$@"'

    for command in (["env", "--json"], ["status"], ["allow"]):
        result = subprocess.run(
            ["sh", "-c", script, "sh", sys.executable, "-m", "stsd", *command],
            env={k: v for k, v in world.env.items() if k != "PWD"},
            capture_output=True,
            text=True,
            timeout=30,
        )

        assert result.returncode == 1, command
        assert one_line(result.stderr) == "stsd: the current directory no longer exists; cd to another one"


@pytest.mark.timeout(20)
def test_autostart_that_fails_reports_it_at_once(world) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    blocker = world.home / "not-a-directory"
    blocker.write_text("")
    # The daemon's log directory cannot be created under a file: `stsd start` gives up.
    env = {k: v for k, v in world.env.items() if k != "STSD_NO_AUTOSTART"}
    env["XDG_STATE_HOME"] = str(blocker / "state")

    result = subprocess.run(
        [sys.executable, "-m", "stsd", "env", "--json", str(directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    # The reason itself, not "run stsd start to see why".
    assert (
        one_line(result.stderr)
        == f"stsd: the daemon could not start: {blocker / 'state' / 'stsd'}: Not a directory"
    )
    assert not world.socket.exists()


def test_terminal_control_characters_in_a_path_are_shown_escaped(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("evil\x1b[2J", PROJECT)

    status = world.stsd("status", cwd=directory)
    allow = world.stsd("allow", str(directory))

    assert "\x1b" not in status.stdout + allow.stdout
    assert "evil\\x1b[2J" in status.stdout and "evil\\x1b[2J" in allow.stdout


def test_status_says_not_running_once_and_names_a_broken_file_once(world) -> None:  # type: ignore[no-untyped-def]
    directory = world.project("broken", 'regoin = "us-east-1"\n')

    text = world.stsd("status", cwd=directory)

    daemon_line, project_line = text.stdout.splitlines()
    assert daemon_line.count("not running") == 1, daemon_line
    assert project_line.startswith("project   broken: ")
    assert project_line.count(str(directory / ".stsd.toml")) == 1, project_line


def test_status_shows_the_expiry_the_shell_variable_carries(world, daemon) -> None:  # type: ignore[no-untyped-def]
    directory = allowed_project(world)
    variables = json.loads(world.stsd("env", "--json", str(directory), check=True).stdout)

    status = json.loads(world.stsd("status", "--json", check=True).stdout)

    used_by = f"~/{(directory / '.stsd.toml').relative_to(world.home)}"
    [session] = [s for s in status["sessions"] if used_by in s["used_by"]]
    assert session["expires_at"] == variables["AWS_CREDENTIAL_EXPIRATION"]
