"""What a shell holds about the project it loaded: `__STSD_STATE` (who loaded what, and each touched
variable's value before), and the environment as it was before that project, which leaving, `stsd exec
--dir` and a daemon started from inside a project all go back to.

Saved values of secret variables (the user's own AWS_SECRET_ACCESS_KEY, say) never go into
`__STSD_STATE`, which every child process inherits: they go to a 0600 file per shell in the private
runtime directory, and the state records only their names and a checksum. Standard library only, lean:
this runs on every shell transition."""

from __future__ import annotations

import os

from stsd import paths, variables
from stsd.wire import json_dumps, json_loads

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing collections.abc at run time costs a few milliseconds
    from collections.abc import Callable, Mapping

# The one exported variable of stsd's own.
STATE_VARIABLE = "__STSD_STATE"
MAX_SAVED_BYTES = 64 * 1024


class Value:
    """An immutable record with positional fields, like a frozen dataclass (dataclasses costs more to
    import than a whole transition otherwise does)."""

    # Positional order of the fields; __slots__ repeats them (a name, not a literal, so no tool reorders).
    fields: tuple[str, ...] = ()
    __slots__ = fields

    def __init__(self, *values: object, **named: object) -> None:
        values = values + tuple(named.pop(name) for name in self.fields[len(values) :] if name in named)
        if len(values) != len(self.fields) or named:
            raise TypeError(f"{type(self).__name__} takes the fields {', '.join(self.fields)}")
        for name, value in zip(self.fields, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(getattr(self, n) == getattr(other, n) for n in self.fields)

    __hash__ = None  # type: ignore[assignment]  # fields hold dicts

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.fields)
        return f"{type(self).__name__}({fields})"

    def _replace(self, **changes: object):
        return type(self)(*(changes.get(name, getattr(self, name)) for name in self.fields))


class LoadedState(Value):
    """shell_pid: int; project_file: str; name: str; expiration: str (YYYY-MM-DDTHH:MM:SSZ, compares as
    text); saved: Mapping[str, str | None], each touched variable's value before entry (None = absent)."""

    fields = ("shell_pid", "project_file", "name", "expiration", "saved")
    __slots__ = fields

    def secrets(self) -> dict[str, str]:
        """The saved values that must stay out of the environment."""
        return {k: v for k, v in self.saved.items() if v is not None and k in variables.SECRET_VARIABLES}

    def encode(self) -> str:
        secrets = self.secrets()
        document = {
            "pid": self.shell_pid,
            "file": self.project_file,
            "name": self.name,
            "exp": self.expiration,
            "saved": {k: v for k, v in self.saved.items() if k not in secrets},
            "kept": {"names": sorted(secrets), "sum": _fingerprint(secrets)} if secrets else None,
        }
        # Hex keeps the exported value one plain word whatever the saved values hold (and needs no
        # binascii, whose loading is a noticeable share of a transition).
        return json_dumps(document).encode().hex()

    @classmethod
    def decode(
        cls, text: str, read_secrets: Callable[[int], dict[str, str]] | None = None
    ) -> LoadedState | None:
        """The state, or None when absent or unreadable (then nothing is restored from it). Secret saved
        values come from the shell's file; missing or changed since, they restore as absent."""
        if not text:
            return None
        try:
            document = json_loads(bytes.fromhex(text).decode())
            saved = dict(document["saved"])
            pid = int(document["pid"])
            kept = document.get("kept")
            if kept:
                names = [str(name) for name in kept["names"] if name in variables.SECRET_VARIABLES]
                secrets = (read_secrets or read_saved_secrets)(pid)
                if _fingerprint(secrets) != kept["sum"]:
                    secrets = {}
                saved.update({name: secrets.get(name) for name in names})
            if not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in saved.items()):
                return None
            return cls(pid, str(document["file"]), str(document["name"]), str(document["exp"]), saved)
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def outside_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` as it was before the project its state says is loaded (itself when none is)."""
    return restore_saved(environ, LoadedState.decode(environ.get(STATE_VARIABLE, "")))


def restore_saved(environ: Mapping[str, str], state: LoadedState | None) -> dict[str, str]:
    """`environ` with every variable `state` touched given back its value from before (and no state)."""
    outside = dict(environ)
    for name, value in (state.saved if state else {}).items():
        if value is None:
            outside.pop(name, None)
        else:
            outside[name] = value
    outside.pop(STATE_VARIABLE, None)
    return outside


def _fingerprint(secrets: Mapping[str, str]) -> int:
    """FNV-1a (64 bit) of the secrets. Not a secret or a defence (the file is private): it tells a file
    that another state of this shell wrote from the one ours refers to."""
    value = 0xCBF29CE484222325
    for byte in json_dumps(dict(sorted(secrets.items()))).encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def saved_secrets_file(shell_pid: int) -> str:
    return os.path.join(paths.shells_dir(), f"{shell_pid}.saved")


def write_saved_secrets(shell_pid: int, secrets: Mapping[str, str]) -> None:
    """Keep `secrets` for this shell in a 0600 file, replaced atomically, never written through a link."""
    path = saved_secrets_file(shell_pid)
    if not secrets:
        try:  # noqa: SIM105
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    directory = ensure_shells_dir()
    temporary = os.path.join(directory, f".{shell_pid}.saved.new")
    descriptor = paths.open_private_file(temporary, os.O_TRUNC)
    try:
        os.write(descriptor, json_dumps(dict(secrets)).encode())
    finally:
        os.close(descriptor)
    os.replace(temporary, path)  # rename never follows a link at the destination


def read_saved_secrets(shell_pid: int) -> dict[str, str]:
    """The secrets a shell kept, or {} when there are none we can trust."""
    path = saved_secrets_file(shell_pid)
    try:
        paths.check_private_dir(os.path.dirname(path))
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except (OSError, paths.UnsafeDirectoryError):
        return {}
    try:
        if os.fstat(descriptor).st_uid != os.getuid():
            return {}
        document = json_loads(os.read(descriptor, MAX_SAVED_BYTES).decode())
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    finally:
        os.close(descriptor)
    if not isinstance(document, dict):
        return {}
    return {k: v for k, v in document.items() if isinstance(k, str) and isinstance(v, str)}


def ensure_shells_dir() -> str:
    """The runtime directory and its shells/ directory, created private if missing, checked either way."""
    paths.ensure_private_dir(paths.runtime_dir())
    return paths.ensure_private_dir(paths.shells_dir())
