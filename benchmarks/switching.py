"""Switching: time from "I want role X here" to credentials in a shell, stsd's cd transition against awsume
and `aws sts assume-role` + export. Every variant runs as one `bash -c` so shell start-up costs the same."""

from __future__ import annotations

from measure import (
    ROLE_SETUP,
    BenchWorld,
    LocalAws,
    Row,
    bench_world,
    interleaved,
    run_checked,
    running_daemon,
    timed_row,
)

from stsd.demo.local_aws import EXTERNAL_ID, ROLE_ARN, ROLE_NAME, USER_NAME

SECTION = "Switching"
CHECK = 'test -n "$AWS_SESSION_TOKEN" || exit 1'

# The by-hand way (aws sts assume-role, then the three values), exported into the shell instead of pasted into a file.
AWS_CLI_SWITCH = (
    f"set -- $(aws sts assume-role --profile {USER_NAME} --role-arn {ROLE_ARN} --role-session-name bench "
    f"--external-id {EXTERNAL_ID} --output text "
    "--query 'Credentials.[AccessKeyId,SecretAccessKey,SessionToken]') && "
    'export AWS_ACCESS_KEY_ID="$1" AWS_SECRET_ACCESS_KEY="$2" AWS_SESSION_TOKEN="$3"; ' + CHECK
)
AWSUME_SWITCH = f". awsume {ROLE_NAME} >/dev/null 2>&1; {CHECK}"


def _bash(world: BenchWorld, script: str) -> None:
    run_checked(["bash", "-c", script], world.env)


def _stsd_switch(directory: str) -> str:
    return f'cd {directory} && eval "$(stsd export bash)" && {CHECK}'


def measure(aws: LocalAws, *, repeat: int = 10, rounds: int = 5) -> list[Row]:
    per_round = max(1, repeat // rounds)
    with bench_world(aws) as world, running_daemon(world):
        # Cold: a role session the daemon does not hold yet (one AssumeRole inside the timing).
        cold_dirs = iter(
            [
                world.project(f"cold-{i}", f'{ROLE_SETUP}role_session_name = "bench-{i}"\n')
                for i in range(rounds * per_round)
            ]
        )
        # Warm: another shell entering a project whose session the daemon already holds.
        warm_dir = world.project("warm", ROLE_SETUP)
        _bash(world, _stsd_switch(str(warm_dir)))
        times = interleaved(
            {
                "aws-cli": lambda: _bash(world, AWS_CLI_SWITCH),
                "awsume": lambda: _bash(world, AWSUME_SWITCH),
                "cold": lambda: _bash(world, _stsd_switch(str(next(cold_dirs)))),
                "warm": lambda: _bash(world, _stsd_switch(str(warm_dir))),
            },
            rounds=rounds,
            per_round=per_round,
        )
    rows = []
    for label, ours in (("new role session (cold)", "cold"), ("session already held (warm)", "warm")):
        for peer, theirs in (("aws sts assume-role + export", "aws-cli"), ("awsume", "awsume")):
            rows.append(
                timed_row(
                    SECTION,
                    f"cd into project -> credentials, {label}, median",
                    times[ours],
                    peer,
                    times[theirs],
                )
            )
    return rows
