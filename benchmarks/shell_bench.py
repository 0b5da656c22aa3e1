"""Shell hook cost, stsd side by side with direnv on the same machine in the same run, as ratios.

Per prompt: the hook with nothing changed (inside a loaded project, same directory). Per transition:
`cd` into the project and back out, hook run after each, averaged per transition. Each figure is the
wall time of a shell running the hook N times minus the same shell running it 0 times, divided by N.
Run: .venv/bin/python benchmarks/shell_bench.py [--prompts 2000] [--transitions 40]
(also a section of `make bench`, through rows()).
Needs bash, zsh, fish and direnv (Debian packages); a missing one is skipped with a note.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from stsd.demo.local_aws import LocalAws  # noqa: E402
from stsd.shells import hook_text  # noqa: E402
from tests.conftest import Daemon, make_world  # noqa: E402  (the test suite's real world and daemon)


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
    """Seconds per loop iteration: (time with n iterations - time with 0) / n, best of 3 each."""

    def script(count: int) -> str:
        return "; ".join(
            [shell.source.format(path=tool.install_file), prelude, shell.loop.format(n=count, body=body)]
        )

    full = min(run_shell(shell, script(n), env, cwd) for _ in range(3))
    empty = min(run_shell(shell, script(0), env, cwd) for _ in range(3))
    return max(0.0, full - empty) / n


def measure(
    shell: ShellSyntax,
    tool: Tool,
    project: Path,
    outside: Path,
    env: dict[str, str],
    prompts: int,
    transitions: int,
) -> tuple[float, float]:
    hook = tool.hook_call
    # Load the project once first, so the prompt loop measures "nothing changed".
    prompt = per_iteration(shell, tool, hook, prompts, env, project, prelude=hook)
    pair = "; ".join([shell.cd.format(path=project), hook, shell.cd.format(path=outside), hook])
    transition = per_iteration(shell, tool, pair, transitions, env, outside, prelude=hook) / 2
    return prompt, transition


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


def rows(quick: bool = False, prompts: int | None = None, transitions: int | None = None) -> list[Figure]:
    """Measure every installed shell; per prompt in microseconds, per transition in milliseconds."""
    prompts = prompts or (500 if quick else 2000)
    transitions = transitions or (10 if quick else 40)
    figures: list[Figure] = []
    if shutil.which("direnv") is None:
        raise SystemExit("direnv is not installed (apt-get install direnv): no comparison possible")
    with LocalAws() as aws, tempfile.TemporaryDirectory(prefix="stsd-bench-") as base:
        world = make_world(aws, Path(base))
        env = {**world.env, "STSD_QUIET": "1", "DIRENV_LOG_FORMAT": ""}
        env.pop("PYTHONPATH", None)  # the hook pins its own root; do not help it
        project = world.project("project", 'profile = "alice-sts"\n')
        (project / ".envrc").write_text("export AWS_REGION=us-east-1\nexport DIRENV_PROBE=1\n")
        outside = world.home / "outside"
        outside.mkdir()
        world.stsd("allow", str(project), check=True)
        subprocess.run(["direnv", "allow", str(project)], env=env, check=True, capture_output=True)
        daemon = Daemon(world)
        hooks = Path(base) / "hooks"
        hooks.mkdir()
        try:
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
                stsd_prompt, stsd_transition = measure(
                    shell, stsd, project, outside, env, prompts, transitions
                )
                # direnv runs a process per prompt: fewer iterations give the same precision.
                direnv_prompt, direnv_transition = measure(
                    shell, direnv, project, outside, env, max(50, prompts // 40), transitions
                )
                figures.append(
                    Figure(
                        f"{shell.name}: prompt, nothing changed",
                        "us",
                        stsd_prompt * 1e6,
                        "direnv",
                        direnv_prompt * 1e6,
                    )
                )
                figures.append(
                    Figure(
                        f"{shell.name}: transition (enter/leave average)",
                        "ms",
                        stsd_transition * 1e3,
                        "direnv",
                        direnv_transition * 1e3,
                        note="stsd enter = one client process + daemon request; leave = no process",
                    )
                )
        finally:
            daemon.stop()
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
