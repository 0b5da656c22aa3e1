"""The one benchmark command (`make bench`): stsd against its peers on one machine in one run, against one
local STS; prints the machine, versions, the command and a Markdown table with ratios. Not a test."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import LocalAws, Row

SECTIONS = ("daemon", "client", "endpoint", "economy", "switching", "shell")


def _section(name: str) -> Callable[[LocalAws, bool], list[Row]]:
    """Each section is a module with measure(aws, ...); quick mode trims repetitions, not rows."""
    if name == "daemon":
        import daemon_bench

        return lambda aws, quick: daemon_bench.measure(
            aws, requests=300 if quick else 2000, seconds=1 if quick else 2
        )
    if name == "client":
        import client_startup

        return lambda aws, quick: client_startup.measure(aws, repeat=10 if quick else 30)
    if name == "endpoint":
        import endpoint_bench

        return lambda aws, quick: endpoint_bench.measure(
            aws, requests=300 if quick else 2000, seconds=1 if quick else 2
        )
    if name == "economy":
        import sts_economy

        return lambda aws, quick: sts_economy.measure(
            aws, shells=(1, 10) if quick else (1, 10, 100), window=90 if quick else 660
        )
    if name == "switching":
        import switching

        return lambda aws, quick: switching.measure(aws, repeat=3 if quick else 10)
    if name == "shell":
        return _shell_section
    raise ValueError(name)


# The shell benchmark runs in its own process: it starts its own local STS, and moto's state is global to
# a process (a second scenario in this one would collide with ours).
_SHELL_ROWS = (
    "import dataclasses, json, logging, sys\n"
    "logging.disable(logging.INFO)\n"
    "import shell_bench\n"
    "print(json.dumps([dataclasses.asdict(f) for f in shell_bench.rows(quick=sys.argv[1] == 'quick')]))\n"
)


def _shell_section(aws: LocalAws, quick: bool) -> list[Row]:
    """The shell benchmark (prompt and transition vs direnv) lives in shell_bench.py, owned by the shell
    layer; its figures become rows of this table."""
    result = subprocess.run(
        [sys.executable, "-c", _SHELL_ROWS, "quick" if quick else "full"],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"shell_bench failed: {result.stderr.strip()[-800:]}")
    sys.stderr.write(result.stderr)
    return [Row("Shell", **figure) for figure in json.loads(result.stdout.strip().splitlines()[-1])]


# -- the report --------------------------------------------------------------------------------------------
def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "?"


def _package(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_lines() -> list[str]:
    cpu = "?"
    memory = "?"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    return [
        f"- machine: {platform.platform()}; {cpu}; {os.cpu_count()} CPUs; {memory} RAM",
        f"- python {platform.python_version()}; stsd {_package('stsd')}; boto3 {_package('boto3')}; botocore {_package('botocore')}; "
        f"moto {_package('moto')} (local STS, IAM enforcement on)",
        f"- peers: {_first_line([str(Path(sys.executable).parent / 'aws'), '--version'])}; awsume {_package('awsume')}; {_first_line(['direnv', 'version'])and 'direnv ' + _first_line(['direnv', 'version'])}",
        f"- shells: {_first_line(['bash', '--version'])}; {_first_line(['zsh', '--version'])}; {_first_line(['fish', '--version'])}",
    ]  # fmt: skip


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("req/s", "calls", "clients"):
        return f"{value:,.0f} {unit}"
    return f"{value:,.2f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def _advantage(row: Row) -> str:
    ratio = row.advantage
    if ratio is None:
        return "n/a"
    if row.floor and row.stsd is not None and row.peer:
        spread = (
            f", rounds {1 / max(row.rounds):,.2f}-{1 / min(row.rounds):,.2f}" if len(row.rounds) >= 2 else ""
        )
        return f"{row.stsd / row.peer:,.2f}x the floor{spread}"
    if ratio == float("inf"):
        return "∞ (ahead)"
    shown = f"{ratio:,.2f}" if ratio < 2 else f"{ratio:,.1f}"  # near parity, the second decimal matters
    spread = f", rounds {min(row.rounds):,.2f}-{max(row.rounds):,.2f}" if len(row.rounds) >= 2 else ""
    return f"{shown}x ({row.verdict}{spread})"


def table(rows: list[Row]) -> str:
    lines = [
        "| section | metric | stsd | peer | peer value | stsd advantage |",
        "|---|---|---:|---|---:|---:|",
    ]
    for row in rows:
        metric = f"{row.metric} ({row.note})" if row.note else row.metric
        lines.append(
            f"| {row.section} | {metric} | {_value(row.stsd, row.unit)} | {row.peer_name} | "
            f"{_value(row.peer, row.unit)} | {_advantage(row)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only this section (repeatable)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (a smoke run, not for the note)"
    )
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    # Nothing here may reach real AWS, whatever the caller's environment holds.
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        del os.environ[name]
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"

    command = "python benchmarks/run.py" + ("".join(f" {shlex.quote(a)}" for a in (argv or sys.argv[1:])))
    print("# stsd benchmarks\n")
    print(f"- command: `{command}` (started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())})")
    print("\n".join(machine_lines()))
    print(
        "- stsd advantage = how many times better stsd is than the peer on that row (> 1x: stsd ahead); "
        "the local STS runs as its own process; rows are measured in interleaved rounds (stsd, peer, "
        'stsd, peer, ...) and a ratio is "even" when the rounds\' own ratios fall on both sides of 1x\n',
        flush=True,
    )

    rows: list[Row] = []
    failures: list[str] = []
    started = time.monotonic()
    with LocalAws(own_process=True) as aws:  # its own interpreter: not a GIL shared with the peers
        for name in args.only or SECTIONS:
            section_start = time.monotonic()
            try:
                rows.extend(_section(name)(aws, args.quick))
            except Exception as error:  # one broken section must not hide the others
                failures.append(f"- section {name} failed: {type(error).__name__}: {error}")
                traceback.print_exc(file=sys.stderr)
            print(f"<!-- {name}: {time.monotonic() - section_start:.0f} s -->", file=sys.stderr, flush=True)
    print(table(rows))
    verdicts = [r.verdict for r in rows]
    print(f"\n{len(rows)} rows; stsd ahead on {verdicts.count('ahead')}, even on {verdicts.count('even')}, "
          f"behind on {verdicts.count('BEHIND')}, against a floor {verdicts.count('floor')}, no peer on {verdicts.count('n/a')}; "
          f"total {time.monotonic() - started:.0f} s; load average at the end "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")  # fmt: skip
    if failures:
        print("\n" + "\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
