"""`stsd export SHELL`: the step from the shell's current variables to its directory's project (enter,
stay, renew, switch, leave), printed as code for that shell. Standard library only: this runs on every
project transition, so it imports as little as it can. Every `cd` into a project pays this process's
start-up, and the usual modules (dataclasses, json, socket, pathlib, collections) would triple it; so
values are small immutable classes (stsd.client.state) and the one daemon request goes through
stsd.wire, the only socket client, which checks who is on the other end."""

from __future__ import annotations

import os
import sys
import time

from stsd import paths, protocol, terminal, variables, wire
from stsd.client import state as shell_state
from stsd.client.state import STATE_VARIABLE, LoadedState, Value

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing collections.abc at run time costs a few milliseconds
    from collections.abc import Callable, Mapping
    from types import ModuleType

# Handed by the hook to this one process only (never kept in the shell's environment):
HOOK_FILE = "__STSD_FILE"  # the .stsd.toml the hook found walking up from $PWD; "" = none
HOOK_SHOWN = "__STSD_SHOWN"  # cause of the last message shown, so each cause is shown once
HOOK_PID = "__STSD_PID"  # the interactive shell's pid
HOOK_FIRST = "__STSD_FIRST"  # "1" at the shell's first prompt: no informational line at start-up
# "1" while powerlevel10k's instant prompt is on: a line for the user goes into the hook's _stsd_held
# (shown once the instant prompt is over) instead of to the terminal now.
HOOK_HOLD = "__STSD_HOLD"
_HOOK_VARIABLES = (HOOK_FILE, HOOK_SHOWN, HOOK_PID, HOOK_FIRST, HOOK_HOLD)

DEFAULT_TIMEOUT_S = 1.0  # the prompt waits at most this long for the daemon, this process's start-up included
# Of that wait, kept back for what follows giving up: turning the answer into shell code, exiting.
FINISH_MARGIN_S = 0.05
# And kept back from what the daemon is told it may take (wait_ms): its reply has to reach us in time,
# through a loop that may be busy with many other shells.
REPLY_MARGIN_S = 0.15
MIN_EXCHANGE_S = 0.2  # start-up alone used the wait up: still ask (the daemon starts the fetch), briefly
# A pending session: ask again at the next prompt, which is at least this far off. Not "now" (as for
# mfa_required): fish runs the hook on `cd` and again at the prompt right after it, which would hold
# that prompt a second time.
PENDING_RETRY_S = 1
RETRY_AFTER_S = 60  # asking again after an STS-side failure that may clear by itself
# The daemon may be slow only because it is fetching a first session from STS: ask again soon.
RETRY_UNREACHABLE_S = 5


# What the daemon said about the directory: one of these four, or a protocol.Refusal.
class NoProject(Value):
    __slots__ = ()


class Project(Value):
    """variables: name -> value, None = unset; refresh_at: epoch seconds when to ask again."""

    fields = ("project_file", "name", "variables", "expiration", "refresh_at", "warning")
    __slots__ = fields


class Unreachable(Value):
    fields = ("message",)
    __slots__ = fields


# Why a Pending answer has nothing yet:
FETCHING = "fetching"  # the daemon said `pending`: the session is being fetched
BUSY = "queued"  # the daemon said `pending` with busy: our request waited in its queue past our deadline
LATE = "late"  # no answer in time: a busy daemon, or a wedged one


