"""`stsd demo`: the scripted walk-through succeeds step by step against its own embedded STS, touches
nothing of the user's real AWS setup, and always stops its daemon and removes its temp directory."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import _AMBIENT, REPO, STSD

from stsd.demo.local_aws import LocalAws
from stsd.demo.script import STEPS, run_step
from stsd.demo.world import create_world

DEMO_TIMEOUT_S = 240


def users_real_environment(tmp_path: Path) -> dict[str, str]:
    """A user's world the demo must neither use nor change: keys in ~/.aws, AWS_* variables pointing at
    them and at an endpoint that answers nothing, a socket path of their own."""
    home = tmp_path / "real-home"
    aws = home / ".aws"
    aws.mkdir(parents=True)
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAREALUSERKEY00000\naws_secret_access_key = real-secret\n"
    )
    (aws / "config").write_text("[default]\nregion = eu-west-1\n")
    env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
    env.update(
        HOME=str(home),
        PYTHONPATH=str(REPO),
        AWS_ACCESS_KEY_ID="AKIAAMBIENTKEY000000",
        AWS_SECRET_ACCESS_KEY="ambient-secret",
        AWS_PROFILE="default",
        AWS_CONFIG_FILE=str(aws / "config"),
        AWS_ENDPOINT_URL="http://127.0.0.1:9",  # discard port: a leaked endpoint fails every step
        AWS_EC2_METADATA_DISABLED="true",
        STSD_SOCKET=str(tmp_path / "real.sock"),
        __STSD_STATE="state-of-the-users-own-hooked-shell",
    )
    return env


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def demo_daemon_and_world(output: str) -> tuple[int, Path]:
    match = re.search(r"Daemon pid (\d+); world in (\S+) ", output)
    assert match, output
    return int(match.group(1)), Path(match.group(2))


def test_scripted_demo_goes_as_the_guide_says_without_touching_the_real_aws_setup(tmp_path: Path) -> None:
    env = users_real_environment(tmp_path)
    real_home_before = snapshot(Path(env["HOME"]))

    result = subprocess.run(
        [*STSD, "demo", "--script"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT_S,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("  -> ok\n") == len(STEPS), result.stdout
    assert "UNEXPECTED" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    pid, world = demo_daemon_and_world(result.stdout)
    assert not psutil.pid_exists(pid)
    assert not world.exists()
    assert snapshot(Path(env["HOME"])) == real_home_before
    assert not (tmp_path / "real.sock").exists()


def test_a_role_step_is_reported_unexpected_when_no_daemon_serves(local_aws: LocalAws) -> None:
    """The demo's verdicts can fail: without a daemon, the project gets no role and the step says so."""
    world = create_world(local_aws)
    try:
        step = next(step for step in STEPS if ":assumed-role/" in step.shows)
        result = run_step(step, world)
    finally:
        world.remove()

    assert not result.as_expected
    assert ":user/alice" in result.output  # still alice's own identity


@pytest.mark.parametrize(
    ("arguments", "signum", "exit_code"),
    [([], signal.SIGINT, 130), (["--script"], signal.SIGTERM, 143)],
    ids=["ctrl-c-without-terminal", "sigterm-scripted"],
)
def test_interrupted_demo_stops_its_daemon_and_removes_its_files(
    tmp_path: Path, arguments: list[str], signum: int, exit_code: int
) -> None:
    process = subprocess.Popen(
        [*STSD, "demo", *arguments],
        env=users_real_environment(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = ""
        assert process.stdout is not None
        while "Daemon pid" not in seen:
            line = process.stdout.readline()
            assert line, f"demo ended early: {seen}{process.stderr.read() if process.stderr else ''}"
            seen += line
        pid, world = demo_daemon_and_world(seen)
        assert psutil.pid_exists(pid) and world.exists()
        if not arguments:
            assert "stdin is not a terminal: running the scripted demo" in seen

        process.send_signal(signum)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == exit_code, rest + errors
    assert "Traceback" not in errors
    assert not psutil.pid_exists(pid)
    assert not world.exists()


# The quotes keep the terminal's echo of the command line from matching the end marker.
PRINT_CREDENTIAL_VARIABLES = 'printenv AWS_ACCESS_KEY_ID AWS_PROFILE; echo "end-of""-env"'
_TERMINAL_CONTROL = re.compile(r"\x1b(\[[0-9;?]*[a-zA-Z]|\][^\x07]*\x07|\([A-Z]|[=>])")


def printed_lines(text: str) -> list[str]:
    """What the commands printed, one stripped line each, without the line editor's control codes."""
    lines = [line.strip() for line in _TERMINAL_CONTROL.sub("", text).replace("\r", "\n").split("\n")]
    return [line for line in lines if line and "printenv" not in line]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_interactive_demo_shell_gets_the_role_inside_the_project_only(tmp_path: Path, shell: str) -> None:
    pexpect = pytest.importorskip("pexpect")
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    env = users_real_environment(tmp_path)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "stsd", "demo", "--shell", shell],
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 250),
    )
    try:
        child.expect(r"throwaway world in (\S+) ")
        world = Path(child.match.group(1))
        child.expect(r"daemon pid (\d+), socket")
        pid = int(child.match.group(1))
        prompt = r"\(stsd demo\) [^\r\n]*[#$>] "
        child.expect(prompt)

        child.sendline("cd project")
        child.expect("stsd allow")  # untrusted: the hook says what to do
        child.expect(prompt)
        child.sendline("stsd allow")
        child.expect(r"\[alice-sts\] ?[#$%>] ")  # the next prompt has the role loaded
        child.sendline(PRINT_CREDENTIAL_VARIABLES)
        child.expect("end-of-env\r\n")
        inside = child.before
        child.sendline("cd ..")
        child.expect(prompt)
        child.sendline(PRINT_CREDENTIAL_VARIABLES)
        child.expect("end-of-env\r\n")
        outside = child.before
        child.sendline("exit")
        child.expect("Demo over")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():  # a failed expectation: let the demo clean up before the pty goes away
            child.kill(signal.SIGTERM)
            child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=30)
        child.close(force=True)

    inside_lines, outside_lines = printed_lines(inside), printed_lines(outside)
    assert any(line.startswith("ASIA") for line in inside_lines), inside  # the role's session key
    assert "alice" not in inside_lines, inside  # AWS_PROFILE is cleared inside
    assert "alice" in outside_lines, outside  # and back once outside
    assert not any(line.startswith("ASIA") for line in outside_lines), outside
    assert child.exitstatus == 0
    assert not psutil.pid_exists(pid)
    assert not world.exists()


def test_demo_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # sys.modules[name] = None makes `import moto` fail as if the extra were not installed.
    code = "import sys; sys.modules['moto'] = None; from stsd.cli import main; sys.exit(main(['demo']))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=users_real_environment(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert (
        result.stderr
        == "stsd: the demo needs its extra; in a checkout run: make demo (or: pip install '.[demo]' into stsd's venv)\n"
    )
