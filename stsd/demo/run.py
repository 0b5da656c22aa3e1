"""`stsd demo [--script] [--shell SHELL]`: an embedded local STS/IAM/S3, a throwaway HOME, a real daemon,
then an interactive shell with the hook (or the scripted steps). Everything is removed at the end."""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from stsd.demo.errors import DemoError


class _Stopped(Exception):
    """SIGTERM or SIGHUP arrived: unwind so the daemon is stopped and the temp dir removed."""


@contextmanager
def _unwind_on_termination() -> Iterator[None]:
    def stop(signum: int, _frame: object) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _uninterruptible() -> Iterator[None]:
    """For the clean-up: a second Ctrl-C or SIGTERM must not leave the daemon running half-stopped."""
    signums = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        import moto.server  # noqa: F401  (the optional extra; imported here only to check it is there)
    except ImportError:
        print(
            "stsd: the demo needs its extra; in a checkout run: make demo (or: pip install '.[demo]' into stsd's venv)",
            file=sys.stderr,
        )
        return 1

    scripted = bool(args.script)
    if not scripted and not sys.stdin.isatty():
        # `make demo` in CI or piped: nobody to type, so show the same steps non-interactively.
        print("stdin is not a terminal: running the scripted demo (stsd demo --script).")
        scripted = True
    try:
        with _unwind_on_termination():
            return _run(scripted, args.shell)
    except DemoError as error:
        print(f"stsd: {error}", file=sys.stderr)
        return 1
    except _Stopped:
        return 143


def _run(scripted: bool, shell: str | None) -> int:
    from stsd.demo.daemon import DemoDaemon
    from stsd.demo.interactive import default_shell, guide, run_shell
    from stsd.demo.local_aws import LocalAws
    from stsd.demo.script import run_script
    from stsd.demo.world import create_world

    # moto's server logs every request through werkzeug; the demo's output is the steps, not those.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    print("Starting a local STS/IAM/S3 with alice, role alice-sts and a bucket ...", flush=True)
    with LocalAws() as aws:
        world = create_world(aws)
        if shutil.which("aws", path=world.shell_env["PATH"]) is None:
            world.remove()
            raise DemoError(
                "the demo needs the AWS CLI of its extra; in a checkout run: make demo (or: pip install '.[demo]' into stsd's venv)"
            )
        daemon = DemoDaemon(world)
        try:
            daemon.start()
            if scripted:
                print(f"Daemon pid {daemon.pid}; world in {world.root} (removed at the end).")
                if run_script(world):
                    return 0
                # The log goes with the temp dir: show its end while it still exists.
                print(f"\nLast lines of the daemon's log:\n{daemon.log_tail()}")
                return 1
            print(guide(world, aws.endpoint, daemon))
            run_shell(world, shell or default_shell())
            return 0
        finally:
            with _uninterruptible():
                daemon.stop()
                world.remove()
            print("Demo over: daemon stopped, temporary files removed.", flush=True)
