"""The hooks inside the frameworks users run: bash with bash-preexec, zsh with oh-my-zsh and with
powerlevel10k, fish with a custom prompt. Real shells on a pty; the frameworks are read from the pinned
copies in ../shared/fixtures/shell-frameworks (never copied into the project).

A command typed at a prompt drawn before a renewal was due gets fresh credentials (the pre-command check);
the frameworks' own hooks still run; prompts built in precmd functions see the current project; under
powerlevel10k's instant prompt a start-up notice is held back instead of triggering p10k's warning."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import time
from pathlib import Path

import pexpect
import pytest

from shells.conftest import BASH, FISH, ZSH, InteractiveShell, ShellKind, shell_env

REPO = Path(__file__).resolve().parents[2]
FRAMEWORKS = Path(
    os.environ.get("STSD_SHELL_FRAMEWORKS") or REPO.parent / "shared" / "fixtures" / "shell-frameworks"
)
ALPHA = 'profile = "alice-sts"\n'


def framework(name: str) -> Path:
    path = FRAMEWORKS / name
    if not path.is_dir():
        pytest.skip(f"{path} is missing (the pinned shell frameworks live in ../shared/fixtures)")
    return path


def setup_lines(name: str, scratch: Path) -> list[str]:
    """What a user's rc file does before `eval "$(stsd hook ...)"`, plus a hook of the user's own that
    counts prompts and commands and records the STSD_PROFILE a prompt built in precmd would show."""
    if name == "bash-preexec":
        return [
            f"source {framework('bash-preexec')}/bash-preexec.sh",
            "_mine_precmd() { MINE_PRECMD=$((${MINE_PRECMD:-0}+1)); MINE_SEEN=${STSD_PROFILE:-none}; }",
            "_mine_preexec() { MINE_PREEXEC=$((${MINE_PREEXEC:-0}+1)); }",
            "precmd_functions+=(_mine_precmd); preexec_functions+=(_mine_preexec)",
        ]
    if name == "oh-my-zsh":
        omz = framework("oh-my-zsh")
        return [
            f"export ZSH={omz} ZSH_CACHE_DIR={scratch} DISABLE_AUTO_UPDATE=true; ZSH_THEME=robbyrussell; "
            "plugins=(git aws); source $ZSH/oh-my-zsh.sh; PS1='@@%?@@> '; PS2=''",
            "_mine_precmd() { MINE_PRECMD=$((${MINE_PRECMD:-0}+1)); MINE_SEEN=${STSD_PROFILE:-none}; }",
            "_mine_preexec() { MINE_PREEXEC=$((${MINE_PREEXEC:-0}+1)); }",
            "add-zsh-hook precmd _mine_precmd; add-zsh-hook preexec _mine_preexec",
        ]
    if name == "fish-custom-prompt":
        return [
            "function _mine_precmd --on-event fish_prompt; set -g MINE_PRECMD (math $MINE_PRECMD + 1); "
            "set -q STSD_PROFILE; and set -g MINE_SEEN $STSD_PROFILE; or set -g MINE_SEEN none; end",
            "function _mine_preexec --on-event fish_preexec; set -g MINE_PREEXEC (math $MINE_PREEXEC + 1); end",
            "set -g MINE_PRECMD 0; set -g MINE_PREEXEC 0",
        ]
    raise AssertionError(name)


CASES = {"bash-preexec": BASH, "oh-my-zsh": ZSH, "fish-custom-prompt": FISH}


@pytest.fixture(params=sorted(CASES))
def framework_shell(request, world, daemon, tmp_path):
    kind: ShellKind = CASES[request.param]
    if not kind.available():
        pytest.skip(f"{kind.name} is not installed")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = InteractiveShell(kind, shell_env(world.env), world.home, scratch)
    try:
        for line in setup_lines(request.param, scratch):
            shell.run(line)
        shell.install()
        yield shell
    finally:
        shell.close()


def daemon_request(world, message: dict) -> dict:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(world.socket))
        sock.sendall(json.dumps({"v": 1, **message}).encode() + b"\n")
        reply = json.loads(sock.makefile("rb").readline())
    assert reply["ok"], reply
    return reply


def make_due_in(shell: InteractiveShell, seconds: int) -> None:
    """The renewal falls due `seconds` from now: after the prompt that follows is drawn."""
    if shell.kind.name == "fish":
        due = shell.run("echo $_stsd_due").strip()
        when = time.time() + seconds
        os.utime(due, (when, when))
    else:
        shell.run(f"_stsd_refresh_at=$((EPOCHSECONDS + {seconds}))")


def variable(shell: InteractiveShell, name: str) -> str:
    return shell.run(f"echo ${name}").strip()


def test_a_command_typed_after_the_refresh_time_gets_fresh_credentials(world, framework_shell) -> None:
    shell = framework_shell
    project = world.project("alpha", ALPHA)
    world.stsd("allow", str(project), check=True)
    shell.cd(project)
    first = shell.env()["AWS_ACCESS_KEY_ID"]
    renewed = daemon_request(world, {"op": "renew", "dir": str(project)})["vars"]["AWS_ACCESS_KEY_ID"]
    assert renewed != first
    make_due_in(shell, 2)
    time.sleep(3)  # the prompt sits there past the refresh time
    # The very command typed now sees the renewed key: the pre-command check ran before it.
    assert shell.env()["AWS_ACCESS_KEY_ID"] == renewed


def test_the_frameworks_own_hooks_still_run_and_precmd_prompts_are_current(world, framework_shell) -> None:
    shell = framework_shell
    project = world.project("alpha", ALPHA)
    world.stsd("allow", str(project), check=True)
    before = (int(variable(shell, "MINE_PRECMD")), int(variable(shell, "MINE_PREEXEC")))
    shell.cd(project)
    # stsd runs first at the prompt, so a prompt built by a later precmd function shows the project at once.
    assert variable(shell, "MINE_SEEN") == "alice-sts"
    after = (int(variable(shell, "MINE_PRECMD")), int(variable(shell, "MINE_PREEXEC")))
    assert after[0] > before[0] and after[1] > before[1], (before, after)


def test_plain_bash_without_bash_preexec_checks_only_at_the_prompt(world, daemon, tmp_path) -> None:
    """As the README says: without bash-preexec there is no pre-command check in bash (no DEBUG trap, no
    PS0); the next prompt picks the renewal up."""
    if not BASH.available():
        pytest.skip("bash is not installed")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shell = InteractiveShell(BASH, shell_env(world.env), world.home, scratch)
    try:
        shell.install()
        assert shell.run('trap -p DEBUG; echo "[${PS0-}]"').strip() == "[]"
        project = world.project("alpha", ALPHA)
        world.stsd("allow", str(project), check=True)
        shell.cd(project)
        renewed = daemon_request(world, {"op": "renew", "dir": str(project)})["vars"]["AWS_ACCESS_KEY_ID"]
        make_due_in(shell, 2)
        time.sleep(3)
        assert shell.env()["AWS_ACCESS_KEY_ID"] != renewed  # the command typed at the old prompt
        assert shell.env()["AWS_ACCESS_KEY_ID"] == renewed  # the next prompt renewed
    finally:
        shell.close()


def test_bash_array_prompt_command_keeps_the_users_pipestatus(world, daemon, tmp_path) -> None:
    if not BASH.available():
        pytest.skip("bash is not installed")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**shell_env(world.env)}
    shell = InteractiveShell(BASH, env, world.home, scratch)
    try:
        shell.run('_mine() { MINE_PIPESTATUS="${PIPESTATUS[*]}"; }; PROMPT_COMMAND=_mine')
        shell.install()
        shell.run("false | true | (exit 3)")
        assert variable(shell, "MINE_PIPESTATUS") == "1 0 3"
    finally:
        shell.close()


# -- powerlevel10k's instant prompt -----------------------------------------------------------------------

P10K_MARK = "@@P10K@@"
P10K_WARNING = "Console output during zsh initialization detected"


def p10k_zshrc(zdotdir: Path, cache: Path) -> None:
    p10k = framework("powerlevel10k")
    (zdotdir / ".zshrc").write_text(
        f"""
