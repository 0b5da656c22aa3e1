"""Start-up of the client commands SDKs and scripts run (`credential-process`, `env --json`, `exec`),
through the installed `stsd` command against a running daemon, and of the hook's client process for a
transition into a project, beside the floor every Python program pays: a bare `python -I -S -c pass` of
the same interpreter. Runs are interleaved (floor, each command, floor, ...) so that load on the machine
falls on all of them alike.

    .venv/bin/python benchmarks/client_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import VENV_BIN, LocalAws, Row, bench_world, running_daemon

SECTION = "Client"
PROJECT = 'profile = "alice-sts"\n'


def _time(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited {result.returncode}: {result.stderr.decode()[-300:]}")
    return elapsed


def measure(aws: LocalAws, repeat: int = 30) -> list[Row]:
    with bench_world(aws) as world, running_daemon(world):
        project = world.project("startup", PROJECT)
        stsd = str(VENV_BIN / "stsd")
        # The installed command as a user's PATH finds it; PYTHONPATH is the bench world's, not the user's.
        env = {k: v for k, v in world.env.items() if k != "PYTHONPATH"}
        floor = [sys.executable, "-I", "-S", "-c", "pass"]
        commands = {
            "credential-process PROFILE": [stsd, "credential-process", "alice-sts"],
            "env --json DIR": [stsd, "env", "--json", str(project)],
            "exec --dir DIR -- true": [stsd, "exec", "--dir", str(project), "--", "/bin/true"],
        }
        hook_argv, hook_env = _hook_transition(stsd, env, project)
        runs = {name: (argv, env, None) for name, argv in commands.items()}
        runs["hook transition (export bash)"] = (hook_argv, hook_env, project)
        times: dict[str, list[float]] = {name: [] for name in ("floor", *runs)}
        for argv, environ, cwd in ((floor, env, None), *runs.values()):
            _time(argv, environ, cwd)  # warm the page cache and the daemon's session
        for _ in range(repeat):
            times["floor"].append(_time(floor, env))
            for name, (argv, environ, cwd) in runs.items():
                times[name].append(_time(argv, environ, cwd))
    floor_ms = statistics.median(times["floor"]) * 1e3
    chunk = max(1, repeat // 5)  # five rounds of the interleaved runs: the run-to-run noise

    def rounds(name: str) -> tuple[float, ...]:
        return tuple(
            statistics.median(times["floor"][i : i + chunk]) / statistics.median(times[name][i : i + chunk])
            for i in range(0, repeat - chunk + 1, chunk)
        )

    return [
        Row(SECTION, f"start-up: stsd {name}", "ms", statistics.median(times[name]) * 1e3,
            "python -I -S -c pass", floor_ms, note="the floor every Python program pays",
            rounds=rounds(name), floor=True)
        for name in runs
    ]  # fmt: skip


def _hook_transition(stsd: str, env: dict[str, str], project: Path) -> tuple[list[str], dict[str, str]]:
    """The process the bash hook runs when the shell enters `project`, as `stsd hook bash` pins it."""
    script = f'eval "$({stsd} hook bash)"; ' + 'printf "%s\\n" "$_stsd_python" "$_stsd_root" "$_stsd_entry"'
    python, root, entry = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    hook_env = {**env, "PWD": str(project), "__STSD_FILE": str(project / ".stsd.toml"), "__STSD_PID": "1"}
    return [python, "-I", "-S", "-c", entry, root, "bash"], hook_env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    with LocalAws(own_process=True) as aws:
        rows = measure(aws, args.repeat)
    print("| command | stsd ms | floor ms | ratio |\n|---|---|---|---|")
    for row in rows:
        assert row.stsd is not None and row.peer is not None
        print(f"| {row.metric} | {row.stsd:.1f} | {row.peer:.1f} | {row.stsd / row.peer:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
