"""Quoting shared by the POSIX-family shells (bash, zsh): exact for any string, never expands anything."""

from __future__ import annotations

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./:@%+=,-")


class BadVariableName(ValueError):
    """A variable name that is not a plain shell identifier; never rendered, so never executed."""


def check_name(name: str) -> None:
    if not (name.isascii() and name.isidentifier()):
        raise BadVariableName(f"not a shell variable name: {name!r}")


def is_plain_word(value: str) -> bool:
    """A word every supported shell reads as itself without quotes (key ids, regions, most paths)."""
    return bool(value) and all(ch in _BARE for ch in value) and not value.startswith(("=", "-", "%"))


def posix_quote(value: str) -> str:
    """Single quotes, with each `'` written as `\\'` between quoted runs.

    Runs are never empty, so zsh's RC_QUOTES option (where `''` inside quotes means a quote) cannot
    change the meaning. Harmless values (key ids, regions, paths) stay bare and readable.
    """
    if is_plain_word(value):
        return value
    if not value:
        return "''"
    return "\\'".join(f"'{run}'" if run else "" for run in value.split("'"))
