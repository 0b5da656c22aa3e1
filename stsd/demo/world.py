"""The demo's throwaway world: a temp directory holding HOME (with ~/.aws), the XDG dirs, the socket, a
project with `.stsd.toml`, and the environment every demo process runs in. Nothing outside it is touched."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stsd.demo.local_aws import EXTERNAL_ID, REGION, ROLE_ARN, USER_NAME, LocalAws

PROJECT_DIR_NAME = "project"
# Variables that would point a demo process at the user's real world (credentials, config, sockets,
# shell start-up files) are dropped from the inherited environment.
_LEAKY_PREFIXES = ("AWS_", "STSD_", "__STSD_", "XDG_", "LISTEN_")  # __STSD_*: a hooked shell's saved state
_LEAKY_NAMES = (
    "NOTIFY_SOCKET",
    "BASH_ENV",
    "ENV",
    "ZDOTDIR",
    "PROMPT_COMMAND",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)

_PROJECT_FILE = f"""\
# Which role this directory's shells get. Same key names as ~/.aws/config; `profile = "alice-sts"`
# would do the same, since the demo's ~/.aws/config has that profile too.
role_arn = "{ROLE_ARN}"
source_profile = "{USER_NAME}"
external_id = "{EXTERNAL_ID}"
role_session_name = "s3-access"
region = "{REGION}"
"""


@dataclass(frozen=True)
class DemoWorld:
    root: Path  # the temp directory; removing it removes everything the demo made
    home: Path
    project: Path
    socket: Path
    bin_dir: Path  # an `stsd` that runs this very installation, first on PATH
    daemon_env: dict[str, str]
    shell_env: dict[str, str]  # the daemon's plus what a user's shell has: alice's profile

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _short_temp_dir() -> Path:
    # A Unix socket path must fit in 108 bytes; a long $TMPDIR (macOS-style) would not leave room.
    base = tempfile.gettempdir()
    if len(base) > 40:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="stsd-demo-", dir=base))


def _write_stsd_launcher(bin_dir: Path) -> None:
    """`stsd` on the demo's PATH is this interpreter running this stsd, whatever else is installed."""
    bin_dir.mkdir()
    launcher = bin_dir / "stsd"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m stsd "$@"\n')
    launcher.chmod(stat.S_IRWXU)


def _base_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_LEAKY_PREFIXES) and name not in _LEAKY_NAMES
    }


def create_world(aws: LocalAws) -> DemoWorld:
    root = _short_temp_dir()
    try:
        home = root / "home"
        home.mkdir()
        aws.write_aws_files(home)
        project = home / PROJECT_DIR_NAME
        project.mkdir()
        (project / ".stsd.toml").write_text(_PROJECT_FILE)
        runtime = root / "run"
        runtime.mkdir(mode=0o700)
        socket = runtime / "stsd" / "stsd.sock"
        bin_dir = root / "bin"
        _write_stsd_launcher(bin_dir)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise

    # The venv's own bin (the aws CLI of stsd[demo]) comes right after the launcher.
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    daemon_env = {
        **_base_environment(),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_RUNTIME_DIR": str(runtime),
        "STSD_SOCKET": str(socket),
        "STSD_NO_AUTOSTART": "1",  # the demo runs its own daemon and stops it; no stray background one
        "AWS_CONFIG_FILE": str(home / ".aws" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PATH": path,
    }
    shell_env = {**daemon_env, "AWS_PROFILE": USER_NAME, "AWS_PAGER": ""}
    return DemoWorld(
        root=root,
        home=home,
        project=project,
        socket=socket,
        bin_dir=bin_dir,
        daemon_env=daemon_env,
        shell_env=shell_env,
    )
