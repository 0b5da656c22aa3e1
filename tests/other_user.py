"""Another local user, for the tests of what stsd refuses them: real uids entered with `setpriv`, which needs
root (CI runs the tests as root; elsewhere these tests skip with the reason)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

NOBODY = 65534
# Another user cannot run the venv's interpreter (it lives under /root); the system one it can.
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

as_root = pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another local user (CI runs the tests as root)",
)


def as_user(argv: list[str], uid: int = NOBODY) -> list[str]:
    """`argv` run as `uid` (its group too, and no supplementary groups)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *argv]


def run_as(argv: list[str], uid: int = NOBODY, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run `argv` as `uid` to its end; output captured as text."""
    kwargs.setdefault("timeout", 60)
    return subprocess.run(as_user(argv, uid), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