class Pending(Value):
    """Nothing to set yet, for `reason` (one of the three above): ask again at the next prompt."""

    fields = ("project_file", "reason")
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
    answer: NoProject | Project | protocol.Refusal | Unreachable | Pending,
    *,
    hook_file: str,
    shell_pid: int,
    now: float,
    read_secrets: Callable[[int], dict[str, str]] | None = None,
) -> Transition:
    """The whole decision, free of I/O but for reading the state's saved secrets: from the current
    variables and the daemon's answer to the changes."""
    state = LoadedState.decode(environ.get(STATE_VARIABLE, ""), read_secrets)
    # The environment as it was before the loaded project, which leaving or switching returns to.
    outside = shell_state.restore_saved(environ, state)

    new_state: LoadedState | None = None
    desired = outside
    refresh_at = 0
    notice: Notice | None = None
    info: str | None = None
    if isinstance(answer, Project):
        variables_ = {variables.PROMPT_NAME_VARIABLE: answer.name, **answer.variables}
        saved = {name: outside.get(name) for name in variables_}
        new_state = LoadedState(shell_pid, answer.project_file, answer.name, answer.expiration, saved)
        desired = {**outside, **variables_}
        refresh_at = answer.refresh_at
        if state is None or state.project_file != answer.project_file:
            info = f"stsd: loaded {answer.name} (expires {answer.expiration})"
            if state is not None:
                info += f", unloaded {state.name}"
            if answer.warning:
                # Said once at entry (and in `stsd env`, `stsd status`): the endpoint is shadowed.
                notice = Notice(f"warning:{answer.project_file}", f"stsd: warning: {answer.warning}")
    elif isinstance(answer, (Unreachable, Pending)):
        if state is not None and state.project_file == hook_file and state.expiration > utc_text(now):
            # Still in the same project with credentials that have not expired: keep them, ask later.
            new_state = state._replace(shell_pid=shell_pid)
            desired = {**outside, **{name: environ.get(name) for name in state.saved}}
        if isinstance(answer, Unreachable):
            notice = Notice("unreachable", f"stsd: {answer.message}")
            if hook_file:
                refresh_at = int(now) + RETRY_UNREACHABLE_S
        else:
            # Another project's variables go, as on a leave; none of this one's is set before its
            # credentials are: a project half loaded (its region, no keys) would send commands elsewhere.
            refresh_at = int(now) + PENDING_RETRY_S
            if new_state is None:  # a renewal under way while the held credentials last needs no word
                notice = pending_notice(answer)
    elif isinstance(answer, protocol.Refusal):
        cause = f"{answer.code}:{answer.fields.get('project', hook_file)}"
        if answer.code == protocol.INVALID_PROJECT:
            cause += f":{answer.message}"  # fixing a file step by step: each new error is news
        notice = Notice(cause, f"stsd: {answer.message}")
        if answer.code in protocol.ASK_AGAIN_AT_NEXT_PROMPT:
            refresh_at = int(
                now
            )  # `stsd mfa` or `aws sso login` (any shell) cures it: ask at the next prompt
        elif answer.code not in protocol.WAIT_FOR_USER:  # the hook watches the file and trust for those
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


def pending_notice(answer: Pending) -> Notice:
    where = os.path.dirname(answer.project_file) or "/"
    if answer.reason != FETCHING:
        return Notice(
            f"{answer.reason}:{answer.project_file}",
            f"stsd: the daemon is busy; credentials for {where} will be set at the next prompt",
        )
    return Notice(
        f"{protocol.PENDING}:{answer.project_file}",
        f"stsd: fetching credentials for {where}; they will be set at the next prompt",
    )


