"""`stsd export SHELL`: the step from the shell's current variables to its directory's project (enter,
stay, renew, switch, leave), printed as code for that shell. Standard library only: this runs on every
project transition, so it imports as little as it can. Every `cd` into a project pays this process's
start-up, and the usual modules (dataclasses, json, socket, pathlib, collections) would triple it; so
values are small immutable classes, JSON goes through the C `_json` module, and the one daemon request
goes over `_socket` (stsd.client.connection takes over when the daemon has to be started or reported)."""

from __future__ import annotations

import binascii
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing collections.abc at run time costs a few milliseconds
    from collections.abc import Mapping
    from types import ModuleType

# The one exported variable of stsd's own: who loaded what, and every touched variable's value before.
STATE_VARIABLE = "__STSD_STATE"
# Handed by the hook to this one process only (never kept in the shell's environment):
HOOK_FILE = "__STSD_FILE"  # the .stsd.toml the hook found walking up from $PWD; "" = none
HOOK_SHOWN = "__STSD_SHOWN"  # cause of the last message shown, so each cause is shown once
HOOK_PID = "__STSD_PID"  # the interactive shell's pid
HOOK_FIRST = "__STSD_FIRST"  # "1" at the shell's first prompt: no informational line at start-up
_HOOK_VARIABLES = (HOOK_FILE, HOOK_SHOWN, HOOK_PID, HOOK_FIRST)

PROJECT_FILE_NAME = ".stsd.toml"
DEFAULT_TIMEOUT_S = 1.0  # the prompt waits at most about this long for the daemon
RETRY_AFTER_S = 60  # asking again after an STS-side failure that may clear by itself
# The daemon may be slow only because it is fetching a first session from STS: ask again soon.
RETRY_UNREACHABLE_S = 5
# Refusals that only an edit of the file or a trust decision can change: the hook watches for those.
_WAIT_FOR_USER = frozenset({"untrusted", "denied", "invalid_project"})


class Value:
    """An immutable record with positional fields, like a frozen dataclass (see the module docstring)."""

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
    """What `__STSD_STATE` holds: the shell that loaded a project, and the values before it did.

    shell_pid: int; project_file: str; name: str; expiration: str (YYYY-MM-DDTHH:MM:SSZ, compares as
    text); saved: Mapping[str, str | None], each touched variable's value before entry (None = absent).
    """

    fields = ("shell_pid", "project_file", "name", "expiration", "saved")
    __slots__ = fields

    def encode(self) -> str:
        document = {
            "pid": self.shell_pid,
            "file": self.project_file,
            "name": self.name,
            "exp": self.expiration,
            "saved": dict(self.saved),
        }
        # base64 keeps the exported value one plain word whatever the saved values hold.
        raw = json_dumps(document).encode()
        return binascii.b2a_base64(raw, newline=False).decode()

    @classmethod
    def decode(cls, text: str) -> LoadedState | None:
        """The state, or None when absent or unreadable (then nothing is restored from it)."""
        if not text:
            return None
        try:
            document = json_loads(binascii.a2b_base64(text.encode("ascii")).decode())
            saved = document["saved"]
            if not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in saved.items()):
                return None
            return cls(
                int(document["pid"]),
                str(document["file"]),
                str(document["name"]),
                str(document["exp"]),
                saved,
            )
        except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
            return None


# What the daemon said about the directory: one of these four.
class NoProject(Value):
    __slots__ = ()


class Project(Value):
    """variables: name -> value, None = unset; refresh_at: epoch seconds when to ask again."""

    fields = ("project_file", "name", "variables", "expiration", "refresh_at")
    __slots__ = fields


class Refused(Value):
    fields = ("project_file", "code", "message")
    __slots__ = fields


class Unreachable(Value):
    fields = ("message",)
    __slots__ = fields


class Notice(Value):
    """A line for the user; `cause` identifies it so the hook shows each cause once."""

    fields = ("cause", "line")
    __slots__ = fields


