"""What stsd's clients print and apply from the daemon's words: text made safe for a terminal, advice
quoted for the user's own shell, and the check that a reply names only variables stsd manages.
Standard library only, lean: the hook's fast path uses it on every transition."""

from __future__ import annotations

import os

from stsd import protocol, variables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_SHELL = "bash"  # POSIX quoting, when the user's shell is not one stsd knows


def printable(text: str) -> str:
    """`text` on one line with control characters escaped: paths and messages come from files and the
    daemon, and must never move the cursor, retitle the terminal or add lines."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def user_shell(environ: Any = None) -> str:
    """The name of the user's shell for advice: the one running the hook, else $SHELL's, else bash."""
    from stsd.shells import SHELLS

    name = os.path.basename((environ if environ is not None else os.environ).get("SHELL", ""))
    return name if name in SHELLS else DEFAULT_SHELL


def allow_command(project_file: str, shell_name: str) -> str:
    """`stsd allow DIR` for the directory of `project_file`, as one paste-able line of `shell_name`."""
    from stsd.shells import SHELLS

    directory = os.path.dirname(project_file) or "/"
    return f"stsd allow {SHELLS[shell_name].quote(directory)}"


def refusal_line(code: str, project_file: str, message: object, shell_name: str) -> str:
    """The one line a user sees for a refused project, without the leading `stsd: `."""
    if code == protocol.UNTRUSTED:
        return f"{project_file} is new or changed and not trusted; review it, then run: {allow_command(project_file, shell_name)}"
    if code == protocol.DENIED:
        return (
            f"{project_file} is denied; to trust it after all run: {allow_command(project_file, shell_name)}"
        )
    return str(message or code or "the daemon refused the request")


def checked_variables(values: object) -> dict[str, str | None]:
    """The `vars` of an env reply, if every name is one stsd manages and every value a string or null;
    else protocol.Refusal (bad_reply) naming the first offender (then the reply is applied never, reported once)."""
    if not isinstance(values, dict):
        raise protocol.Refusal(protocol.BAD_REPLY, "the daemon's reply holds no variables; nothing applied")
    for name, value in values.items():
        if not isinstance(name, str) or not variables.is_applicable(name):
            raise protocol.Refusal(
                protocol.BAD_REPLY,
                f"the daemon's reply sets {printable(str(name))[:64]}, which stsd never sets; nothing applied "
                "(is something else listening on stsd's socket?)",
            )
        if value is not None and not isinstance(value, str):
            raise protocol.Refusal(
                protocol.BAD_REPLY, f"the daemon's reply holds a malformed value for {name}; nothing applied"
            )
    return values