typeset -g POWERLEVEL9K_INSTANT_PROMPT=verbose
if [[ -r {cache}/p10k-instant-prompt-${{(%):-%n}}.zsh ]]; then
  source {cache}/p10k-instant-prompt-${{(%):-%n}}.zsh
fi
source {p10k}/powerlevel10k.zsh-theme
source {p10k}/config/p10k-lean.zsh
typeset -g POWERLEVEL9K_DISABLE_GITSTATUS=true
typeset -g POWERLEVEL9K_INSTANT_PROMPT=verbose
function prompt_mark() {{ p10k segment -t '{P10K_MARK}' }}
function instant_prompt_mark() {{ p10k segment -t '{P10K_MARK}' }}
typeset -g POWERLEVEL9K_LEFT_PROMPT_ELEMENTS=(mark)
typeset -g POWERLEVEL9K_RIGHT_PROMPT_ELEMENTS=()
eval "$(stsd hook zsh)"
"""
    )


def test_powerlevel10k_instant_prompt_gets_no_console_output_warning(world, daemon, tmp_path) -> None:
    if not ZSH.available():
        pytest.skip("zsh is not installed")
    zdotdir, cache = tmp_path / "zdotdir", tmp_path / "cache"
    zdotdir.mkdir()
    cache.mkdir()
    p10k_zshrc(zdotdir, cache)
    untrusted = world.project("untrusted", ALPHA)  # never allowed: a notice at the first prompt
    env = {
        **shell_env(world.env),
        "ZDOTDIR": str(zdotdir),
        "XDG_CACHE_HOME": str(cache),
        "TERM": "xterm-256color",
    }

    def start() -> tuple[pexpect.spawn, io.StringIO]:
        log = io.StringIO()
        process = pexpect.spawn(
            "zsh", ["-i"], env=env, cwd=str(untrusted), encoding="utf-8", timeout=30, dimensions=(50, 200)
        )
        process.logfile_read = log
        process.expect(P10K_MARK)
        return process, log

    # The first start writes p10k's instant-prompt cache; the second uses it, as every later one does.
    first, _ = start()
    first.sendline("exit")
    first.expect(pexpect.EOF)
    assert list(cache.glob("p10k-instant-prompt-*.zsh")), "p10k wrote no instant prompt"
    shell, log = start()
    try:
        shell.sendline("echo @@DONE@@")
        shell.expect("@@DONE@@")
        shell.expect(P10K_MARK)
        shell.sendline("exit")
        shell.expect(pexpect.EOF)
    finally:
        shell.close(force=True)
    output = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", log.getvalue())
    assert P10K_WARNING not in output, output
    # The notice was held, not lost: it shows once the instant prompt is over.
    assert "is new or changed and not trusted" in output, output
