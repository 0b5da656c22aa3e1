"""The demo's daemon: a real `stsd serve` process inside the demo world, stopped for sure at the end."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from stsd.demo.errors import DemoError
from stsd.demo.world import DemoWorld

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class DemoDaemon:
    def __init__(self, world: DemoWorld) -> None:
        self.world = world
        self.log_path = world.root / "daemon.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> DemoDaemon:
        with self.log_path.open("wb") as log:
            # Its own session: a Ctrl-C meant for the demo shell must not kill the daemon under it.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stsd", "serve"],
                env=self.world.daemon_env,
                cwd=self.world.home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_until_listening()
        return self

    def _wait_until_listening(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(f"the demo daemon exited ({self.process.returncode}): {self.last_log_line()}")
            if _accepts_connections(self.world.socket):
                return
            time.sleep(0.05)
        raise DemoError(
            f"the demo daemon did not listen within {READY_TIMEOUT_S:.0f} s: {self.last_log_line()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"

    def last_log_line(self) -> str:
        return self.log_tail(lines=1)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _accepts_connections(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
