"""The README's commands and messages, run and provoked for real in a world like the demo's, and compared.

Every shell command in the README's `sh`, `bash`, `console` and `ini` code blocks that runs `stsd` is
run by a test here (COVERED names the test for each of its occurrences), or is a plain one-line `stsd ...`
command run as it is inside a trusted project (test_plain_command_runs_as_shown), or is listed in SKIPPED
with the reason it cannot run in a test: a new command in the README fails
test_every_readme_command_is_run_or_skipped_with_a_reason until it is one of these. The commands are taken
from the README at test time, never copied here, so an edit of a command is run as edited. Every message
the troubleshooting table quotes, and every inline quote outside code blocks that is a message (a `stsd: `
line, or an error's shape: `... denied: ...`, `... failed (exit 1): ...`), is provoked for real (PROVOKED)
and compared with what stsd printed.

How a quote is compared with real output (`quote_pattern`): the quote must match a whole line of the output,
apart from its indentation (a console block: all its lines, in order, and nothing else), where
- `...` or `…` in a line stands for any text on that line; a line that is only `...` for any lines;
- the upper-case words DIR, SOCKET, NAME and N stand for one word (a path, a variable, a number);
- a UTC time (`2030-01-01T20:15:03Z`) stands for any UTC time, a duration (`11h42m`, `41m12s`) for any;
- an example value the README uses for the world's own (its SSO start URL, the default session name
  `stsd-alice@laptop`, the code `123456`) stands for that test's value, given explicitly by each test;
- a console line's trailing `  # comment` (two spaces or more before `#`) is the README's note, not output.
Everything else must be printed exactly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, STSD, Daemon, World
from faultproxy import FaultProxy
from mfa_stub import MFA_SERIAL, StsMfaStub, totp, wrong_code
from security.conftest import (
    NOBODY,
    FakeDaemon,
    as_root,
    fake_replies,
    no_autostart_removed,
    stop_world_daemons,
)
from shells.conftest import KINDS, PROMPT, InteractiveShell, _clean, shell_env
from sso_stub import START_URL, SsoWorld
from test_aws_config_endpoint import PROJECT as AWS_CONFIG_PROJECT
from test_aws_config_endpoint import aws_config_world, certificate, tls_proxy
from test_aws_config_endpoint import write_config as write_aws_config

from stsd.daemon.config import default_role_session_name
from stsd.demo.local_aws import USER_ARN, LocalAws

__all__ = [
    "aws_config_world",
    "certificate",
    "tls_proxy",
]  # fixtures, shared with test_aws_config_endpoint.py

README = (REPO / "README.md").read_text()


# -- the README, read as Markdown ------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    info: str  # the fence's language
    lines: tuple[str, ...]
    closed: bool


@dataclass(frozen=True)
class Command:
    block: Block
    text: str  # as typed, heredoc lines included, without the trailing comment
    note: str  # the trailing `# ...` comment
    shown: tuple[str, ...]  # console blocks: what the README shows it printing


_OPENING = re.compile(r" {0,3}(`{3,}|~{3,})\s*([^`\s]*).*")
COMMAND_BLOCKS = ("sh", "bash", "console", "ini")
_RUNS_STSD = re.compile(r"(?<![\w/.~-])stsd(?![\w/.-])")
_COMMENT = re.compile(r"\s+#\s.*$")
_HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


def code_blocks(text: str = README) -> list[Block]:
    """Fenced code blocks as CommonMark reads them: a closing fence is the opening's character, at least
    as many, and nothing but spaces after it."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _OPENING.fullmatch(lines[index])
        if not opening:
            index += 1
            continue
        fence, start = opening.group(1), index
        closing = re.compile(rf" {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*")
        index += 1
        while index < len(lines) and not closing.fullmatch(lines[index]):
            index += 1
        body = tuple(lines[start + 1 : index])
        blocks.append(Block(start + 1, opening.group(2), body, closed=index < len(lines)))
        index += 1
    return blocks


def _split_comment(line: str) -> tuple[str, str]:
    comment = _COMMENT.search(line)
    if not comment:
        return line.rstrip(), ""
    return line[: comment.start()].rstrip(), comment.group().strip()


