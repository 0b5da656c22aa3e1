"""Shell hook cost, stsd side by side with direnv on the same machine in the same run, as ratios.

Per prompt: the hook with nothing changed (inside a loaded project, same directory): the wall time of a
shell running the hook N times minus the same shell running it 0 times, divided by N (three rounds,
stsd and direnv alternating). Per transition, enter and leave apart: each shell interactive under a
pty, as a user has it, from `cd DIR` + Enter to the next prompt; stsd's and direnv's shells alternate
command by command (A B A B).
Run: .venv/bin/python benchmarks/shell_bench.py [--prompts 2000] [--transitions 40]
(also a section of `make bench`, through rows()).
Needs bash, zsh, fish and direnv (Debian packages); a missing one is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import bench_world, running_daemon

from stsd.demo.local_aws import LocalAws
from stsd.shells import hook_text


@dataclass(frozen=True)
class Tool:
    """How one tool hooks one shell: install code (a file to source) and the function a prompt runs."""

    name: str
    install_file: Path
    hook_call: str


@dataclass(frozen=True)
class ShellSyntax:
    name: str
    argv: tuple[str, ...]
    source: str  # format: path=
    loop: str  # format: n=, body=
    cd: str  # format: path=


SHELLS = (
    ShellSyntax(
        "bash",
        ("bash", "--norc", "--noprofile", "-c"),
        ". {path}",
        "for ((i=0;i<{n};i++)); do {body}; done",
        "cd {path}",
    ),
    ShellSyntax(
        "zsh", ("zsh", "-f", "-c"), ". {path}", "for ((i=0;i<{n};i++)); do {body}; done", "cd {path}"
    ),
    ShellSyntax(
        "fish", ("fish", "--no-config", "-c"), "source {path}", "for i in (seq {n}); {body}; end", "cd {path}"
    ),
)
DIRENV_HOOK_FUNCTION = {"bash": "_direnv_hook", "zsh": "_direnv_hook", "fish": "__direnv_export_eval"}


def run_shell(shell: ShellSyntax, script: str, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [*shell.argv, script],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def per_iteration(
    shell: ShellSyntax, tool: Tool, body: str, n: int, env: dict[str, str], cwd: Path, prelude: str
) -> float:
    """Seconds per loop iteration: (time with n iterations - time with 0) / n, best of 2 each."""

    def script(count: int) -> str:
        return "; ".join(
            [shell.source.format(path=tool.install_file), prelude, shell.loop.format(n=count, body=body)]
        )

    full = min(run_shell(shell, script(n), env, cwd) for _ in range(2))
    empty = min(run_shell(shell, script(0), env, cwd) for _ in range(2))
    return max(0.0, full - empty) / n


# The prompt each interactive shell prints; written split in the setup line so its echo never matches.
MARKER = "__stsd" + "bench__> "
PROMPT_SETUP = {
    "bash": "PS1='__stsd''bench__> '",
    "zsh": "PROMPT='__stsd''bench__> '",
    "fish": "function fish_prompt; printf '%s' '__stsd' 'bench__> '; end",
}
INTERACTIVE = {
    "bash": ["bash", "--norc", "--noprofile", "-i"],
    "zsh": ["zsh", "-f", "-i"],
    "fish": ["fish", "--no-config", "-i"],
}


class InteractiveShell:
    """A shell under a pty, as a user has it: a line typed, Enter, until the next prompt is printed."""

    def __init__(self, shell: ShellSyntax, tool: Tool, env: dict[str, str], cwd: Path) -> None:
        import pexpect

        argv = INTERACTIVE[shell.name]
        self.lines = 0
        self.child = pexpect.spawn(
            argv[0], argv[1:], env={**env, "TERM": "dumb"}, cwd=str(cwd), encoding="utf-8", timeout=60
        )
        self.child.delaybeforesend = None  # pexpect waits 50 ms before each send by default
        setup = shell.source.format(path=tool.install_file) + "; " + PROMPT_SETUP[shell.name]
        self.child.sendline(setup)
        self.child.expect_exact(MARKER)
        self.type("true")  # settle: the first prompt after setup has run every hook once

    def type(self, line: str) -> float:
        """Seconds from Enter to the next prompt. The line prints a numbered token first: fish redraws
        its prompt as a line is typed, so the marker alone could match before the line has even run."""
        self.lines += 1
        started = time.perf_counter()
        self.child.sendline(f"{line}; printf '%s%s\\n' __stsdline {self.lines}")
        self.child.expect_exact(f"__stsdline{self.lines}")
        self.child.expect_exact(MARKER)
        return time.perf_counter() - started

    def close(self) -> None:
        self.child.close(force=True)


def transitions_interleaved(
    shell: ShellSyntax, tools: tuple[Tool, Tool], project: Path, outside: Path, env: dict[str, str],
    count: int, rounds: int = 5,
) -> dict[str, dict[str, list[list[float]]]]:  # fmt: skip
    """Enter and leave times under a pty, by tool then by direction then by round, tools alternating."""
    shells = {tool.name: InteractiveShell(shell, tool, env, outside) for tool in tools}
    times = {tool.name: {"enter": [], "leave": []} for tool in tools}  # type: dict[str, dict[str, list[list[float]]]]
    try:
        for _ in range(rounds):
            for per_tool in times.values():
                per_tool["enter"].append([])
                per_tool["leave"].append([])
            for _ in range(max(1, count // rounds)):
                for name, interactive in shells.items():
                    times[name]["enter"][-1].append(interactive.type(f"cd {project}"))
                for name, interactive in shells.items():
                    times[name]["leave"][-1].append(interactive.type(f"cd {outside}"))
    finally:
        for interactive in shells.values():
            interactive.close()
    return times


@dataclass(frozen=True)
class Figure:
    """One measured figure, stsd against direnv (the shape benchmarks/run.py turns into its rows)."""

    metric: str
    unit: str
    stsd: float
    peer_name: str
    peer: float
    higher_is_better: bool = False
    note: str = ""
    rounds: tuple[float, ...] = ()  # direnv/stsd per interleaved round: the noise


def rows(quick: bool = False, prompts: int | None = None, transitions: int | None = None) -> list[Figure]:
    """Measure every installed shell; per prompt in microseconds, per transition in milliseconds."""
    prompts = prompts or (500 if quick else 2000)
    transitions = transitions or (10 if quick else 40)
    figures: list[Figure] = []
    if shutil.which("direnv") is None:
        raise SystemExit("direnv is not installed (apt-get install direnv): no comparison possible")
    with (
        LocalAws(own_process=True) as aws,
        bench_world(aws) as world,
        running_daemon(world),
        tempfile.TemporaryDirectory(prefix="stsd-bench-") as base,
    ):
        env = {**world.env, "STSD_QUIET": "1", "DIRENV_LOG_FORMAT": ""}
        env.pop("PYTHONPATH", None)  # the hook pins its own root; do not help it
        project = world.project("project", 'profile = "alice-sts"\n', allow=False)
        (project / ".envrc").write_text("export AWS_REGION=us-east-1\nexport DIRENV_PROBE=1\n")
        outside = world.home / "outside"
        outside.mkdir()
        world.stsd("allow", str(project))
        subprocess.run(["direnv", "allow", str(project)], env=env, check=True, capture_output=True)
        hooks = Path(base) / "hooks"
        hooks.mkdir()
        for shell in SHELLS:
            if shutil.which(shell.name) is None:
                print(f"{shell.name} is not installed: skipped", file=sys.stderr)
                continue
            stsd_file = hooks / f"stsd.{shell.name}"
            stsd_file.write_text(hook_text(shell.name))
            direnv_file = hooks / f"direnv.{shell.name}"
            direnv_hook = subprocess.run(
                ["direnv", "hook", shell.name], capture_output=True, text=True, check=True
            )
            direnv_file.write_text(direnv_hook.stdout)
            stsd = Tool("stsd", stsd_file, "_stsd_hook")
            direnv = Tool("direnv", direnv_file, DIRENV_HOOK_FUNCTION[shell.name])
            # Prompt with nothing changed: a loop in one `-c` shell (precise to microseconds),
            # stsd and direnv alternating round by round; direnv runs a process per prompt, so
            # fewer iterations give it the same precision.
            stsd_rounds, direnv_rounds = [], []
            for _ in range(3):
                stsd_rounds.append(
                    per_iteration(shell, stsd, stsd.hook_call, prompts, env, project, stsd.hook_call)
                )
                direnv_rounds.append(
                    per_iteration(shell, direnv, direnv.hook_call, max(50, prompts // 40), env, project, direnv.hook_call)
                )  # fmt: skip
            figures.append(
                Figure(
                    f"{shell.name}: prompt, nothing changed, median of 3",
                    "us",
                    statistics.median(stsd_rounds) * 1e6,
                    "direnv",
                    statistics.median(direnv_rounds) * 1e6,
                    rounds=tuple(d / s for s, d in zip(stsd_rounds, direnv_rounds) if s),
                )
            )
            times = transitions_interleaved(shell, (stsd, direnv), project, outside, env, transitions)
            notes = {
                "enter": "stsd: one client process + a daemon request",
                "leave": "stsd: no process, the restore code left at entry",
            }
            for direction in ("enter", "leave"):
                ours, theirs = times["stsd"][direction], times["direnv"][direction]
                figures.append(
                    Figure(
                        f"{shell.name}: {direction} a project (cd, Enter to next prompt, under a pty), median",
                        "ms",
                        statistics.median([t for one in ours for t in one]) * 1e3,
                        "direnv",
                        statistics.median([t for one in theirs for t in one]) * 1e3,
                        note=notes[direction],
                        rounds=tuple(
                            statistics.median(d) / statistics.median(o) for o, d in zip(ours, theirs)
                        ),
                    )
                )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000, help="hook runs per prompt measurement")
    parser.add_argument(
        "--transitions", type=int, default=40, help="enter+leave pairs per transition measurement"
    )
    args = parser.parse_args()
    logging.disable(logging.INFO)  # moto's request log
    figures = rows(prompts=args.prompts, transitions=args.transitions)
    print(
        f"| metric | stsd | direnv | direnv/stsd |   ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    print("|---|---|---|---|")
    for figure in figures:
        print(
            f"| {figure.metric} | {figure.stsd:.1f} {figure.unit} | {figure.peer:.1f} {figure.unit} "
            f"| {figure.peer / figure.stsd:.1f}x |"
        )
    print("\ndirenv/stsd > 1: stsd is cheaper. Prompt goal >= 50x; transition goal >= 1x.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
