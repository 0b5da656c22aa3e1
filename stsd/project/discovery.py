"""Which `.stsd.toml` governs a directory: the one definition for the daemon, the client and the hook's
fast path. Imports only os: it runs on every project transition, where each import costs milliseconds."""

from __future__ import annotations

import os

PROJECT_FILE_NAME = ".stsd.toml"
ROOT_UID = 0


def discover(directory: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """`(governing, ignored)`: the nearest `.stsd.toml` in `directory` or a parent ("" for none), and the
    `(path, owner uid)` of each one passed over on the way because another user owns it, nearest first.

    Any entry of that name governs, whatever it is (lstat, like os.path.lexists): a FIFO, directory or
    dangling link is refused when loaded rather than silently letting a parent project apply. But one owned
    (the entry itself, not a link's target) by neither you nor root is somebody else's, who could have put
    it above your directory to hand you their role or endpoints; it is treated as absent. `directory` is made
    absolute without resolving symlinks (the logical path, like the shell's $PWD)."""
    directory = os.path.abspath(directory)
    me = os.getuid()
    ignored: list[tuple[str, int]] = []
    while True:
        candidate = os.path.join(directory, PROJECT_FILE_NAME)
        try:
            owner = os.lstat(candidate).st_uid
        except (OSError, ValueError):  # absent, unreachable, or a path with a NUL: as lexists, none here
            owner = -1
        if owner in (me, ROOT_UID):
            return candidate, tuple(ignored)
        if owner != -1:
            ignored.append((candidate, owner))
        parent = os.path.dirname(directory)
        if parent == directory:
            return "", tuple(ignored)
        directory = parent


def find_project_file(directory: str) -> str:
    """The governing `.stsd.toml` of `directory` (see discover), or "" when none governs."""
    return discover(directory)[0]


def ignored_message(path: str, owner: int) -> str:
    """One line saying why a file was passed over, control characters in the path escaped."""
    from stsd.terminal import printable

    return f"ignored {printable(path)}: owned by uid {owner}, not you or root"
