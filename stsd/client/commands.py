"""The client commands `env`, `exec`, `credential-process`, `mfa`, `allow`, `deny` and `status`: ask the daemon,
render its answer, one clear line on stderr when something is wrong. Standard library only, and lean at
the top (no json, pathlib or argparse module): SDKs run `credential-process` for every process they
start, so what `env`, `exec` and `credential-process` need is all this module imports up front."""

from __future__ import annotations

import os
import sys

from stsd import paths, protocol, terminal
from stsd.client import state
from stsd.client.connection import DaemonUnavailable, request
from stsd.shells.quoting import posix_quote
from stsd.wire import json_dumps

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: start-up time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

# How long a command waits for the daemon's answer once connected: longer than the daemon's own wait for
# STS (18 s by default), so a slow STS ends in the daemon's clear `timeout` error, not in ours. A dead
# daemon is still reported at once: connecting and autostart have their own short limits.
REPLY_TIMEOUT_S = 20.0
STATUS_TIMEOUT_S = 5.0  # status never calls STS

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3  # as LSB `status`: the daemon is not running
EXIT_CANNOT_EXECUTE = 126
EXIT_COMMAND_NOT_FOUND = 127

CREDENTIAL_PROCESS_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")


class CommandError(Exception):
    """Ends a command with one line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- commands ------------------------------------------------------------------------------------------


def cmd_env(args: argparse.Namespace) -> int:
    """`stsd env [--json | --format sh|json|dotenv] [DIR]`: the variables DIR's project gets."""
    output = "json" if args.json else args.format or "sh"
    try:
        directory = _existing_directory(args.dir)
        reply = _ask({"op": "env", "dir": directory})
        variables = _project_variables(reply)
    except CommandError as error:
        return _fail(error)
    _warn(reply)
    if output == "json":
        print(json_dumps(variables))
        return EXIT_OK
    if reply.get("project") is None:
        print(f"stsd: no .stsd.toml governs {directory}; nothing to set", file=sys.stderr)
        return EXIT_OK
    for name, value in variables.items():
        if output == "dotenv":
            if value is not None:  # dotenv has no way to say "unset"
                print(f"{name}={_dotenv_quote(value)}")
        else:
            print(f"unset {name}" if value is None else f"export {name}={posix_quote(value)}")
    return EXIT_OK


