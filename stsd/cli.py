"""The `stsd` command line: argument parsing only. Each command lives in its own module, imported on use,
so client commands start without loading boto3 (the daemon's modules are never imported on that path).
The commands SDKs and scripts run per process (`credential-process`, `env`, `exec`) skip argparse in their
plain forms: it costs more than the rest of such a run; anything else (help, a mistake) goes to argparse."""

from __future__ import annotations

import os
import sys

from stsd import __version__, launch
from stsd.shells import SHELLS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing: start-up time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

# command -> "module:function"; every function takes the parsed arguments and returns an exit code.
HANDLERS = {
    "serve": "stsd.daemon.run:cmd_serve",
    "start": "stsd.daemon.detach:cmd_start",
    "stop": "stsd.daemon.detach:cmd_stop",
    "status": "stsd.client.commands:cmd_status",
    "hook": "stsd.shells:cmd_hook",
    "export": "stsd.client.transition:cmd_export",
    "env": "stsd.client.commands:cmd_env",
    "exec": "stsd.client.commands:cmd_exec",
    "allow": "stsd.client.commands:cmd_allow",
    "deny": "stsd.client.commands:cmd_deny",
    "credential-process": "stsd.client.commands:cmd_credential_process",
    "mfa": "stsd.client.commands:cmd_mfa",
    "renew": "stsd.client.commands:cmd_renew",
    "login": "stsd.daemon.sso_login:cmd_login",
    "install-service": "stsd.install_service:cmd_install_service",
    "demo": "stsd.demo.run:cmd_demo",
}

SHELL_NAMES = tuple(SHELLS)
# Commands that become or signal the key-holding daemon: always run isolated from `/` (stsd.launch).
ISOLATED_COMMANDS = frozenset({"serve", "start", "stop"})


