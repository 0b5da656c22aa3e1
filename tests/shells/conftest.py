"""Real interactive shells under a pseudo-terminal, with the stsd hook installed as a user would.

One driver class; a `ShellKind` per shell says how to start it, set a prompt and write a few commands.
A shell missing on this machine skips with the reason (CI installs all three: .ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

VENV_BIN = Path(sys.executable).parent
# The prompt carries the last exit status, so tests can see that the hook preserves `$?`.
PROMPT = re.compile(r"@@(\d+)@@> ")


@dataclass(frozen=True)
class ShellKind:
    name: str
    argv: tuple[str, ...]
    setup: tuple[str, ...]  # typed before the hook: prompt, quiet line editing
    install: str  # how a user installs the hook
    source: str  # format with path=: read a file of shell code
    set_var: str  # format with name=, value= (value is a plain word)
    unset_var: str
    count_hooks: str  # prints how many times the hook is registered
    show_refresh_at: str  # prints when the shell will next ask the daemon (epoch seconds)
    strict: str  # turns on the options that break careless hooks ("" = the shell has none)

    def available(self) -> bool:
        return shutil.which(self.argv[0]) is not None


BASH = ShellKind(
    name="bash",
    argv=("bash", "--norc", "--noprofile", "-i"),
    setup=("bind 'set enable-bracketed-paste off' 2>/dev/null", "PS1='@@$?@@> '; PS2=''"),
    install='eval "$(stsd hook bash)"',
    source=". {path}",
    set_var="export {name}={value}",
    unset_var="unset {name}",
    count_hooks="printf '%s\\n' \"${PROMPT_COMMAND[@]}\" | grep -o _stsd_hook | wc -l",
    show_refresh_at="echo $_stsd_refresh_at",
    strict="set -u",
)
ZSH = ShellKind(
    name="zsh",
    argv=("zsh", "-f", "-i"),
    setup=("unsetopt PROMPT_SP; PS1='@@%?@@> '; PS2=''",),
    install='eval "$(stsd hook zsh)"',
    source=". {path}",
    set_var="export {name}={value}",
    unset_var="unset {name}",
    count_hooks="print -l $precmd_functions | grep -c _stsd_hook",
    show_refresh_at="echo $_stsd_refresh_at",
    strict="setopt nounset err_exit warn_create_global",
)
FISH = ShellKind(
    name="fish",
    argv=("fish", "--no-config", "-i"),
    setup=(
        "set -g fish_autosuggestion_enabled 0; function fish_prompt; printf '@@%s@@> ' $status; end; "
        "function fish_greeting; end; function fish_title; end",
    ),
    install="stsd hook fish | source",
    source="source {path}",
    set_var="set -gx {name} {value}",
    unset_var="set -e {name}",
    count_hooks="functions --handlers | grep -c _stsd_on_prompt",
    show_refresh_at="path mtime $_stsd_due",
    strict="",
)
KINDS = {kind.name: kind for kind in (BASH, ZSH, FISH)}


class InteractiveShell:
    """One interactive shell on a pty. `run` types a line and returns what it printed before the next prompt."""

    def __init__(self, kind: ShellKind, env: dict[str, str], cwd: Path, scratch: Path) -> None:
        self.kind = kind
        self.scratch = scratch
        self.last_status = 0
        self.process = pexpect.spawn(
            kind.argv[0],
            list(kind.argv[1:]),
            env=env,
            cwd=str(cwd),
            encoding="utf-8",
            timeout=20,
            dimensions=(50, 400),
        )
        # The shell's default prompt is unknown: set ours, then wait for it.
        for line in kind.setup:
            self.process.sendline(line)
        self.process.expect(PROMPT)
        self.run("")

    def run(self, line: str, timeout: float = 20) -> str:
        """Type `line`, wait for the next prompt; returns what the command and the prompt hook printed."""
        self.process.sendline(line)
        # The shell echoes the typed line (fish redraws it, prompt included, at each key) up to the
        # newline of Enter; the first prompt after that is the one that follows the command.
        self.process.expect("\r\n", timeout=timeout)
        self.process.expect(PROMPT, timeout=timeout)
        self.last_status = int(self.process.match.group(1))
        return _clean(self.process.before)

    def prompt(self) -> str:
        """Press Enter on an empty line; returns what the prompt hook printed."""
        return self.run("")

    def install(self) -> str:
        return self.run(self.kind.install)

    def cd(self, path: Path | str) -> str:
        return self.run(f"cd {path}")

    def set_var(self, name: str, value: str) -> str:
        return self.run(self.kind.set_var.format(name=name, value=value))

    def unset_var(self, name: str) -> str:
        return self.run(self.kind.unset_var.format(name=name))

    def make_refresh_due(self) -> str:
        """Fake clock: move the shell's renewal due time into the past (bash/zsh variable, fish file).
        Returns what the prompt after that printed (bash and zsh ask there; fish at the next prompt)."""
        if self.kind.name == "fish":
            due = self.run("echo $_stsd_due").strip()
            os.utime(due, (1, 1))
            return ""
        return self.run("_stsd_refresh_at=1")

    def env(self) -> dict[str, str]:
        """The exported environment exactly as a child process sees it (bytes of `env -0`)."""
        target = self.scratch / "env.dump"
        self.run(f"command env -0 > {target}")
        entries = target.read_bytes().decode("utf-8", "surrogateescape").split("\0")
        environment = dict(entry.split("=", 1) for entry in entries if entry)
        # Where the shell is, and the last command run: not stsd's business.
        return {name: value for name, value in environment.items() if name not in ("PWD", "OLDPWD", "_")}

    def close(self) -> None:
        self.process.sendline("exit")
        self.process.close(force=True)


def _clean(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text).replace("\r", "\n")
    # fish marks output without a final newline with a line of "⏎" and spaces; that is not output.
    return "".join(line + "\n" for line in text.split("\n") if line.strip(" ⏎"))


def shell_env(base: dict[str, str]) -> dict[str, str]:
    """The world's environment plus what a user's terminal has: the stsd command on PATH, a plain TERM."""
    env = dict(base)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', os.defpath)}"
    env["TERM"] = "dumb"
    # The local STS on a busy test machine can take longer than the 1 s a prompt waits by default;
    # these tests are about behaviour, so give the first AssumeRole of a session room.
    env["STSD_TIMEOUT"] = "20"
    env.pop("PROMPT_COMMAND", None)
    env.pop("STSD_QUIET", None)
    return env


@pytest.fixture(params=sorted(KINDS))
def shell_kind(request) -> ShellKind:
    kind = KINDS[request.param]
    if not kind.available():
        pytest.skip(f"{kind.name} is not installed (apt-get install {kind.name}; CI installs it in .ci/run)")
    return kind


@pytest.fixture
def open_shell(world, shell_kind, tmp_path) -> Iterator:
    """Factory: open_shell(cwd=HOME, install=True, env=world env, **extra) -> InteractiveShell; closed after."""
    shells: list[InteractiveShell] = []

    def open_(
        cwd: Path | None = None, install: bool = True, env: dict[str, str] | None = None, **env_extra: str
    ) -> InteractiveShell:
        scratch = tmp_path / f"scratch-{len(shells)}"
        scratch.mkdir()
        environment = {**shell_env(env if env is not None else world.env), **env_extra}
        shell = InteractiveShell(shell_kind, environment, cwd or world.home, scratch)
        shells.append(shell)
        if install:
            shell.install()
        return shell

    yield open_
    for shell in shells:
        shell.close()