def commands(text: str = README) -> list[Command]:
    """Every command of the command blocks: shell lines (a heredoc with its body), console `$ ` lines with
    the lines shown after them, and the commands an ini block's `credential_process =` runs."""
    found: list[Command] = []
    for block in code_blocks(text):
        if block.info not in COMMAND_BLOCKS:
            continue
        lines = list(block.lines)
        while lines:
            line = lines.pop(0)
            if block.info == "ini":
                if line.startswith("credential_process ="):
                    command, note = _split_comment(line.split("=", 1)[1].strip())
                    found.append(Command(block, command, note, ()))
                continue
            if block.info == "console":
                if not line.startswith("$ "):
                    continue
                command, note = _split_comment(line[2:])
                shown = []
                while lines and not lines[0].startswith("$ "):
                    shown.append(lines.pop(0))
                found.append(Command(block, command, note, tuple(shown)))
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            command, note = _split_comment(line)
            heredoc = _HEREDOC.search(command)
            if heredoc:
                body = []
                while lines and (body[-1:] != [heredoc.group(1)]):
                    body.append(lines.pop(0))
                command = "\n".join([command, *body])
            found.append(Command(block, command, note, ()))
    return found


def stsd_commands() -> list[Command]:
    return [command for command in commands() if _RUNS_STSD.search(command.text.splitlines()[0])]


def block_of(command_text: str, containing: str = "") -> list[Command]:
    """The commands of the one block holding `command_text` (and `containing` in what it shows)."""
    blocks = {
        command.block
        for command in commands()
        if command.text == command_text and containing in "\n".join(command.shown)
    }
    assert len(blocks) == 1, f"README blocks running {command_text!r} showing {containing!r}: {blocks}"
    [block] = blocks
    return [command for command in commands() if command.block == block]


