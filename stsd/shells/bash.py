"""bash: the hook script and exact quoting of `export`/`unset` lines (direnv's shell shape)."""

from __future__ import annotations

from stsd.shells.quoting import check_name, posix_quote

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the client imports this on every transition, so keep it lean
    from collections.abc import Mapping

NAME = "bash"
quote = posix_quote  # one word of this shell for any string
SCRIPT = "stsd.bash"


def export(changes: Mapping[str, str | None]) -> str:
    """Code that sets (str) or unsets (None) each variable in the environment."""
    lines = []
    for name, value in changes.items():
        check_name(name)
        lines.append(f"unset {name};" if value is None else f"export {name}={posix_quote(value)};")
    return "\n".join(lines) + "\n" if lines else ""


def assign(values: Mapping[str, str]) -> str:
    """Code that sets shell-local (not exported) bookkeeping variables of the hook."""
    lines = []
    for name, value in values.items():
        check_name(name)
        lines.append(f"{name}={posix_quote(value)};")
    return "\n".join(lines) + "\n" if lines else ""
