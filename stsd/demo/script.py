"""`stsd demo --script`: the guided steps run one by one in bash, each printed with its output and
whether it did what the guide says. The shell hook's work on `cd` is spelled out as `stsd export bash`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from typing import TextIO

from stsd.demo.local_aws import BUCKET, ROLE_NAME, USER_NAME
from stsd.demo.world import PROJECT_DIR_NAME, DemoWorld

STEP_TIMEOUT_S = 60.0
# What the hook runs in the prompt after `cd`; in a script there is no prompt, so it is run explicitly.
HOOK = 'eval "$(stsd export bash)"'
WHO_AM_I = "aws sts get-caller-identity --query Arn --output text"


@dataclass(frozen=True)
class Step:
    says: str  # what this step shows, in a sentence
    typed: tuple[str, ...]  # what a user types at the prompt
    code: str  # the bash code that does it here (typed commands plus the hook's work)
    succeeds: bool  # whether the last command should exit 0
    shows: str  # text the output must contain


def _cd_project_then(command: str) -> str:
    return f"cd {PROJECT_DIR_NAME} && {HOOK}; {command}"


STEPS = (
    Step(
        f"Outside any project the shell has {USER_NAME}'s long-term keys (AWS_PROFILE={USER_NAME}).",
        (WHO_AM_I,),
        WHO_AM_I,
        succeeds=True,
        shows=f":user/{USER_NAME}",
    ),
    Step(
        f"{USER_NAME} has no rights of her own: listing buckets is denied.",
        ("aws s3 ls",),
        "aws s3 ls",
        succeeds=False,
        shows="AccessDenied",
    ),
    Step(
        f"The project names the role {ROLE_NAME} in .stsd.toml.",
        (f"cat {PROJECT_DIR_NAME}/.stsd.toml",),
        f"cat {PROJECT_DIR_NAME}/.stsd.toml",
        succeeds=True,
        shows=f"role/{ROLE_NAME}",
    ),
    Step(
        "A new .stsd.toml is untrusted: entering the project hands out nothing.",
        (f"cd {PROJECT_DIR_NAME}", "aws s3 ls"),
        _cd_project_then("aws s3 ls"),
        succeeds=False,
        shows="AccessDenied",
    ),
    Step(
        "Trust it (an edit would make it untrusted again).",
        (f"stsd allow {PROJECT_DIR_NAME}",),
        f"stsd allow {PROJECT_DIR_NAME}",
        succeeds=True,
        shows="",
    ),
    Step(
        f"Inside the project the shell holds {ROLE_NAME}'s temporary credentials.",
        (f"cd {PROJECT_DIR_NAME}", WHO_AM_I),
        _cd_project_then(WHO_AM_I),
        succeeds=True,
        shows=f":assumed-role/{ROLE_NAME}/",
    ),
    Step(
        "... and the role may list the buckets.",
        (f"cd {PROJECT_DIR_NAME}", "aws s3 ls"),
        _cd_project_then("aws s3 ls"),
        succeeds=True,
        shows=BUCKET,
    ),
    Step(
        "The variables are short-lived: an ASIA key id, a session token and an expiry.",
        (f"cd {PROJECT_DIR_NAME}", "echo $AWS_ACCESS_KEY_ID $AWS_CREDENTIAL_EXPIRATION"),
        _cd_project_then('echo "${AWS_ACCESS_KEY_ID:0:8}... $AWS_CREDENTIAL_EXPIRATION"'),
        succeeds=True,
        shows="ASIA",
    ),
    Step(
        f"Leaving the project restores what was there before (AWS_PROFILE={USER_NAME}).",
        (f"cd {PROJECT_DIR_NAME}", "cd ..", WHO_AM_I),
        f"cd {PROJECT_DIR_NAME} && {HOOK}; cd .. && {HOOK}; {WHO_AM_I}",
        succeeds=True,
        shows=f":user/{USER_NAME}",
    ),
    Step(
        "Without a shell hook: run one command with the project's credentials.",
        (f"stsd exec --dir {PROJECT_DIR_NAME} -- aws s3 ls",),
        f"stsd exec --dir {PROJECT_DIR_NAME} -- aws s3 ls",
        succeeds=True,
        shows=BUCKET,
    ),
    Step(
        "The daemon: how it runs, its source, the role session every step above shared, and its time left.",
        ("stsd status",),
        "stsd status",
        succeeds=True,
        shows=ROLE_NAME,
    ),
)


@dataclass(frozen=True)
class StepResult:
    step: Step
    exit_code: int
    output: str

    @property
    def as_expected(self) -> bool:
        # A traceback is never what the guide promises, even where the step's outcome looks right.
        return (
            (self.exit_code == 0) == self.step.succeeds
            and self.step.shows in self.output
            and "Traceback (most recent call last)" not in self.output
        )


def run_step(step: Step, world: DemoWorld) -> StepResult:
    try:
        completed = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", step.code],
            cwd=world.home,
            env=world.shell_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=STEP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return StepResult(step, -1, f"(no answer within {STEP_TIMEOUT_S:.0f} s)")
    return StepResult(step, completed.returncode, completed.stdout.decode(errors="replace"))


def print_result(number: int, result: StepResult, out: TextIO) -> None:
    step = result.step
    print(f"\n[{number}/{len(STEPS)}] {step.says}", file=out)
    for command in step.typed:
        print(f"  $ {command}", file=out)
    for line in result.output.rstrip("\n").splitlines():
        print(f"    {line}", file=out)
    if result.as_expected:
        verdict = "ok"
    else:
        wanted = "succeed" if step.succeeds else "fail"
        verdict = f"UNEXPECTED: should {wanted}" + (f" and show {step.shows!r}" if step.shows else "")
    print(f"  -> {verdict}", file=out)


def run_script(world: DemoWorld, out: TextIO = sys.stdout) -> bool:
    """Run every step; True when each did what the guide says."""
    results = []
    for number, step in enumerate(STEPS, start=1):
        result = run_step(step, world)
        print_result(number, result, out)
        out.flush()
        results.append(result)
    failed = [r for r in results if not r.as_expected]
    print(file=out)
    if failed:
        print(f"{len(failed)} of {len(results)} steps did not go as the guide says.", file=out)
    else:
        print(f"All {len(results)} steps went as the guide says.", file=out)
    return not failed
