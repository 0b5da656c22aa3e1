"""The interactive demo: a real bash, zsh or fish whose start-up file (in the throwaway HOME) installs the
stsd hook, with a prompt that shows the active project, and the guide printed before it starts."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

from stsd import terminal
from stsd.demo.daemon import DemoDaemon
from stsd.demo.errors import DemoError
from stsd.demo.local_aws import BUCKET, ROLE_NAME, USER_NAME
from stsd.demo.world import PROJECT_DIR_NAME, DemoWorld

_BASHRC = r"""eval "$(stsd hook bash)"
PS1='(stsd demo) \w${STSD_PROFILE:+ [$STSD_PROFILE]} \$ '
"""
_ZSHRC = r"""eval "$(stsd hook zsh)"
setopt PROMPT_SUBST
PS1='(stsd demo) %~${STSD_PROFILE:+ [$STSD_PROFILE]} %# '
"""
_FISH_CONFIG = r"""stsd hook fish | source
set -g fish_greeting
function fish_prompt
    set -l profile ''
    set -q STSD_PROFILE; and set profile " [$STSD_PROFILE]"
    printf '(stsd demo) %s%s> ' (prompt_pwd) $profile
end
"""


def guide(world: DemoWorld, endpoint: str, daemon: DemoDaemon) -> str:
    return f"""
stsd demo: a throwaway world in {world.root} (removed when you leave this shell)
  local STS/IAM/S3 at {endpoint}: user {USER_NAME} may do nothing but assume role {ROLE_NAME}
  HOME={world.home}
  daemon pid {daemon.pid}, socket {world.socket}, log {daemon.log_path}

Try, in this order:
  aws sts get-caller-identity    you are {USER_NAME}, with long-term keys (AWS_PROFILE={USER_NAME})
  aws s3 ls                      AccessDenied: {USER_NAME} has no rights of her own
  cat {PROJECT_DIR_NAME}/.stsd.toml          the role the project wants
  cd {PROJECT_DIR_NAME}                     untrusted: stsd hands out nothing and says what to do
  stsd allow                     trust the file; the next prompt loads the role
  aws s3 ls                      {BUCKET}: the role's temporary credentials
  env | grep ^AWS_               an ASIA key, a session token, an expiry; no AWS_PROFILE
  stsd status                    the daemon, its source, the session and its time left
  cd ..                          the credentials are gone, AWS_PROFILE={USER_NAME} is back
  exit                           stop the daemon and remove everything
"""


def default_shell() -> str:
    return terminal.user_shell()


def _write_start_up_file(shell: str, home: Path) -> list[str]:
    """Write the shell's start-up file into the demo HOME; return the command that starts the shell."""
    if shell == "bash":
        rc = home / ".bashrc"
        rc.write_text(_BASHRC)
        # --rcfile: only our file, not /etc/bash.bashrc or the user's own.
        return ["bash", "--noprofile", "--rcfile", str(rc), "-i"]
    if shell == "zsh":
        (home / ".zshrc").write_text(_ZSHRC)  # ZDOTDIR defaults to HOME, which is the demo's
        return ["zsh", "-i"]
    config = home / ".config" / "fish" / "config.fish"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(_FISH_CONFIG)
    # A first fish start in a fresh data dir spawns a background job that builds completions from man
    # pages; it would outlive the demo and write into the temp dir while it is removed. Its marker:
    (home / ".local" / "share" / "fish" / "generated_completions").mkdir(parents=True, exist_ok=True)
    return ["fish", "-i"]


def run_shell(world: DemoWorld, shell: str) -> int:
    """Start the shell and wait for the user to leave it; returns its exit code."""
    if shutil.which(shell, path=world.shell_env.get("PATH")) is None:
        raise DemoError(f"{shell} is not installed; try --shell bash, or --script")
    command = _write_start_up_file(shell, world.home)
    # Ctrl-C belongs to the shell while it runs: the demo must not die under it. A no-op handler
    # rather than SIG_IGN, because an ignored SIGINT would be inherited and make commands unstoppable.
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: None)
    try:
        return subprocess.call(command, cwd=world.home, env=world.shell_env)
    finally:
        signal.signal(signal.SIGINT, previous)
