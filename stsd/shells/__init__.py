"""One module per shell (hook script + exact quoting), and `stsd hook SHELL`, which prints the hook.

Adding a shell is one module with NAME, SCRIPT, quote(), export() and assign(), plus its name in SHELLS.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType


class ShellRegistry:
    """The supported shells by name -> module, each module imported when first asked for: a shell
    transition needs its own shell's module only, and every import is start-up time for the hook."""

    def __init__(self, *names: str) -> None:
        self._names = names

    def __getitem__(self, name: str) -> ModuleType:
        if name not in self._names:
            raise KeyError(name)
        return __import__(f"stsd.shells.{name}", fromlist=["NAME"])

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


SHELLS = ShellRegistry("bash", "zsh", "fish")


def script_text(shell: str) -> str:
    from stsd import launch

    # stsd/shell is a symlink to the top-level shell/ in a checkout, and a copy of it in a wheel.
    path = os.path.join(launch.package_root(), "stsd", "shell", SHELLS[shell].SCRIPT)
    with open(path, encoding="utf-8") as file:
        return file.read()


def hook_text(shell: str, python: str | None = None) -> str:
    """The hook for `shell`, with the interpreter and package root pinned in front of the script."""
    from stsd import launch

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
