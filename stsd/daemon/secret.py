"""Secret: a string wrapper for secret keys and session tokens whose repr/str/format never show the value.

Only `.reveal()` gives the value out, so a secret can reach a log line or an error message only on purpose.
"""

from __future__ import annotations

import hmac
from typing import Any

_MASK = "Secret(***)"


class Secret:
    """A secret string. Not a dataclass on purpose: `dataclasses.asdict` would copy the value out."""

    __slots__ = ("_value",)
    _value: str

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret holds a str")
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        return self._value

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Secret is immutable")

    def __repr__(self) -> str:
        return _MASK

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str | tuple[Any, ...]:
        # Pickling would write the value somewhere we do not control.
        raise TypeError("a Secret cannot be pickled")

    def __bool__(self) -> bool:
        return bool(self._value)