def troubleshooting_quotes() -> list[str]:
    section = README[README.index("## Troubleshooting") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (.+?) \| .+ \|$", section, re.MULTILINE)
    return [quote for row in rows[1:] for quote in re.findall(r"`([^`]+)`", row)]  # [0]: the header


# An inline quote is a message when it is a `stsd: ` line, an error's shape (`... denied: ...`,
# `... failed (exit 1): ...`) or advice (`...: run stsd ...`); other inline code (commands, keys, paths)
# is not output.
_MESSAGE_SPAN = re.compile(r"stsd: .*|.* denied: .*|.* failed \(exit \d+\): .*|.*: run stsd .*")


def inline_messages() -> list[str]:
    """Inline message quotes outside code blocks (code blocks are compared as blocks), on one line."""
    lines = README.splitlines()
    for block in code_blocks():
        for index in range(block.line - 1, block.line + len(block.lines) + 1):
            lines[index] = ""
    spans = [re.sub(r"\s*\n\s*", " ", span) for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", "\n".join(lines))]
    return [span for span in spans if _MESSAGE_SPAN.fullmatch(span)]


# -- comparing a quote with real output ------------------------------------------------------------------

TIMESTAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"
DURATION = r"(?:\d+h)?\d+m(?:\d+s)?"
_PLACEHOLDER_WORDS = ("DIR", "SOCKET", "NAME", "N")
_NOTE = re.compile(r"\s{2,}#\s.*$")


def quote_pattern(quote: str, examples: dict[str, str] | None = None) -> str:
    """A regular expression of one quoted line, per the rules in this module's docstring."""
    examples = examples or {}
    tokens = re.compile(
        "|".join(
            [
                *(re.escape(example) for example in sorted(examples, key=len, reverse=True)),
                r"\.\.\.|…",
                TIMESTAMP,
                r"\b\d+h\d+m\b|\b\d+m\d+s\b",
                rf"\b(?:{'|'.join(_PLACEHOLDER_WORDS)})\b",
            ]
        )
    )
    pattern, position = [], 0
    for token in tokens.finditer(quote):
        pattern.append(re.escape(quote[position : token.start()]))
        text = token.group()
        if text in examples:
            pattern.append(re.escape(examples[text]))
        elif text in ("...", "…"):
            pattern.append(".*?")
        elif re.fullmatch(TIMESTAMP, text):
            pattern.append(TIMESTAMP)
        elif text in _PLACEHOLDER_WORDS:
            pattern.append(r"\S+")
        else:
            pattern.append(DURATION)
        position = token.end()
    pattern.append(re.escape(quote[position:]))
    return "".join(pattern)


def assert_shows(shown: tuple[str, ...], output: str, examples: dict[str, str] | None = None) -> None:
    """`output` is exactly the lines `shown` (a console block's), with the placeholders above."""
    pattern = ""
    for line in shown:
        line = _NOTE.sub("", line)
        pattern += (
            r"(?:[^\n]*\n)*?" if line.strip() in ("...", "…") else quote_pattern(line, examples) + r"\n"
        )
    assert re.fullmatch(pattern, output), f"README shows:\n{chr(10).join(shown)}\nstsd printed:\n{output}"


def assert_says(quote: str, output: str, examples: dict[str, str] | None = None) -> None:
    """One line of `output` is `quote` (with the placeholders above), with or without the `stsd: ` prefix
    and the line's indentation."""
    pattern = quote_pattern(quote, examples)
    lines = [line.strip() for line in output.splitlines()]  # status indents its lines
    assert any(
        re.fullmatch(pattern, line) or re.fullmatch(pattern, line.removeprefix("stsd: ")) for line in lines
    ), f"README quotes:\n{quote}\nstsd printed:\n{output}"


def test_quote_patterns_hold_placeholders_and_nothing_else() -> None:
    pattern = quote_pattern("refusing DIR: it is owned by uid N, not you; ...")
    assert re.fullmatch(pattern, "refusing /tmp/x: it is owned by uid 7, not you; remove it")
    assert not re.fullmatch(pattern, "refusing /tmp/x: it is owned by uid 7, not yours; remove it")
    assert not re.fullmatch(pattern, "refusing /tmp/x: it is owned by uid 7 not you; remove it")
    timed = quote_pattern("stsd: held until 2030-01-01T20:15:03Z (11h42m left)")
    assert re.fullmatch(timed, "stsd: held until 2026-12-01T14:00:00Z (9h59m left)")
    assert not re.fullmatch(timed, "stsd: held until tomorrow (9h59m left)")
    example = quote_pattern(
        "open https://corp.awsapps.com/start", {"https://corp.awsapps.com/start": "http://x/"}
    )
    assert re.fullmatch(example, "open http://x/")
    assert not re.fullmatch(example, "open https://corp.awsapps.com/start")


# -- the inventory ----------------------------------------------------------------------------------------

# command as the README types it -> the test here that runs it, one per occurrence in the README
COVERED = {
    'eval "$(stsd hook bash)"': ("test_quickstart_runs_as_written_in_bash",),
    'eval "$(stsd hook zsh)"': ("test_install_lines_install_the_hook_and_print_nothing",),
    "stsd hook fish | source": ("test_install_lines_install_the_hook_and_print_nothing",),
    "stsd allow": ("test_quickstart_runs_as_written_in_bash",),
    "stsd stop": ("test_quickstart_runs_as_written_in_bash",),
    "stsd credential-process --dir ~/src/myproject": (
        "test_credential_process_line_serves_an_sdk_without_a_shell",
    ),
    "stsd install-service": ("test_install_service_writes_the_units_it_says",),
    "stsd mfa": ("test_mfa_console_shows_what_stsd_mfa_and_the_hook_print",),
    "stsd status": ("test_mfa_console_shows_what_stsd_mfa_and_the_hook_print", "test_sso_console_blocks"),
    """echo 'profile = "dev"' > .stsd.toml && stsd allow""": ("test_sso_console_blocks",),
    "stsd login": ("test_sso_console_blocks",),
}
# command as the README types it -> why no test runs it
SKIPPED = {
    "systemctl --user disable --now stsd.socket stsd.service && stsd install-service --uninstall": (
        "needs a systemd user manager; --uninstall and its refusal while the socket is enabled are run in "
        "tests/test_install_service.py, the units under systemd in tests/test_systemd.py"
    ),
    "pipx uninstall stsd": "would uninstall the stsd under test; the install path runs in CI on a fresh venv",
}


def test_every_code_block_of_the_readme_is_closed_where_it_seems_to_be() -> None:
    for block in code_blocks():
        assert block.closed, f"README.md:{block.line}: the code block is never closed"
        stray = [line for line in block.lines if line.lstrip().startswith(("```", "~~~"))]
        assert not stray, (
            f"README.md:{block.line}: a fence with text after it does not close the block: {stray}"
        )


def plain_commands() -> list[Command]:
    """`stsd ...` lines neither COVERED nor SKIPPED: run as they are by test_plain_command_runs_as_shown."""
    return [
        command
        for command in stsd_commands()
        if command.block.info != "ini"
        and command.text.startswith("stsd ")
        and "\n" not in command.text
        and command.text not in COVERED
        and command.text not in SKIPPED
    ]


def test_every_readme_command_is_run_or_skipped_with_a_reason() -> None:
    found = {command.text for command in stsd_commands()}
    assert not set(COVERED) & set(SKIPPED)
    unlisted = found - set(COVERED) - set(SKIPPED) - {command.text for command in plain_commands()}
    assert not unlisted, (
        f"README commands neither run here (COVERED, or plain `stsd ...` lines) nor in SKIPPED with a "
        f"reason: {unlisted}"
    )
    stale = (set(COVERED) | set(SKIPPED)) - found
    assert not stale, f"listed here but no longer in the README: {stale}"
    texts = [command.text for command in stsd_commands()]
    for text, tests in COVERED.items():
        assert texts.count(text) == len(tests), f"{text!r}: {texts.count(text)} in the README, run by {tests}"
    for name in {name for tests in COVERED.values() for name in tests}:
        assert callable(globals().get(name)), f"COVERED names {name}, which is not a test here"


# -- the worlds -------------------------------------------------------------------------------------------


@pytest.fixture
def autostart_env(world: World) -> Iterator[dict[str, str]]:
    """The world's environment as a user's is: the first client command starts the daemon (stopped after)."""
    yield no_autostart_removed(world.env)
    stop_world_daemons(world)


def open_shell(kind: str, env: dict[str, str], cwd: Path, scratch: Path) -> InteractiveShell:
    if not KINDS[kind].available():
        pytest.skip(f"{kind} is not installed (CI installs it in .ci/run)")
    scratch.mkdir(exist_ok=True)
    return InteractiveShell(KINDS[kind], shell_env(env), cwd, scratch)


# -- the commands ---------------------------------------------------------------------------------------


def test_quickstart_runs_as_written_in_bash(
    world: World, local_aws: LocalAws, autostart_env: dict[str, str], tmp_path: Path
) -> None:
    """Install (the bash line), the quickstart block line by line in an interactive bash, as a new user
    with no ~/.aws yet, with autostart as by default; then `stsd stop` from Uninstall."""
    assert local_aws.alice is not None
    for name in ("credentials", "config"):
        (world.home / ".aws" / name).unlink()
    (world.home / "src" / "myproject").mkdir(parents=True)  # the user's project
    keys = {"AKIA...": local_aws.alice.access_key_id, "= ...": f"= {local_aws.alice.secret_access_key}"}
    [install] = [c for c in stsd_commands() if c.text == 'eval "$(stsd hook bash)"']
    quickstart = block_of("stsd allow")
    [stop] = [command for command in block_of("stsd stop") if command.text == "stsd stop"]
    shell = open_shell("bash", autostart_env, world.home, tmp_path / "bash")
    try:
        assert shell.run(install.text) == "" and shell.last_status == 0
        before = {k: v for k, v in shell.env().items() if k.startswith("AWS_")}
        printed = {}
        for command in quickstart:
            text = command.text
            for example, real in keys.items():
                text = text.replace(example, real)
            printed[command.text] = shell.run(text)
            assert shell.last_status == 0, (command.text, printed[command.text])
        identity = json.loads(printed["aws sts get-caller-identity"])
        [arn] = re.findall(r"arn:\S+", next(c for c in quickstart if c.text.startswith("aws sts")).note)
        examples = {"stsd-alice@laptop": default_role_session_name()}
        assert re.fullmatch(quote_pattern(arn, examples), identity["Arn"]), (arn, identity)
        assert {k: v for k, v in shell.env().items() if k.startswith("AWS_")} == before
        shell.run(stop.text)
        assert shell.last_status == 0
    finally:
        shell.close()
    assert not world.socket.exists(), "stsd stop left the daemon's socket"


@pytest.mark.parametrize("kind", ["zsh", "fish"])
def test_install_lines_install_the_hook_and_print_nothing(
    world: World, daemon: Daemon, kind: str, tmp_path: Path
) -> None:
    [line] = [c for c in stsd_commands() if f"stsd hook {kind}" in c.text]
    assert line.note.endswith(("zshrc", "config.fish"))
    project = world.project("app", 'profile = "alice-sts"\n')
    assert world.stsd("allow", str(project)).returncode == 0
    shell = open_shell(kind, world.env, world.home, tmp_path / kind)
    try:
        assert shell.run(line.text) == "" and shell.last_status == 0
        shell.cd(project)
        assert shell.env()["STSD_PROFILE"] == "alice-sts"
    finally:
        shell.close()


def test_credential_process_line_serves_an_sdk_without_a_shell(world: World, daemon: Daemon) -> None:
    [command] = [c for c in stsd_commands() if c.text.startswith("stsd credential-process")]
    [block] = [b for b in code_blocks() if command.text in "\n".join(b.lines)]
    project = world.home / "src" / "myproject"
    project.mkdir(parents=True)
    (project / ".stsd.toml").write_text('profile = "alice-sts"\n')
    assert world.stsd("allow", str(project)).returncode == 0
    config = world.home / ".aws" / "config"
    config.write_text(config.read_text() + "\n" + "\n".join(block.lines) + "\n")
    # The profile names no region (the README's has none); a user's SDK takes it from elsewhere.
    env = {
        **world.env,
        "PATH": f"{Path(sys.executable).parent}:{world.env['PATH']}",
        "AWS_DEFAULT_REGION": "us-east-1",
    }

    # The AWS CLI runs the line as botocore does: split into words, no shell, so no `~` expansion.
    done = subprocess.run(
        [str(Path(sys.executable).parent / "aws"), "sts", "get-caller-identity", "--profile", "myproject"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert ":assumed-role/alice-sts/" in json.loads(done.stdout)["Arn"]


@pytest.mark.parametrize(
    "command",
    [pytest.param(command, id=command.text) for command in plain_commands()]
    or [
        pytest.param(None, marks=pytest.mark.skip(reason="every `stsd ...` line of the README is in COVERED"))
    ],
)
def test_plain_command_runs_as_shown(world: World, daemon: Daemon, command: Command, tmp_path: Path) -> None:
    """A plain `stsd ...` line, typed in an interactive bash inside a trusted alice-sts project (its
    ~/src/myproject): it succeeds, and prints what the README shows when it shows anything."""
    project = world.home / "src" / "myproject"
    project.mkdir(parents=True)
    (project / ".stsd.toml").write_text('profile = "alice-sts"\n')
    assert world.stsd("allow", str(project)).returncode == 0
    shell = open_shell("bash", world.env, project, tmp_path / "bash")
    try:
        shell.run(KINDS["bash"].install)
        output = shell.run(command.text)
    finally:
        shell.close()

    assert shell.last_status == 0, output
    if command.shown:
        assert_shows(command.shown, output, {"/home/alice/src/myproject": str(project)})


def test_status_exits_as_the_commands_table_says(world: World) -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `stsd status"))
    running, not_running, other = map(
        int,
        re.search(r"Exit status: (\d+) running, (\d+) not running .*, (\d+) any other error", row).groups(),
    )

    assert world.stsd("status").returncode == not_running
    daemon = Daemon(world)
    try:
        assert world.stsd("status").returncode == running
    finally:
        daemon.stop()
    world.socket.parent.chmod(0o755)  # an unsafe socket directory: an error, not "not running"
    assert world.stsd("status").returncode == other


def test_install_service_writes_the_units_it_says(world: World) -> None:
    [command] = [c for c in stsd_commands() if c.text == "stsd install-service"]
    written = command.note.removeprefix("# writes ")
    env = {**world.env, "PATH": f"{Path(sys.executable).parent}:{world.env['PATH']}"}

    done = subprocess.run(["bash", "-c", command.text], env=env, capture_output=True, text=True, timeout=60)
    listed = subprocess.run(["bash", "-c", f"ls {written}"], env=env, capture_output=True, text=True)

    assert done.returncode == 0, done.stderr
    assert listed.returncode == 0 and len(listed.stdout.split()) == 2, listed.stderr


def wait_for_identities(world: World, timeout: float = 30) -> None:
    """Status shows a source's identity once the daemon has asked STS for it, in the background after
    the first fetch; the README's status blocks show it, so wait for it (bounded; no timing asserted)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sources = json.loads(world.stsd("status", "--json", check=True).stdout)["sources"]
        if sources and all(source["identity_arn"] for source in sources):
            return
        time.sleep(0.1)
    raise AssertionError(f"no identity in status after {timeout}s: {sources}")


def type_answering(shell: InteractiveShell, line: str, question: str, answer: str) -> str:
    """Type `line`, answer its terminal question; what was printed up to the next prompt (hook included)."""
    shell.process.sendline(line)
    shell.process.expect("\r\n")
    shell.process.expect(re.escape(question))
    asked = shell.process.before + shell.process.after
    shell.process.sendline(answer)
    shell.process.expect(PROMPT)
    shell.last_status = int(shell.process.match.group(1))
    return _clean(asked + shell.process.before)


@pytest.fixture
def mfa_daemon(mfa_world: World) -> Iterator[Daemon]:
    running = Daemon(mfa_world)
    yield running
    running.stop()


def test_mfa_console_shows_what_stsd_mfa_and_the_hook_print(
    mfa_world: World, mfa_daemon: Daemon, mfa_sts: StsMfaStub, tmp_path: Path
) -> None:
    [mfa, *_] = block_of("stsd mfa")
    [status] = block_of("stsd status", "(mfa-session)")
    project = mfa_world.project("proj", 'profile = "alice-mfa"\n')
    assert mfa_world.stsd("allow", str(project)).returncode == 0
    shell = open_shell("bash", mfa_world.env, mfa_world.home, tmp_path / "bash")
    try:
        shell.run(KINDS["bash"].install)
        entered = shell.cd(project)
        code = totp()
        question = quote_pattern(mfa.shown[0]).split(r"\ 123456")[0]
        unlocked = type_answering(shell, mfa.text, question.replace("\\", ""), code)
        assert shell.last_status == 0, unlocked
        wait_for_identities(mfa_world)
        shown = shell.run(status.text)
    finally:
        shell.close()

    assert_says("stsd: alice needs an MFA code: run stsd mfa", entered)
    assert_shows(mfa.shown, unlocked, {"123456": code, "arn:aws:iam::123456789012:mfa/alice": MFA_SERIAL})
    assert_shows(status.shown, shown)


def test_sso_console_blocks(sso_world: SsoWorld, world: World, tmp_path: Path) -> None:
    [*_, allow] = block_of("""echo 'profile = "dev"' > .stsd.toml && stsd allow""")
    [login] = block_of("stsd login")
    [status] = block_of("stsd status", "(sso)")
    sso_world.sign_in()
    daemon = Daemon(world)
    project = world.home / "src" / "myproject"
    project.mkdir(parents=True)
    shell = open_shell("bash", world.env, project, tmp_path / "bash")
    try:
        shell.run(KINDS["bash"].install)
        allowed = shell.run(allow.text)
        wait_for_identities(world)
        shown = shell.run(status.text)
        signing_in = subprocess.Popen(
            [*STSD, *login.text.split()[1:]], cwd=project, env=world.env, stdout=subprocess.PIPE, text=True
        )
        assert signing_in.stdout is not None
        asked = signing_in.stdout.readline()
        code = asked.split()[-1]
        sso_world.portal.approve_once_polled(code)
        rest, _ = signing_in.communicate(timeout=30)
    finally:
        shell.close()
        daemon.stop()

    portal = {"https://corp.awsapps.com/start": START_URL}
    assert_shows(allow.shown, allowed, {"/home/alice/src/myproject": str(project)})
    identity = {"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0123/alice": USER_ARN}
    assert_shows(status.shown, shown, {**portal, **identity})
    device = {
        "https://device.sso.us-east-1.amazonaws.com/?user_code=WXYZ-ABCD": f"https://device.example.com/?user_code={code}",
        "WXYZ-ABCD": code,
    }
    assert signing_in.returncode == 0
    assert_shows(login.shown, asked + rest, {**portal, **device})


# -- the messages ---------------------------------------------------------------------------------------


def _allowed(world: World, name: str, body: str) -> Path:
    project = world.project(name, body)
    assert world.stsd("allow", str(project)).returncode == 0
    return project


def _env_errors(world: World, project: Path) -> str:
    done = world.stsd("env", str(project))
    assert done.returncode != 0, done.stdout
    return done.stderr


def untrusted(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    request.getfixturevalue("daemon")
    return _env_errors(world, world.project("app", 'profile = "alice-sts"\n'))


def unknown_key(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    request.getfixturevalue("daemon")
    body = 'profile = "alice-sts"\nregion = "us-east-1"\nduration_sekonds = 3600\n'  # line 3, as quoted
    return _env_errors(world, world.project("app", body))


def role_denied(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    request.getfixturevalue("daemon")
    body = 'role_arn = "arn:aws:iam::123456789012:role/alice-sts"\nsource_profile = "alice"\nexternal_id = "bob"\n'
    return _env_errors(world, _allowed(world, "app", body))


def certificate_untrusted(request: pytest.FixtureRequest) -> str:
    """The source profile's endpoint_url is an HTTPS endpoint whose certificate no bundle trusts."""
    world = request.getfixturevalue("aws_config_world")
    write_aws_config(world, alice=f"endpoint_url = {request.getfixturevalue('tls_proxy').endpoint}\n")
    request.getfixturevalue("daemon")
    return _env_errors(world, _allowed(world, "app", AWS_CONFIG_PROJECT))


def mfa_code_needed(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("mfa_world")
    request.getfixturevalue("mfa_daemon")
    return _env_errors(world, _allowed(world, "app", 'profile = "alice-mfa"\n'))


def mfa_code_wrong(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("mfa_world")
    request.getfixturevalue("mfa_daemon")
    project = _allowed(world, "app", 'profile = "alice-mfa"\n')
    done = world.stsd("mfa", "--dir", str(project), "--code", wrong_code())
    assert done.returncode != 0
    return done.stderr


def sign_in_needed(request: pytest.FixtureRequest) -> str:
    sso_world = request.getfixturevalue("sso_world")
    world = request.getfixturevalue("world")
    sso_world.sign_in(lifetime=-60)
    daemon = Daemon(world)
    try:
        return _env_errors(world, _allowed(world, "app", 'profile = "dev"\n'))
    finally:
        daemon.stop()


def daemon_down(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    return _env_errors(world, _allowed(world, "app", 'profile = "alice-sts"\n'))


def socket_dir_open(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    world.socket.parent.mkdir(mode=0o755)
    world.socket.parent.chmod(0o755)
    return _env_errors(world, _allowed(world, "app", 'profile = "alice-sts"\n'))


def socket_dir_foreign(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    world.socket.parent.mkdir(mode=0o700)
    os.chown(world.socket.parent, NOBODY, NOBODY)
    return _env_errors(world, _allowed(world, "app", 'profile = "alice-sts"\n'))


def socket_served_by_another_user(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    project = _allowed(world, "app", 'profile = "alice-sts"\n')
    # nobody binds in the directory while it is theirs; then it becomes ours and private again.
    world.socket.parent.mkdir(mode=0o700)
    os.chown(world.socket.parent, NOBODY, NOBODY)
    world.runtime.chmod(0o711)  # nobody may pass through the runtime directory to bind
    try:
        impostor = FakeDaemon(world.socket, fake_replies(project / ".stsd.toml", {}), uid=NOBODY)
    finally:
        world.runtime.chmod(0o700)
    try:
        os.chown(world.socket.parent, os.getuid(), os.getgid())
        return _env_errors(world, project)
    finally:
        impostor.stop()


def reply_with_foreign_variable(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    project = _allowed(world, "app", 'profile = "alice-sts"\n')
    world.socket.parent.mkdir(mode=0o700)
    impostor = FakeDaemon(world.socket, fake_replies(project / ".stsd.toml", {"PROMPT_COMMAND": "true"}))
    try:
        return _env_errors(world, project)
    finally:
        impostor.stop()


def foreign_project_file(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    request.getfixturevalue("daemon")
    parent = world.project("shared", 'profile = "alice-sts"\n')
    os.chown(parent / ".stsd.toml", NOBODY, NOBODY)
    (parent / "mine").mkdir()
    # Printed by the hook and by `stsd allow` (not by `stsd env`, which only says no file governs).
    return world.stsd("allow", str(parent / "mine")).stderr


def mfa_process_failing(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("mfa_world")
    config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'mfa_process = [{json.dumps(sys.executable)}, "-c", "raise SystemExit(1)"]\n')
    daemon = Daemon(world)
    try:
        return _env_errors(world, _allowed(world, "app", 'profile = "alice-mfa"\n'))
    finally:
        daemon.stop()


def mfa_status(request: pytest.FixtureRequest) -> str:
    """Status without an MFA session, then with one that is ending (the shortest STS allows)."""
    world = request.getfixturevalue("mfa_world")
    config = Path(world.env["XDG_CONFIG_HOME"]) / "stsd" / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("mfa_session_duration = 900\n")
    daemon = Daemon(world)
    try:
        project = _allowed(world, "app", 'profile = "alice-mfa"\n')
        _env_errors(world, project)
        without = world.stsd("status", check=True).stdout
        assert world.stsd("mfa", "--dir", str(project), "--code", totp()).returncode == 0
        return without + world.stsd("status", check=True).stdout
    finally:
        daemon.stop()


def loaded_and_unloaded(request: pytest.FixtureRequest) -> str:
    world = request.getfixturevalue("world")
    request.getfixturevalue("daemon")
    project = _allowed(world, "app", 'profile = "alice-sts"\n')
    shell = open_shell("bash", world.env, world.home, request.getfixturevalue("tmp_path") / "bash")
    try:
        shell.run(KINDS["bash"].install)
        return shell.cd(project) + shell.cd(world.home)
    finally:
        shell.close()


def fetching_credentials(request: pytest.FixtureRequest) -> str:
    """Entering a project while its AssumeRole is held at the proxy: the prompt comes back at once."""
    world = request.getfixturevalue("world")
    world.write_config("sts_read_timeout = 300\n")  # botocore never gives up on the held call
    with FaultProxy(world.aws.endpoint) as proxy:
        proxy.set_mode("hold", actions={"AssumeRole"})
        with Daemon(world, extra_env={"AWS_ENDPOINT_URL": proxy.endpoint}):
            project = _allowed(world, "app", 'profile = "alice-sts"\n')
            shell = open_shell("bash", world.env, world.home, request.getfixturevalue("tmp_path") / "bash")
            try:
                shell.run(KINDS["bash"].install)
                return shell.cd(project)
            finally:
                proxy.release()
                shell.close()


def daemon_busy(request: pytest.FixtureRequest) -> str:
    """Entering a project while the daemon is frozen (SIGSTOP): it accepts nothing in time."""
    world = request.getfixturevalue("world")
    daemon = request.getfixturevalue("daemon")
    project = _allowed(world, "app", 'profile = "alice-sts"\n')
    shell = open_shell("bash", world.env, world.home, request.getfixturevalue("tmp_path") / "bash")
    try:
        shell.run(KINDS["bash"].install)
        os.kill(daemon.process.pid, signal.SIGSTOP)
        return shell.cd(project)
    finally:
        os.kill(daemon.process.pid, signal.SIGCONT)
        shell.close()


_ROOT = {"marks": [as_root]}
# the quote's distinctive part -> how to make stsd print it, for real
PROVOKED = {
    ".stsd.toml is new or changed and not trusted": (untrusted, {}),
    "unknown key": (unknown_key, {}),
    "AssumeRole ... denied": (role_denied, {}),
    "STS's certificate is not trusted": (certificate_untrusted, {}),
    "needs an MFA code": (mfa_code_needed, {}),
    "MultiFactorAuthentication failed": (mfa_code_wrong, {}),
    "mfa_process for alice failed": (mfa_process_failing, {}),
    "needs a new sign-in": (sign_in_needed, {}),
    "the daemon is not running": (daemon_down, {}),
    "other users can reach it": (socket_dir_open, {}),
    "it is owned by uid N": (socket_dir_foreign, _ROOT),
    "it is served by uid N": (socket_served_by_another_user, _ROOT),
    "which stsd never sets": (reply_with_foreign_variable, {}),
    "not you or root": (foreign_project_file, _ROOT),
    "ends soon: run stsd mfa": (mfa_status, {}),
    "MFA session  needs a code": (mfa_status, {}),
    "stsd: loaded NAME": (loaded_and_unloaded, {}),
    "stsd: fetching credentials for DIR": (fetching_credentials, {}),
    "stsd: the daemon is busy": (daemon_busy, {}),
    "stsd: unloaded NAME": (loaded_and_unloaded, {}),
}


def quoted_messages() -> list[str]:
    return list(dict.fromkeys([*troubleshooting_quotes(), *inline_messages()]))


def test_every_quoted_message_is_provoked() -> None:
    unclaimed = [quote for quote in quoted_messages() if not [key for key in PROVOKED if key in quote]]
    assert not unclaimed, f"messages the README quotes that no test here provokes: {unclaimed}"
    stale = [key for key in PROVOKED if not any(key in quote for quote in quoted_messages())]
    assert not stale, f"provoked here but no longer quoted by the README: {stale}"


@pytest.mark.parametrize(
    "quote",
    [
        pytest.param(quote, id=key, **marks)
        for quote in quoted_messages()
        for key, (_, marks) in PROVOKED.items()
        if key in quote
    ],
)
def test_quoted_message_is_what_stsd_prints(quote: str, request: pytest.FixtureRequest) -> None:
    [provoke] = [provoke for key, (provoke, _) in PROVOKED.items() if key in quote]
    assert_says(quote, provoke(request))