class Transition(Value):
    """changes: exported variables to set (str) or unset (None); state: LoadedState | None;
    refresh_at: epoch seconds when to ask again even if nothing else changed (0 = not needed);
    notice: Notice | None; info: an informational line, silenced by STSD_QUIET; restore: the
    changes that unload the new state (the hook keeps them to leave without running the client)."""

    fields = ("changes", "state", "refresh_at", "notice", "info", "restore")
    __slots__ = fields


def utc_text(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def plan(
    environ: Mapping[str, str],
    answer: NoProject | Project | Refused | Unreachable,
    *,
    hook_file: str,
    shell_pid: int,
    now: float,
) -> Transition:
    """The whole decision, free of I/O: from the current variables and the daemon's answer to the changes."""
    state = LoadedState.decode(environ.get(STATE_VARIABLE, ""))
    # The environment as it was before the loaded project, which leaving or switching returns to.
    outside = dict(environ)
    for name, value in (state.saved if state else {}).items():
        if value is None:
            outside.pop(name, None)
        else:
            outside[name] = value

    new_state: LoadedState | None = None
    desired = outside
    refresh_at = 0
    notice: Notice | None = None
    info: str | None = None
    if isinstance(answer, Project):
        variables = {"STSD_PROFILE": answer.name, **answer.variables}
        saved = {name: outside.get(name) for name in variables}
        new_state = LoadedState(shell_pid, answer.project_file, answer.name, answer.expiration, saved)
        desired = {**outside, **variables}
        refresh_at = answer.refresh_at
        if state is None or state.project_file != answer.project_file:
            info = f"stsd: loaded {answer.name} (expires {answer.expiration})"
            if state is not None:
                info += f", unloaded {state.name}"
    elif isinstance(answer, Unreachable):
        notice = Notice("unreachable", f"stsd: {answer.message}")
        if state is not None and state.project_file == hook_file and state.expiration > utc_text(now):
            # Still in the same project with credentials that have not expired: keep them, ask later.
            new_state = state._replace(shell_pid=shell_pid)
            desired = {**outside, **{name: environ.get(name) for name in state.saved}}
        if hook_file:
            refresh_at = int(now) + RETRY_UNREACHABLE_S
    elif isinstance(answer, Refused):
        notice = Notice(f"{answer.code}:{answer.project_file}", refusal_line(answer))
        if answer.code == "mfa_required":
            refresh_at = int(now)  # `stsd mfa` (in any shell) unlocks it: ask again at the next prompt
        elif answer.code not in _WAIT_FOR_USER:
            refresh_at = int(now) + RETRY_AFTER_S
    if new_state is None and state is not None:
        info = f"stsd: unloaded {state.name}"

    touched = set(state.saved if state else ()) | set(new_state.saved if new_state else ())
    changes: dict[str, str | None] = {
        name: desired.get(name) for name in sorted(touched) if desired.get(name) != environ.get(name)
    }
    encoded = new_state.encode() if new_state else None
    if encoded != environ.get(STATE_VARIABLE):
        changes[STATE_VARIABLE] = encoded
    restore: dict[str, str | None] = {}
    if new_state is not None:
        restore = {**new_state.saved, STATE_VARIABLE: None}
    return Transition(changes, new_state, refresh_at, notice, info, restore)


def refusal_line(refused: Refused) -> str:
    directory = os.path.dirname(refused.project_file) or "/"
    allow = f"stsd allow {shell_word(directory)}"
    if refused.code == "untrusted":
        return f"stsd: {refused.project_file} is new or changed; review it, then run: {allow}"
    if refused.code == "denied":
        return f"stsd: {refused.project_file} is denied; to trust it after all run: {allow}"
    return f"stsd: {refused.message}"


def shell_word(text: str) -> str:
    """`text` as one word a user can paste into bash, zsh or fish (single quotes when needed)."""
    if text and all(ch.isalnum() or ch in "_./:@%+=,-" for ch in text) and text.isascii():
        return text
    return "'" + text.replace("'", "'\"'\"'") + "'"


def ask_daemon(directory: str, hook_file: str) -> NoProject | Project | Refused | Unreachable:
    """One `env` request, with a short timeout so a dead or slow daemon never holds the prompt."""
    if not hook_file:
        return NoProject()  # no project file above: leaving needs no daemon at all
    try:
        timeout = float(os.environ.get("STSD_TIMEOUT", "") or DEFAULT_TIMEOUT_S)
    except ValueError:
        timeout = DEFAULT_TIMEOUT_S
    message = {"op": "env", "dir": directory}
    deadline = time.monotonic() + timeout
    reply = quick_request(message, timeout)
    if reply is None:
        # Not running, not answering or garbled: the full client starts it or words the problem.
        from stsd.client.connection import DaemonUnavailable, request

        try:
            reply = request(message, timeout=max(0.05, deadline - time.monotonic()))
        except DaemonUnavailable as error:
            return Unreachable(str(error))
    if not reply.get("ok"):
        error = reply.get("error") or {}
        return Refused(
            hook_file, str(error.get("code", "internal")), str(error.get("message", "unknown error"))
        )
    project = reply.get("project")
    if not project:
        return NoProject()
    return Project(
        hook_file,
        str(project.get("name") or os.path.basename(os.path.dirname(hook_file))),
        reply.get("vars") or {},
        str(reply.get("expiration") or ""),
        int(reply.get("refresh_at") or 0),
    )


# -- the quick path: JSON and the socket without their Python-level modules ---------------------------


class _JsonOptions:
    # What the C scanner reads from json.JSONDecoder; plain types keep its fast paths.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float


def json_loads(text: str) -> object:
    import _json

    value, end = _json.make_scanner(_JsonOptions())(text, 0)
    if text[end:].strip():
        raise ValueError("extra data after the JSON value")
    return value


def json_dumps(value: object) -> str:
    """Compact JSON for the shapes stsd sends: dicts, strings, ints, None, bools."""
    import _json

    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json_dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ",".join(f"{_json.encode_basestring_ascii(str(k))}:{json_dumps(v)}" for k, v in value.items())
            + "}"
        )
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def quick_request(message: dict, timeout: float) -> dict | None:
    """One request/reply line over the daemon's socket; None when anything is off (then the caller uses
    stsd.client.connection, which handles starting the daemon and says what went wrong)."""
    import _socket

    connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        connection.settimeout(timeout)
        connection.connect(socket_path())
        connection.sendall(json_dumps({**message, "v": 1}).encode() + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = connection.recv(65536)
            if not chunk or len(data) > 4 * 1024 * 1024:
                return None
            data += chunk
    except OSError:
        return None
    finally:
        connection.close()
    try:
        reply = json_loads(data[: data.index(b"\n")].decode())
    except (ValueError, UnicodeDecodeError):
        return None
    return reply if isinstance(reply, dict) else None


# stsd.paths, in os.path terms (pathlib costs more to import than this whole process otherwise does);
# tests/shells/test_transition_plan.py checks that both agree.
def _xdg(variable: str, default: str) -> str:
    value = os.environ.get(variable, "")
    return value if value and os.path.isabs(value) else os.path.join(os.path.expanduser("~"), default)


def runtime_dir() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return os.path.join(runtime, "stsd")
    return os.path.join("/tmp", f"stsd-{os.getuid()}")


def socket_path() -> str:
    return os.environ.get("STSD_SOCKET", "") or os.path.join(runtime_dir(), "stsd.sock")


def trust_dir() -> str:
    return os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), "stsd", "trust")