def hook_timeout() -> float:
    try:
        return float(os.environ.get("STSD_TIMEOUT", "") or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S


def process_started() -> float:
    """time.monotonic() when this process was forked, so the prompt's wait counts our start-up (tens of
    milliseconds, more on a busy machine). From the kernel's start time; now if that cannot be read."""
    now = time.monotonic()
    try:
        with open("/proc/self/stat", "rb") as stat:
            # Fields after the command name, which is in parentheses and may hold anything: field 22,
            # the start time in clock ticks since boot, is the 20th.
            ticks = int(stat.read().rpartition(b")")[2].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - min(max(age, 0.0), 3600.0)


def ask_daemon(
    directory: str, project_file: str, shell_name: str, *, started: float | None = None
) -> NoProject | Project | protocol.Refusal | Unreachable | Pending:
    """One `env` request, answered within the hook's timeout counted from `started` (monotonic; default:
    when this process started), so neither a dead daemon nor a queue of STS calls holds the prompt: the
    daemon is told how long it has (wait_ms) and says `pending` rather than make us wait longer."""
    if not project_file:
        return NoProject()  # no project file above: leaving needs no daemon at all
    deadline = (process_started() if started is None else started) + hook_timeout() - FINISH_MARGIN_S

    def left() -> float:
        return max(MIN_EXCHANGE_S, deadline - time.monotonic())

    def message() -> dict[str, object]:
        # asked_at: the wall clock, the one clock the daemon surely shares; the wait is counted from it.
        wait_ms = int(max(0.0, left() - REPLY_MARGIN_S) * 1000)
        return {
            "op": "env",
            "dir": directory,
            protocol.WAIT_FIELD: wait_ms,
            protocol.ASKED_AT_FIELD: time.time(),
        }

    try:
        reply = wire.request(message(), left()).message
    except wire.WireError as error:
        if error.kind == wire.LATE:
            return Pending(project_file, LATE)
        if not error.startable:
            return Unreachable(str(error))
        # No daemon: stsd.client.connection starts one (or says why not), within what is left of the wait.
        from stsd.client.connection import DaemonUnavailable, request

        try:
            reply = request(message(), timeout=left())
        except DaemonUnavailable as error:
            return Unreachable(str(error))
    if not reply.get("ok"):
        refusal = protocol.Refusal.of(reply)
        if refusal.code == protocol.PENDING:
            return Pending(
                project_file, BUSY if refusal.fields.get(protocol.BUSY_FIELD) is True else FETCHING
            )
        line = terminal.refusal_line(refusal.code, project_file, refusal.message, shell_name)
        return protocol.Refusal(refusal.code, line, project=project_file)
    project = reply.get("project")
    if not project:
        return NoProject()
    try:
        applied = terminal.checked_variables(reply.get("vars"))
    except protocol.Refusal as refusal:
        return protocol.Refusal(refusal.code, refusal.message, project=project_file)
    return Project(
        str(project.get("path") or project_file),
        str(project.get("name") or os.path.basename(os.path.dirname(project_file))),
        applied,
        str(reply.get("expiration") or ""),
        int(reply.get("refresh_at") or 0),
        str(reply.get("warning") or ""),
    )


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
    """Per-shell files the hook compares with builtin `-nt` tests: edits and trust changes, no process.
    They live in the private runtime directory (checked) and are never written through a link."""

    def __init__(self, shell_pid: int) -> None:
        self.directory = paths.shells_dir()
        self.loaded = os.path.join(self.directory, str(shell_pid))
        self.due = self.loaded + ".due"
        self.usable = False  # until touch_loaded() has checked the directory is ours and private

    def touch_loaded(self) -> None:
        shell_state.ensure_shells_dir()
        self.usable = True
        _touch(self.loaded, None)

    def set_due(self, refresh_at: int) -> None:
        """fish has no clock builtin, but `path mtime --relative` turns a future mtime into a due check."""
        if not self.usable:
            return
        if refresh_at:
            _touch(self.due, (refresh_at, refresh_at))
        else:
            try:  # noqa: SIM105 (contextlib would be one more import on every transition)
                os.unlink(self.due)
            except FileNotFoundError:
                pass

    def prune(self) -> None:
        """Remove the files of shells that are gone (cheap: a handful of files)."""
        for entry in os.listdir(self.directory):
            pid = entry.lstrip(".").partition(".")[0]
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


def _touch(path: str, times: tuple[int, int] | None) -> None:
    descriptor = paths.open_private_file(path, 0)
    try:
        os.utime(descriptor, times)
    finally:
        os.close(descriptor)


def render(shell: ModuleType, transition: Transition, stamps: Stamps, project_file: str) -> str:
    trust = paths.trust_dir()
    bookkeeping = {
        "_stsd_refresh_at": str(transition.refresh_at),
        "_stsd_notice": transition.notice.cause if transition.notice else "",
        "_stsd_stamp": stamps.loaded,
        "_stsd_due": stamps.due,
        # The trust decision that would change things (TrustStore writes a record into allowed/ or denied/):
        # while loaded a denial, while refused an allow. Either rewrites that directory, newer than the stamp.
        "_stsd_watch": os.path.join(trust, "denied" if transition.state else "allowed")
        if project_file
        else "",
        # Pure-shell fallback for when this client cannot run (binary gone, killed): never keep credentials.
        "_stsd_unload": shell.export(transition.restore),
        "_stsd_name": transition.state.name if transition.state else "",
    }
    return shell.export(transition.changes) + shell.assign(bookkeeping)


def quiet() -> bool:
    """STSD_QUIET set to anything but "" or "0" (the hooks test the same in shell)."""
    return os.environ.get("STSD_QUIET", "") not in ("", "0")


def run(shell_name: str, environ: Mapping[str, str]) -> int:
    from stsd.project.discovery import discover, ignored_message
    from stsd.shells import SHELLS

    # `json`: the changes as one object (name -> value, null = unset), for editors and other tools.
    as_json = shell_name == "json"
    shell = None if as_json else SHELLS[shell_name]
    advice_shell = terminal.user_shell() if as_json else shell_name
    directory = current_directory()
    project_file, ignored = discover(directory)
    shell_pid = int(environ.get(HOOK_PID, "") or os.getppid())
    stamps = Stamps(shell_pid)
    stamp_problem = ""
    try:
        # Touched before asking, so an edit or `stsd allow` racing with this run is newer and seen next time.
        stamps.touch_loaded()
        stamps.prune()
    except (OSError, paths.UnsafeDirectoryError) as error:
        stamp_problem = f"stsd: cannot write {stamps.directory}: {_reason(error)}"
    shown = environ.get(HOOK_SHOWN, "")
    first_prompt = environ.get(HOOK_FIRST) == "1"
    hold = environ.get(HOOK_HOLD) == "1"
    environ = {k: v for k, v in environ.items() if k not in _HOOK_VARIABLES}
    answer = ask_daemon(directory, project_file, advice_shell)
    if (
        isinstance(answer, Pending)
        and answer.reason == LATE
        and shown in (pending_notice(answer).cause, "unreachable")
    ):
        # Late twice in a row: not a moment's queue but a daemon that does not answer; say how to fix it.
        answer = Unreachable(wire.NOT_ANSWERING)
    transition = plan(environ, answer, hook_file=project_file, shell_pid=shell_pid, now=time.time())
    if ignored and transition.notice is None:
        # A file another user planted above us governs nothing; say so once, whatever else happened.
        path, owner = ignored[0]
        transition = transition._replace(
            notice=Notice(f"foreign:{path}", f"stsd: {ignored_message(path, owner)}")
        )
    if stamp_problem and transition.notice is None:
        transition = transition._replace(notice=Notice("stamps", stamp_problem))
    try:
        if transition.state is not None:
            shell_state.write_saved_secrets(shell_pid, transition.state.secrets())
        if shell_name == "fish":
            stamps.set_due(transition.refresh_at)
    except (OSError, paths.UnsafeDirectoryError) as error:
        # Without the saved values, leaving could not give back what the user had: load nothing.
        print(f"stsd: cannot keep your previous values safe: {_reason(error)}", file=sys.stderr)
        return 1
    if shell is None:
        sys.stdout.write(wire.json_dumps(transition.changes) + "\n")
    else:
        sys.stdout.write(render(shell, transition, stamps, project_file))
    line = ""
    if transition.notice and transition.notice.cause != shown:
        line = terminal.printable(transition.notice.line)
    elif transition.info and not quiet() and not first_prompt:
        line = terminal.printable(transition.info)
    if line and hold and shell is not None:
        sys.stdout.write(shell.assign({"_stsd_held": line}))
    elif line:
        print(line, file=sys.stderr)
    return 0


def _reason(error: Exception) -> str:
    return (
        str(error)
        if isinstance(error, paths.UnsafeDirectoryError)
        else str(getattr(error, "strerror", error))
    )


def main(argv: list[str]) -> int:
    """Entry for the hook's fast path (`python -I -S -c …`); argv = [SHELL]."""
    from stsd.shells import SHELLS

    if len(argv) != 1 or argv[0] not in SHELLS:
        print(f"usage: stsd export {'|'.join(SHELLS)}", file=sys.stderr)
        return 2
    return run(argv[0], os.environ)


def cmd_export(args) -> int:
    return run(args.shell, os.environ)
