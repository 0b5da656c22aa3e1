"""One module per shell (hook script + exact quoting), and `stsd hook SHELL`, which prints the hook.

Adding a shell is one module with NAME, SCRIPT, export() and assign(), plus one entry in SHELLS.
"""

from __future__ import annotations

import os
import sys

from stsd import launch
from stsd.shells import bash, fish, zsh

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

SHELLS: dict[str, ModuleType] = {module.NAME: module for module in (bash, zsh, fish)}


def script_text(shell: str) -> str:
    # stsd/shell is a symlink to the top-level shell/ in a checkout, and a copy of it in a wheel.
    path = os.path.join(launch.package_root(), "stsd", "shell", SHELLS[shell].SCRIPT)
    with open(path, encoding="utf-8") as file:
        return file.read()


def hook_text(shell: str, python: str | None = None) -> str:
    """The hook for `shell`, with the interpreter and package root pinned in front of the script."""
    module = SHELLS[shell]
    pinned = {
        "_stsd_python": python or launch.interpreter(),
        "_stsd_root": launch.package_root(),
        "_stsd_entry": launch.HOOK_ENTRY,
    }
    return module.assign(pinned) + script_text(shell)


def cmd_hook(args) -> int:
    try:
        text = hook_text(args.shell)
    except OSError as error:
        print(
            f"stsd: cannot read the {args.shell} hook ({error.strerror}: {error.filename}); reinstall stsd",
            file=sys.stderr,
        )
        return 1
    sys.stdout.write(text)
    return 0