def find_project_file(directory: str) -> str:
    """Nearest .stsd.toml walking up from `directory` (as the hook does), or "" when there is none."""
    while True:
        candidate = os.path.join(directory, PROJECT_FILE_NAME)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return ""
        directory = parent


def current_directory() -> str:
    """$PWD as the shell sees it (symlinks kept) when it is really where we are, else the real path."""
    logical = os.environ.get("PWD", "")
    try:
        if logical and os.path.isabs(logical) and os.path.samefile(logical, "."):
            return logical
    except OSError:
        pass
    return os.getcwd()


class Stamps:
    """Per-shell files the hook compares with builtin `-nt` tests: edits and trust changes, no process."""

    def __init__(self, shell_pid: int) -> None:
        self.directory = os.path.join(runtime_dir(), "shells")
        self.loaded = os.path.join(self.directory, str(shell_pid))
        self.due = self.loaded + ".due"

    def touch_loaded(self) -> None:
        # Both private (0700): the daemon refuses a runtime directory that others can reach.
        for directory in (os.path.dirname(self.directory), self.directory):
            try:  # noqa: SIM105
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        with open(self.loaded, "w"):
            pass
        os.utime(self.loaded)

    def set_due(self, refresh_at: int) -> None:
        """fish has no clock builtin, but `path mtime --relative` turns a future mtime into a due check."""
        if refresh_at:
            with open(self.due, "w"):
                pass
            os.utime(self.due, (refresh_at, refresh_at))
        else:
            try:  # noqa: SIM105 (contextlib would be one more import on every transition)
                os.unlink(self.due)
            except FileNotFoundError:
                pass

    def prune(self) -> None:
        """Remove the stamps of shells that are gone (cheap: a handful of files)."""
        for entry in os.listdir(self.directory):
            pid = entry.partition(".")[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                try:  # noqa: SIM105
                    os.unlink(os.path.join(self.directory, entry))
                except OSError:
                    pass
            except PermissionError:
                pass


def render(shell: ModuleType, transition: Transition, stamps: Stamps, hook_file: str) -> str:
    trust = trust_dir()
    bookkeeping = {
        "_stsd_refresh_at": str(transition.refresh_at),
        "_stsd_notice": transition.notice.cause if transition.notice else "",
        "_stsd_stamp": stamps.loaded,
        "_stsd_due": stamps.due,
        # The trust decision that would change things (TrustStore writes a record into allowed/ or denied/):
        # while loaded a denial, while refused an allow. Either rewrites that directory, newer than the stamp.
        "_stsd_watch": os.path.join(trust, "denied" if transition.state else "allowed") if hook_file else "",
        # Pure-shell fallback for when this client cannot run (binary gone, killed): never keep credentials.
        "_stsd_unload": shell.export(transition.restore),
        "_stsd_name": transition.state.name if transition.state else "",
    }
    return shell.export(transition.changes) + shell.assign(bookkeeping)


def quiet() -> bool:
    """STSD_QUIET set to anything but "" or "0" (the hooks test the same in shell)."""
    return os.environ.get("STSD_QUIET", "") not in ("", "0")


def run(shell_name: str, environ: Mapping[str, str]) -> int:
    from stsd.shells import SHELLS

    shell = SHELLS[shell_name]
    directory = current_directory()
    hook_file = environ[HOOK_FILE] if HOOK_FILE in environ else find_project_file(directory)
    shell_pid = int(environ.get(HOOK_PID, "") or os.getppid())
    stamps = Stamps(shell_pid)
    try:
        # Touched before asking, so an edit or `stsd allow` racing with this run is newer and seen next time.
        stamps.touch_loaded()
        stamps.prune()
    except OSError as error:
        print(f"stsd: cannot write {stamps.directory}: {error.strerror}", file=sys.stderr)
    shown = environ.get(HOOK_SHOWN, "")
    first_prompt = environ.get(HOOK_FIRST) == "1"
    environ = {k: v for k, v in environ.items() if k not in _HOOK_VARIABLES}
    transition = plan(
        environ, ask_daemon(directory, hook_file), hook_file=hook_file, shell_pid=shell_pid, now=time.time()
    )
    if shell_name == "fish":
        try:  # noqa: SIM105
            stamps.set_due(transition.refresh_at)
        except OSError:
            pass
    sys.stdout.write(render(shell, transition, stamps, hook_file))
    if transition.notice and transition.notice.cause != shown:
        print(transition.notice.line, file=sys.stderr)
    elif transition.info and not quiet() and not first_prompt:
        print(transition.info, file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    """Entry for the hook's fast path (`python -I -S -c …`); argv = [SHELL]."""
    if len(argv) != 1 or argv[0] not in ("bash", "zsh", "fish"):
        print("usage: stsd export bash|zsh|fish", file=sys.stderr)
        return 2
    return run(argv[0], os.environ)


def cmd_export(args) -> int:
    return run(args.shell, os.environ)