def build_parser() -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(
        prog="stsd",
        description="Short-lived AWS role credentials per project, kept fresh by a per-user daemon.",
    )
    parser.add_argument("--version", action="version", version=f"stsd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the daemon in the foreground, logging to stderr")
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))

    start = commands.add_parser("start", help="start the daemon in the background")
    start.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    stop = commands.add_parser("stop", help="stop the background daemon")
    stop.add_argument("--timeout", type=float, default=5.0, help="seconds to wait before SIGKILL (default 5)")

    status = commands.add_parser("status", help="show the daemon, its sources and sessions")
    status.add_argument("--json", action="store_true", help="print one JSON object")

    hook = commands.add_parser("hook", help='print the shell hook: eval "$(stsd hook bash)"')
    hook.add_argument("shell", choices=SHELL_NAMES)

    export = commands.add_parser(
        "export", help="print shell code for the current directory (used by the hook)"
    )
    export.add_argument(
        "shell", choices=(*SHELL_NAMES, "json"), help="a shell, or json: the changes as one JSON object"
    )

    env = commands.add_parser("env", help="print the variables a directory's project gets")
    formats = env.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="the same as --format json")
    formats.add_argument(
        "--format",
        choices=("sh", "json", "dotenv"),
        default=None,
        help="sh (default): export/unset lines safe to eval; json: one object, name -> value, null = unset; "
        'dotenv: NAME="value" lines of the variables to set',
    )
    env.add_argument("dir", nargs="?", default=".", help="directory (default: the current one)")

    exec_ = commands.add_parser("exec", help="run a command with a project's credentials")
    exec_.add_argument("--dir", default=".", help="project directory (default: the current one)")
    exec_.add_argument(
        "--endpoint", action="store_true", help="use the credentials endpoint, whatever the project says"
    )
    exec_.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD...")

    renew = commands.add_parser("renew", help="renew a session now (at most once a minute per session)")
    which_renew = renew.add_mutually_exclusive_group()
    which_renew.add_argument(
        "--dir", help="a directory whose .stsd.toml names the role (default: the current one)"
    )
    which_renew.add_argument("--profile", help="a role profile of ~/.aws/config")

    for name, verb in (("allow", "trust"), ("deny", "refuse")):
        sub = commands.add_parser(name, help=f"{verb} the .stsd.toml governing DIR")
        sub.add_argument("dir", nargs="?", default=".", help="directory (default: the current one)")

    process = commands.add_parser(
        "credential-process",
        help="print AWS credential_process JSON for a profile or project directory",
        description="A bare argument is a profile unless it contains a / or is . (use --dir or --profile to say "
        "which); ~ is expanded, since SDKs run credential_process without a shell.",
    )
    which = process.add_mutually_exclusive_group(required=True)
    which.add_argument("--profile", help="a profile of ~/.aws/config")
    which.add_argument("--dir", help="a directory whose .stsd.toml names the role")
    which.add_argument("target", nargs="?", metavar="PROFILE-OR-PATH")

    mfa = commands.add_parser(
        "mfa", help="give the daemon an MFA code: one code unlocks every role and shell of that source"
    )
    mfa_target = mfa.add_mutually_exclusive_group()
    mfa_target.add_argument("--profile", help="a profile of ~/.aws/config whose source needs the code")
    mfa_target.add_argument("--dir", help="a project directory (default: the current one)")
    mfa.add_argument("--code", help="the code (default: ask on the terminal, else read one line of stdin)")

    login = commands.add_parser(
        "login",
        help="sign in to an SSO profile's portal (device code) and cache the token as aws sso login does",
    )
    login.add_argument(
        "profile",
        nargs="?",
        help="an SSO profile, or a role sourced from one (default: the project's profile)",
    )

    install = commands.add_parser("install-service", help="install the systemd user units")
    install.add_argument("--uninstall", action="store_true", help="remove the units instead")
    install.add_argument(
        "--sandbox", action="store_true", help="also install the namespace sandbox drop-in (docs/systemd.md)"
    )

    demo = commands.add_parser(
        "demo", help="try stsd against an embedded local STS (needs the demo extra: make demo)"
    )
    demo.add_argument("--script", action="store_true", help="run the guided steps non-interactively")
    demo.add_argument("--shell", choices=SHELL_NAMES, default=None, help="shell for the interactive demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = plain_arguments(argv)
    if args is None:
        parser = build_parser()
        if not argv:
            parser.print_help(sys.stderr)
            return 2
        args = parser.parse_args(argv)
    if args.command in ISOLATED_COMMANDS:
        environ = None
        if args.command == "start":
            # Whoever typed it (a shell inside a project, perhaps), the daemon gets the user's own
            # environment: as before any project was entered, less credential and profile variables.
            from stsd.client.connection import daemon_environment

            environ = daemon_environment(os.environ)
        launch.reexec_isolated(argv, environ)  # returns only once isolated
    module_name, _, function_name = HANDLERS[args.command].partition(":")
    handler = getattr(__import__(module_name, fromlist=[function_name]), function_name)
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1


class PlainArguments:
    """What argparse would have parsed from a plain command line (attributes as its Namespace)."""

    def __init__(self, command: str, **values: object) -> None:
        self.command = command
        self.__dict__.update(values)


def plain_arguments(argv: list[str]) -> PlainArguments | None:
    """The arguments of `credential-process`, `env` or `exec` in their plain forms, parsed by hand exactly as
    build_parser() would parse them; None for anything else, which argparse then handles (and explains)."""
    if not argv:
        return None
    command, rest = argv[0], argv[1:]
    if command == "credential-process" and len(rest) == 1 and not rest[0].startswith("-"):
        return PlainArguments(command, target=rest[0], profile=None, dir=None)
    if command == "credential-process" and len(rest) == 2 and rest[0] in ("--profile", "--dir"):
        if rest[1].startswith("-"):
            return None
        return PlainArguments(command, target=None, **{"profile": None, "dir": None, rest[0][2:]: rest[1]})
    if command == "env":
        json_flag = rest[:1] == ["--json"]
        rest = rest[json_flag:]
        if len(rest) > 1 or (rest and rest[0].startswith("-")):
            return None
        return PlainArguments(command, json=json_flag, format=None, dir=rest[0] if rest else ".")
    if command == "exec":
        directory, endpoint, seen_dir = ".", False, False
        while rest[:1] in (["--dir"], ["--endpoint"]):
            if rest[0] == "--endpoint" and not endpoint:
                endpoint, rest = True, rest[1:]
            elif rest[0] == "--dir" and len(rest) > 1 and not rest[1].startswith("-") and not seen_dir:
                directory, rest, seen_dir = rest[1], rest[2:], True
            else:
                return None
        if rest[:1] != ["--"] or len(rest) < 2:
            return None
        return PlainArguments(command, dir=directory, endpoint=endpoint, cmd=rest)
    return None


if __name__ == "__main__":
    sys.exit(main())
