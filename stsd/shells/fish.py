"""fish: the hook script and exact quoting of `set -gx`/`set -e` lines (direnv's shell shape)."""

from __future__ import annotations

from stsd.shells.quoting import check_name, is_plain_word

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: the client imports this on every transition, so keep it lean
    from collections.abc import Mapping

NAME = "fish"
SCRIPT = "stsd.fish"


def quote(value: str) -> str:
    """A fish single-quoted word: inside '…' only backslash and quote are special, so escape just those."""
    if is_plain_word(value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def export(changes: Mapping[str, str | None]) -> str:
    """Code that sets (str) or erases (None) each global exported variable."""
    lines = []
    for name, value in changes.items():
        check_name(name)
        lines.append(f"set -e -g {name};" if value is None else f"set -g -x {name} {quote(value)};")
    return "\n".join(lines) + "\n" if lines else ""


def assign(values: Mapping[str, str]) -> str:
    """Code that sets global, not exported, bookkeeping variables of the hook."""
    lines = []
    for name, value in values.items():
        check_name(name)
        lines.append(f"set -g {name} {quote(value)};")
    return "\n".join(lines) + "\n" if lines else ""
