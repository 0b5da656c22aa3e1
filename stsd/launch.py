"""How stsd starts its own processes (the hook's client, the daemon): an absolute interpreter in isolated
mode, importing stsd from the root it was installed in and nothing from the current directory or
PYTHONPATH, which a cloned repository or a project's environment could control."""

from __future__ import annotations

import os
import sys

# `python -I [-S] -c ENTRY ROOT ARGS...`: ROOT (the directory holding the stsd package) goes first on
# sys.path, so stsd is found even where site-packages is skipped (-S) or stsd runs from a checkout.
_ENTRY = "import sys;sys.path.insert(0,sys.argv[1]);from {module} import main;sys.exit(main(sys.argv[2:]))"
HOOK_ENTRY = _ENTRY.format(module="stsd.client.transition")  # `-I -S`: the hook needs no site-packages
CLI_ENTRY = _ENTRY.format(module="stsd.cli")


def package_root() -> str:
    """The directory holding the `stsd` package, as imported: symlinks kept, so upgrades in place work."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def interpreter() -> str:
    """This interpreter's absolute path (a venv's own `python`, so its site-packages come along)."""
    executable = sys.executable
    if not executable or not os.path.isabs(executable):
        raise OSError(0, "cannot tell which Python runs stsd (sys.executable is not an absolute path)")
    return executable


def isolated_command(*args: str, python: str | None = None) -> list[str]:
    """argv running `stsd ARGS...` isolated (see the module docstring), by this interpreter or `python`."""
    return [python or interpreter(), "-I", "-c", CLI_ENTRY, package_root(), *args]


def reexec_isolated(argv: list[str], environ: dict[str, str] | None = None) -> None:
    """Replace this process with the same stsd command run isolated from `/` (with `environ`, if given),
    unless it already runs so. For the commands that become or control the key-holding daemon: the
    environment must be clean at exec, since /proc/PID/environ and every child see that one."""
    target = dict(os.environ) if environ is None else environ
    os.chdir("/")
    if sys.flags.isolated and target == dict(os.environ):
        return
    os.execve(interpreter(), isolated_command(*argv), target)