def _dotenv_quote(value: str) -> str:
    """A double-quoted dotenv value (docker compose, python-dotenv, direnv's dotenv): \\ \" \n escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
    return f'"{escaped}"'


def cmd_exec(args: argparse.Namespace) -> int:
    """`stsd exec [--dir DIR] [--endpoint] -- CMD...`: replace this process with CMD, run with the project's
    variables (with --endpoint: the credentials endpoint's, whatever the project says)."""
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    try:
        if not command:
            raise CommandError("exec needs a command: stsd exec [--dir DIR] -- CMD...", EXIT_USAGE)
        directory = _existing_directory(args.dir)
        message: dict[str, Any] = {"op": "env", "dir": directory}
        if getattr(args, "endpoint", False):
            message["credentials"] = "endpoint"
        reply = _ask(message)
        if reply.get("project") is None:
            raise CommandError(f"no .stsd.toml governs {directory}; nothing to run {command[0]} with")
        variables = _project_variables(reply)
        _warn(reply)
    except CommandError as error:
        return _fail(error)
    # The environment from before any loaded project, so `exec --dir B` inside A gets none of A's values.
    environment = state.outside_environment(os.environ)
    for name, value in variables.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    sys.stdout.flush()
    try:
        os.execvpe(command[0], command, environment)
    except FileNotFoundError:
        return _fail(CommandError(f"{command[0]}: command not found", EXIT_COMMAND_NOT_FOUND))
    except OSError as error:
        return _fail(CommandError(f"{command[0]}: {error.strerror}", EXIT_CANNOT_EXECUTE))
    return EXIT_ERROR  # not reached: execvpe only returns by raising


def cmd_credential_process(args: argparse.Namespace) -> int:
    """`stsd credential-process [--profile NAME | --dir DIR | NAME-OR-PATH]`: the JSON an AWS SDK's
    credential_process expects. A bare argument is a profile unless it holds a `/` or is `.` or `..`: a
    directory that happens to carry a profile's name never takes its place."""
    target: str | None = args.target
    directory = args.dir if target is None else target if _is_path(target) else None
    try:
        if directory is not None:
            message: dict[str, Any] = {"op": "credentials", "dir": _existing_directory(directory)}
        else:
            message = {"op": "credentials", "profile": args.profile if target is None else target}
        reply = _ask(message)
        credentials = reply.get("credentials")
        if not isinstance(credentials, dict) or not all(
            isinstance(credentials.get(key), str) for key in CREDENTIAL_PROCESS_KEYS
        ):
            raise CommandError(f"the daemon's reply holds no credentials; see its log: {paths.log_file()}")
    except CommandError as error:
        return _fail(error)
    # Exactly these keys in this order, Version the number 1: what every SDK parses.
    document = {"Version": 1, **{key: credentials[key] for key in CREDENTIAL_PROCESS_KEYS}}
    print(json_dumps(document))
    return EXIT_OK


def cmd_mfa(args: argparse.Namespace) -> int:
    """`stsd mfa [--profile NAME | --dir DIR] [--code CODE]`: start the MFA session of a source with a code
    (from --code, else asked on the terminal, else one line of stdin); the daemon never prompts."""
    try:
        if args.profile is not None:
            target: dict[str, Any] = {"profile": args.profile}
        else:
            target = {"dir": _existing_directory(args.dir or ".")}
        code = args.code
        if code is None:
            # Ask first which source and device it is (and whether it needs a code at all).
            about = _ask({"op": "mfa", **target})
            code = _read_code(about)
        code = code.strip()
        from stsd import aws_values  # re: only for this command, not on credential-process's path

        if not aws_values.MFA_CODE.accepts(code):
            raise CommandError(aws_values.MFA_CODE.problem, EXIT_USAGE)
        reply = _ask({"op": "mfa", **target, "code": code})
    except CommandError as error:
        return _fail(error)
    session = reply.get("session") or {}
    until = session.get("expires_at") or "?"
    print(_one_line(f"stsd: MFA session for {reply.get('source', '?')} held until {until}"))
    return EXIT_OK


def _read_code(about: Mapping[str, Any]) -> str:
    """One line from the terminal (with a prompt naming the device) or from stdin when it is not one."""
    device = (about.get("session") or {}).get("mfa_serial") or "your MFA device"
    if sys.stdin.isatty():
        print(_one_line(f"MFA code for {about.get('source', '?')} ({device}): "), end="", file=sys.stderr)
        sys.stderr.flush()
    try:
        line = sys.stdin.readline()
    except (OSError, UnicodeDecodeError):
        line = ""
    if not line.strip():
        raise CommandError("no MFA code given: type it, pipe it in, or use --code", EXIT_USAGE)
    return line


def cmd_renew(args: argparse.Namespace) -> int:
    """`stsd renew [--dir DIR | --profile NAME]`: renew a session now (at most once a minute per session)."""
    try:
        if args.profile is not None:
            message: dict[str, Any] = {"op": "renew", "profile": args.profile}
            label = f"profile {args.profile}"
        else:
            directory = _existing_directory(args.dir or ".")
            message = {"op": "renew", "dir": directory}
            label = directory
        reply = _ask(message)
    except CommandError as error:
        return _fail(error)
    expiration = reply.get("expiration") or (reply.get("credentials") or {}).get("Expiration")
    print(_one_line(f"stsd: renewed {label}; the new credentials expire {expiration}"))
    if "vars" in reply and reply.get("project", {}).get("credentials") != "endpoint":
        print("stsd: shells in the project pick them up at their next prompt", file=sys.stderr)
    return EXIT_OK


def cmd_allow(args: argparse.Namespace) -> int:
    """`stsd allow [DIR]`: trust the governing .stsd.toml exactly as it is now (after checking it parses),
    first showing each [env] variable that redirects AWS requests or makes a tool run something."""
    from stsd.project.discovery import discover, ignored_message
    from stsd.project.projectfile import ProjectFileError, load_project_file
    from stsd.project.trust import TrustStore, TrustStoreError
    from stsd.variables import risk_of

    try:
        directory = logical_path(args.dir)
        if os.path.isdir(directory):
            for ignored, owner in discover(directory)[1]:
                print(f"stsd: {ignored_message(ignored, owner)}", file=sys.stderr)
        path = _governing_project_file(args.dir)
        try:
            project = load_project_file(path)
        except ProjectFileError as error:
            raise CommandError(f"{error} (fix it, then run stsd allow again)") from None
        for name, value in project.env.items():
            why = risk_of(name)
            if why:
                print(_one_line(f"stsd: this file sets {name} = {value} ({why})"), file=sys.stderr)
        try:
            TrustStore(paths.trust_dir()).allow(project.path, project.content)
        except TrustStoreError as error:
            raise CommandError(str(error)) from None
    except CommandError as error:
        return _fail(error)
    print(f"stsd: allowed {_one_line(str(project.path))}")
    return EXIT_OK


def cmd_deny(args: argparse.Namespace) -> int:
    """`stsd deny [DIR]`: refuse the governing .stsd.toml, now and after any edit, until allowed."""
    from stsd.project.trust import TrustStore, TrustStoreError

    try:
        path = _governing_project_file(args.dir)
        try:
            TrustStore(paths.trust_dir()).deny(path)
        except TrustStoreError as error:
            raise CommandError(str(error)) from None
    except CommandError as error:
        return _fail(error)
    print(f"stsd: denied {_one_line(str(path))}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`stsd status [--json]`: the daemon, its sources and sessions, and this directory's project."""
    try:
        directory = logical_path(".")
    except CommandError as error:
        return _fail(error)
    try:
        # Status reports; it never starts the daemon (that would hide that it was down).
        reply = request({"op": "status", "dir": directory}, timeout=STATUS_TIMEOUT_S, autostart=False)
    except DaemonUnavailable as error:
        from pathlib import Path

        from stsd.project.governing import governing_project
        from stsd.project.trust import TrustStore

        project = governing_project(Path(directory), TrustStore(paths.trust_dir()))
        if args.json:
            print(json_dumps({"daemon": None, "sources": [], "sessions": [], "project": project}))
        else:
            # The reason once, without repeating "not running" (wire.NOT_RUNNING says it already).
            print(f"daemon    {_one_line(str(error)).removeprefix('the daemon is ')}")
            print(_render_project(project, directory))
        # 3 only when no daemon listens; a refused socket or one that does not answer is an error.
        return EXIT_NOT_RUNNING if error.absent else EXIT_ERROR
    if reply.get("ok") is not True:
        return _fail(CommandError(_refusal_message(protocol.Refusal.of(reply))))
    if args.json:
        print(json_dumps(reply))
    else:
        # Session labels hold "→": a terminal whose encoding lacks a character shows "?", not a traceback.
        encoding = sys.stdout.encoding or "utf-8"
        print(render_status(reply, directory).encode(encoding, errors="replace").decode(encoding))
    return EXIT_OK


# -- status rendering --------------------------------------------------------------------------------


def render_status(reply: Mapping[str, Any], directory: str) -> str:
    """A readable summary of a `status` reply. Only named, non-secret fields are shown."""
    lines = _render_daemon(reply.get("daemon") or {})
    lines.append(_render_sources(reply.get("sources") or []))
    lines.append(_render_sessions(reply.get("sessions") or []))
    lines.append(_render_project(reply.get("project"), directory))
    lines.extend(_render_endpoint(reply.get("endpoint") or {}))
    return "\n".join(lines)


def _render_endpoint(endpoint: Mapping[str, Any]) -> list[str]:
    if not endpoint:
        return []
    if endpoint.get("url"):
        count = endpoint.get("projects", 0)
        line = f"endpoint  {endpoint['url']} ({count} project{'' if count == 1 else 's'}, {endpoint.get('requests', 0)} requests)"
    else:
        line = "endpoint  not started (no project in endpoint mode yet)"
    lines = [_one_line(line)]
    if endpoint.get("warning"):
        lines.append(_one_line(f"warning   {endpoint['warning']}"))
    return lines


def _render_daemon(daemon: Mapping[str, Any]) -> list[str]:
    facts = [f"pid {daemon.get('pid')}"]
    if isinstance(daemon.get("uptime_s"), (int, float)):
        facts.append(f"up {_duration(daemon['uptime_s'])}")
    if isinstance(daemon.get("rss_bytes"), (int, float)):
        facts.append(f"{daemon['rss_bytes'] / (1024 * 1024):.1f} MiB")
    if daemon.get("mode"):
        facts.append(str(daemon["mode"]))
    if daemon.get("version"):
        facts.append(f"stsd {daemon['version']}")
    lines = [
        _one_line(f"daemon    running, {', '.join(facts)}"),
        _one_line(f"socket    {daemon.get('socket', paths.socket_path())}"),
        _one_line(f"log       {daemon.get('log', '?')}"),
    ]
    # The variables the daemon reads that are set in its environment (stsd/daemon/environment.py).
    environment = daemon.get("environment")
    if isinstance(environment, dict) and environment:
        for index, (name, value) in enumerate(environment.items()):
            label = "env" if index == 0 else ""
            lines.append(_one_line(f"{label:<10}{name}={value}"))
    return lines


def _render_sources(sources: list[Mapping[str, Any]]) -> str:
    if not sources:
        return "sources   none yet"
    lines = ["sources"]
    for source in sources:
        identity = source.get("identity_arn") or "identity unknown"
        line = f"  {source.get('name', '?')}  ({source.get('kind', '?')})  {identity}"
        if source.get("error"):
            line += f"  error: {source['error']}"
        lines.append(_one_line(line))
        session = source.get("session")
        if isinstance(session, dict):
            lines.append(_one_line(f"    {_session_token_line(session)}"))
            if session.get("last_error"):
                lines.append(_one_line(f"    last error  {session['last_error']}"))
        sso = source.get("sso")
        if isinstance(sso, dict):
            lines.extend(_one_line(f"    {line}") for line in _sso_lines(sso))
        if isinstance(source.get("expires_in_s"), (int, float)):
            lines.append(_one_line(f"    credentials expire {_expiry(source)}"))
    return "\n".join(lines)


def _sso_lines(sso: Mapping[str, Any]) -> list[str]:
    """An SSO source's start URL and sign-in: the cached token's expiry, or the command that signs in."""
    where = str(sso.get("start_url") or "?")
    if sso.get("sso_session"):
        where += f" (sso-session {sso['sso_session']})"
    lines = [f"SSO         {where}"]
    left = sso.get("token_expires_in_s")
    if sso.get("needs_sign_in"):
        if not isinstance(left, (int, float)):
            ended = "no token cached; "
        elif left <= 0:
            ended = f"token expired {sso.get('token_expires_at')}; "
        else:
            ended = "token refused by the portal; "
        lines.append(f"sign-in     {ended}needed: run {sso.get('sign_in_command') or 'aws sso login'}")
    elif isinstance(left, (int, float)):
        lines.append(
            f"sign-in     token until {sso.get('token_expires_at')} ({_duration(max(0, left))} left)"
        )
    return lines


def _session_token_line(session: Mapping[str, Any]) -> str:
    """One line on a source's GetSessionToken (MFA) session: held until when, ending, or a code needed."""
    what = "MFA session" if session.get("mfa_serial") else "session"
    left = session.get("expires_in_s")
    if session.get("held") and isinstance(left, (int, float)):
        line = f"{what}  held until {session.get('expires_at')} ({_duration(left)} left)"
        if session.get("ending_soon"):
            line += "; ends soon: run stsd mfa for a new one"
        elif session.get("mfa_process"):
            line += "; renewed with mfa_process"
        return line
    if session.get("needs_code"):
        ended = f"ended {session['ended_at']}; " if session.get("ended_at") else ""
        return f"{what}  {ended}needs a code: run stsd mfa"
    return f"{what}  none held yet"


def _render_sessions(sessions: list[Mapping[str, Any]]) -> str:
    if not sessions:
        return "sessions  none"
    lines = ["sessions"]
    for session in sessions:
        lines.append(_one_line(f"  {session.get('label') or session.get('role_arn') or '?'}"))
        if session.get("role_arn"):
            role = str(session["role_arn"])
            if session.get("account"):
                role += f" (account {session['account']})"
            lines.append(_one_line(f"    role        {role}"))
        else:
            lines.append(_one_line(f"    session of  {session.get('source') or '?'} (no role)"))
        if session.get("assumed_role_arn"):
            lines.append(_one_line(f"    identity    {session['assumed_role_arn']}"))
        lines.append(_one_line(f"    expires     {_expiry(session)}"))
        if isinstance(session.get("renews_in_s"), (int, float)):
            lines.append(f"    renews      in {_duration(session['renews_in_s'])}")
        if session.get("idle"):
            lines.append("    idle        not renewed until used again")
        if session.get("blocked"):
            lines.append("    force renew not until the AWS config or credentials files change")
        elif isinstance(session.get("forced_renewal_in_s"), (int, float)):
            wait = session["forced_renewal_in_s"]
            when = f" ({session['forced_renewal_at']})" if session.get("forced_renewal_at") else ""
            possible = "possible now" if wait <= 0 else f"possible in {_duration(wait)}{when}"
            lines.append(_one_line(f"    force renew {possible}"))
        if session.get("last_error"):
            lines.append(_one_line(f"    last error  {session['last_error']}"))
        if session.get("note"):
            lines.append(_one_line(f"    note        {session['note']}"))
        if session.get("cost"):
            lines.append(_one_line(f"    cost        {session['cost']}"))
    return "\n".join(lines)


def _expiry(session: Mapping[str, Any]) -> str:
    seconds = session.get("expires_in_s")
    if not isinstance(seconds, (int, float)):
        return "no credentials held"
    when = f" ({session['expires_at']})" if session.get("expires_at") else ""
    if seconds <= 0:
        return f"expired {_duration(-seconds)} ago{when}"
    return f"in {_duration(seconds)}{when}"


def _render_project(project: Mapping[str, Any] | None, directory: str) -> str:
    # Files another user owns were passed over: say so above whatever governs instead.
    lines = [_one_line(f"project   {line}") for line in (project or {}).get("ignored") or []]
    if project is None or project.get("path") is None:
        lines.append(_one_line(f"project   none (no .stsd.toml in {directory} or above)"))
    elif project.get("error"):
        # The error names the file (and line) itself.
        lines.append(_one_line(f"project   broken: {project['error']}"))
    else:
        trust = project.get("trust")
        advice = {
            "untrusted": f"; run: {terminal.allow_command(str(project.get('path')), terminal.user_shell())}",
            "denied": "; run stsd allow to undo",
        }.get(str(trust), "")
        lines.append(_one_line(f"project   {project.get('path')} ({project.get('name')}): {trust}{advice}"))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours // 24}d{hours % 24:02d}h"


# -- helpers --------------------------------------------------------------------------------------------


def logical_path(given: str) -> str:
    """`given` as an absolute path without resolving symlinks, relative to the shell's $PWD when that is
    where we are (as `cd` sees it), so projects behind a symlinked directory are found as the user sees them."""
    # SDKs run credential_process without a shell, so a `~` arrives as written.
    given = os.path.expanduser(given)
    if os.path.isabs(given):
        return os.path.normpath(given)
    try:
        base = os.getcwd()
    except FileNotFoundError:
        raise CommandError("the current directory no longer exists; cd to another one") from None
    pwd = os.environ.get("PWD", "")
    if pwd and os.path.isabs(pwd):
        try:
            if os.path.samefile(pwd, base):
                base = pwd
        except OSError:
            pass
    return os.path.normpath(os.path.join(base, given))


def _existing_directory(given: str) -> str:
    directory = logical_path(given)
    if not os.path.isdir(directory):
        raise CommandError(f"{given}: no such directory")
    return directory


def _is_path(target: str) -> bool:
    return "/" in target or target in (".", "..", "~")


def _governing_project_file(given: str) -> Path:
    from pathlib import Path

    from stsd.project.projectfile import PROJECT_FILE_NAME, find_project_file

    path = logical_path(given)
    if os.path.basename(path) == PROJECT_FILE_NAME and not os.path.isdir(path):
        if not os.path.lexists(path):
            raise CommandError(f"{path}: no such file")
        return Path(path)
    if not os.path.isdir(path):
        raise CommandError(f"{given}: no such directory")
    found = find_project_file(Path(path))
    if found is None:
        raise CommandError(f"no {PROJECT_FILE_NAME} in {path} or any parent directory")
    return found


def _ask(message: dict[str, Any]) -> dict[str, Any]:
    """The daemon's ok reply, or CommandError with its one-line refusal."""
    try:
        reply = request(message, timeout=REPLY_TIMEOUT_S)
    except DaemonUnavailable as error:
        raise CommandError(str(error)) from None
    if reply.get("ok") is not True:
        raise CommandError(_refusal_message(protocol.Refusal.of(reply)))
    return reply


def _refusal_message(refusal: protocol.Refusal) -> str:
    """The one line a command prints for the daemon's refusal."""
    if refusal.code == protocol.BAD_REPLY:
        return f"{refusal.message}: {paths.log_file()}"
    if refusal.code == protocol.UNSUPPORTED_VERSION:
        return "the running daemon is another stsd version; restart it: stsd stop && stsd start"
    project = refusal.fields.get("project")
    if isinstance(project, str):
        return terminal.refusal_line(refusal.code, project, refusal.message, terminal.user_shell())
    return refusal.message


def _project_variables(reply: Mapping[str, Any]) -> dict[str, str | None]:
    """The variables of an env reply, refused whole if it names one stsd never sets."""
    if reply.get("project") is None:
        return {}
    try:
        return terminal.checked_variables(reply.get("vars"))
    except protocol.Refusal as refusal:
        raise CommandError(refusal.message) from None


def _warn(reply: Mapping[str, Any]) -> None:
    """The daemon's one-line warning about the reply (a [default] profile that shadows the endpoint)."""
    if reply.get("warning"):
        print(f"stsd: warning: {_one_line(str(reply['warning']))}", file=sys.stderr)


def _fail(error: CommandError) -> int:
    print(f"stsd: {_one_line(str(error))}", file=sys.stderr)
    return error.exit_code


_one_line = terminal.printable
