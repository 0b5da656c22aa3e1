"""`stsd install-service [--sandbox] [--uninstall]`: put the systemd user units in
$XDG_CONFIG_HOME/systemd/user/ with an ExecStart for this installation, or take them away again."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from stsd import launch

SERVICE = "stsd.service"
SOCKET = "stsd.socket"
SANDBOX_DROP_IN = Path("stsd.service.d") / "sandbox.conf"
# The first line of every file we write: it names us and hashes the rest, so we can tell our own
# untouched file (safe to replace or remove) from one the user edited (never overwritten).
_STAMP = re.compile(r"^# Installed by `stsd install-service` \(sha256 ([0-9a-f]{64})\)\. ")
_STAMP_TEXT = (
    "# Installed by `stsd install-service` (sha256 {}). Customise in a drop-in: systemctl --user edit\n"
)
_DEFAULT_EXEC_START = "ExecStart=/usr/bin/stsd serve"


class InstallError(Exception):
    """Installing or removing cannot go ahead; the message says what to do."""


@dataclass(frozen=True)
class UnitFile:
    relative_path: Path  # under the unit directory
    body: str

    def content(self) -> str:
        digest = hashlib.sha256(self.body.encode()).hexdigest()
        return _STAMP_TEXT.format(digest) + self.body


def user_unit_dir() -> Path:
    """Where systemd looks for a user's own units: $XDG_CONFIG_HOME/systemd/user."""
    config = os.environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config and os.path.isabs(config) else Path.home() / ".config"
    return base / "systemd" / "user"


def shipped_units_dir() -> Path:
    """The unit templates: package data in an installed wheel, the repository's systemd/ in a checkout."""
    packaged = Path(__file__).resolve().parent / "systemd"
    if (packaged / SERVICE).is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "systemd"


def _quote_exec_argument(argument: str) -> str:
    """One ExecStart argument: '%' and '$' would be expanded by systemd, spaces would split it."""
    escaped = argument.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[\w/.+:@=,-]+", escaped):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exec_start_line(python: str | None = None) -> str:
    """Run the daemon with the interpreter that runs this stsd, by its unresolved path, so a venv or
    pipx environment stays in effect and no PATH lookup can pick another stsd; isolated (stsd.launch), so
    no PYTHONPATH in the user manager's environment can supply a module."""
    interpreter = python or sys.executable
    if not interpreter or not os.path.isabs(interpreter):
        raise InstallError("cannot tell which Python runs stsd; run install-service with that Python")
    arguments = launch.isolated_command("serve", python=interpreter)
    return "ExecStart=" + " ".join(_quote_exec_argument(a) for a in arguments)


def describe_installation(python: str | None = None) -> str:
    interpreter = python or sys.executable
    if "/pipx/venvs/" in interpreter:
        return f"pipx environment ({Path(interpreter).parent.parent})"
    if sys.prefix != sys.base_prefix:
        return f"virtual environment ({sys.prefix})"
    return f"system Python ({interpreter})"


def units_to_install(sandbox: bool, python: str | None = None) -> list[UnitFile]:
    source = shipped_units_dir()
    try:
        service = (source / SERVICE).read_text()
        socket_unit = (source / SOCKET).read_text()
        sandbox_conf = (source / "sandbox.conf").read_text()
    except OSError as error:
        raise InstallError(f"stsd's unit files are missing ({error}); reinstall stsd") from None
    if _DEFAULT_EXEC_START not in service:
        raise InstallError(f"{source / SERVICE} has no '{_DEFAULT_EXEC_START}' line; reinstall stsd")
    service = service.replace(_DEFAULT_EXEC_START, exec_start_line(python))
    units = [UnitFile(Path(SERVICE), service), UnitFile(Path(SOCKET), socket_unit)]
    if sandbox:
        units.append(UnitFile(SANDBOX_DROP_IN, sandbox_conf))
    return units


def written_by_us_untouched(path: Path) -> bool:
    text = path.read_text(errors="replace")
    first_line, _, body = text.partition("\n")
    match = _STAMP.match(first_line + "\n")
    return match is not None and hashlib.sha256(body.encode()).hexdigest() == match.group(1)


def _refuse_if_edited(path: Path) -> None:
    if path.exists() and not written_by_us_untouched(path):
        raise InstallError(
            f"{path} was written or edited by someone else; move it away first "
            "(put changes in a drop-in: systemctl --user edit stsd.service)"
        )


def install(unit_dir: Path, sandbox: bool, python: str | None = None) -> list[Path]:
    units = units_to_install(sandbox, python)
    targets = [unit_dir / unit.relative_path for unit in units]
    # Check everything before writing anything, so a refusal leaves no half-installed set.
    for target in targets:
        _refuse_if_edited(target)
    if not sandbox:
        _refuse_if_edited(unit_dir / SANDBOX_DROP_IN)
    for unit, target in zip(units, targets):
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(unit.content())
        temporary.replace(target)
    if not sandbox:
        _remove(unit_dir / SANDBOX_DROP_IN)  # re-running without --sandbox turns the sandbox off
    return targets


def uninstall(unit_dir: Path) -> list[Path]:
    # `systemctl disable` reads the unit's [Install] section: once the file is gone it cannot undo the
    # enablement any more, so that has to happen first.
    enabled = unit_dir / "sockets.target.wants" / SOCKET
    if enabled.is_symlink() or enabled.exists():
        raise InstallError("stsd.socket is enabled; first run: systemctl --user disable --now stsd.socket")
    candidates = [unit_dir / SERVICE, unit_dir / SOCKET, unit_dir / SANDBOX_DROP_IN]
    for path in candidates:
        _refuse_if_edited(path)
    return [path for path in candidates if _remove(path)]


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    if path.parent.name.endswith(".d"):
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only if empty: other drop-ins of the user's stay
    return True


def cmd_install_service(args: argparse.Namespace) -> int:
    unit_dir = user_unit_dir()
    try:
        if args.uninstall:
            removed = uninstall(unit_dir)
        else:
            written = install(unit_dir, sandbox=getattr(args, "sandbox", False))
    except (InstallError, OSError) as error:
        print(f"stsd: {error}", file=sys.stderr)
        return 1
    if args.uninstall:
        if not removed:
            print(f"No stsd units in {unit_dir}; nothing to remove.")
            return 0
        for path in removed:
            print(f"removed {path}")
        print("\nNow run: systemctl --user daemon-reload")
        return 0
    for path in written:
        print(f"wrote {path}")
    if shutil.which("systemctl") is None:
        print(
            "\nsystemctl is not installed here: without systemd, let clients start the daemon or run `stsd start`."
        )
    print(f"\nExecStart uses the {describe_installation()}.")
    print("If a daemon started with `stsd start` is running, stop it first: stsd stop")
    print("Then enable socket activation (the daemon starts on the first request):")
    print("  systemctl --user daemon-reload")
    print("  systemctl --user enable --now stsd.socket")
    print("Logs: journalctl --user -u stsd.service")
    return 0
