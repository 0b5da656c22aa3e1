"""The AWS values stsd sends to STS or reads from ~/.aws/config, each with its pattern or range and the one
message saying what is expected (AWS's API reference), checked before any call. One definition for
project files, ~/.aws/config profiles, daemon settings, requests and the CLI: import a Rule, never copy
its pattern, bounds or words. Standard library only and no dataclasses: the client validates too."""

from __future__ import annotations

import re


class Rule:
    """What one AWS value must be: a string the whole of which matches `pattern`, a whole number in
    `low`..`high`, or one of `choices`. `expected` completes "KEY: expected ..." wherever it is refused;
    {low}, {high} and {choices} in it are filled in, so the words cannot drift from the check."""

    __slots__ = ("choices", "expected", "high", "low", "pattern")

    def __init__(
        self,
        expected: str,
        *,
        pattern: re.Pattern[str] | None = None,
        low: int | None = None,
        high: int | None = None,
        choices: tuple[str, ...] = (),
    ) -> None:
        self.expected = expected.format(low=low, high=high, choices=", ".join(choices))
        self.pattern = pattern
        self.low = low
        self.high = high
        self.choices = choices

    def accepts(self, value: object) -> bool:
        if self.pattern is not None:
            return isinstance(value, str) and self.pattern.fullmatch(value) is not None
        if self.choices:
            return value in self.choices
        assert self.low is not None and self.high is not None
        # bool is an int in Python; `duration_seconds = true` is a mistake, not 1.
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    @property
    def problem(self) -> str:
        """The refusal's words after the key: "expected ..."."""
        return f"expected {self.expected}"


# The characters IAM allows in names and STS in a RoleSessionName.
_NAME_CHARS = r"\w+=,.@-"
_ROLE_NAME = rf"[{_NAME_CHARS}]{{1,64}}"
SESSION_NAME_MAX_CHARS = 64

ROLE_ARN = Rule(
    "an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>",
    pattern=re.compile(
        rf"arn:aws(?:-[a-z]+)*:iam::\d{{12}}:role/(?:[{_NAME_CHARS}]+/)*{_ROLE_NAME}", re.ASCII
    ),
)
SESSION_NAME = Rule(
    f"2-{SESSION_NAME_MAX_CHARS} characters of letters, digits and +=,.@_-",
    pattern=re.compile(rf"[{_NAME_CHARS}]{{2,{SESSION_NAME_MAX_CHARS}}}", re.ASCII),
)
EXTERNAL_ID = Rule(
    "2-1224 characters of letters, digits and +=,.@:/_-",
    pattern=re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII),
)
MFA_SERIAL = Rule(
    "an MFA device ARN (arn:aws:iam::<account>:mfa/<name>) or serial number (9-256 characters)",
    pattern=re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII),
)
REGION = Rule('a region name like "us-east-1"', pattern=re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", re.ASCII))
# GetSessionToken TokenCode: the 6 digits a device shows.
MFA_CODE = Rule("the 6 digits your MFA device shows", pattern=re.compile(r"\d{6}", re.ASCII))
# A profile name of ~/.aws/config as botocore reads it: printable, no blanks at the ends, at most 128.
PROFILE_NAME = Rule(
    "a profile name of ~/.aws/config (1-128 printable characters, no spaces at the ends)",
    pattern=re.compile(r"[^\x00-\x20\x7f](?:[^\x00-\x1f\x7f]{0,126}[^\x00-\x20\x7f])?"),
)
# credential_source: the providers botocore can take a role's source credentials from.
CREDENTIAL_SOURCE = Rule(
    "one of {choices}",
    choices=("Environment", "Ec2InstanceMetadata", "EcsContainer"),
)

# AssumeRole DurationSeconds: the role's maximum (12 h at most) bounds it; STS's default is 1 h, and a role
# assumed with role credentials (chaining) gets 1 h at most whatever it asks.
ROLE_DURATION = Rule("whole seconds {low}..{high} (15 min to 12 h)", low=900, high=43200)
ROLE_DEFAULT_SECONDS = 3600
CHAINED_MAX_SECONDS = 3600

# GetSessionToken DurationSeconds for an IAM user (the root user is held to 900..3600 by STS itself).
SESSION_TOKEN_DURATION = Rule(
    "whole seconds {low}..{high} (what GetSessionToken allows an IAM user)", low=900, high=129600
)
SESSION_TOKEN_DEFAULT_SECONDS = 43200

_NOT_NAME_CHAR = re.compile(rf"[^{_NAME_CHARS}]", re.ASCII)


def session_name(text: str) -> str:
    """`text` made a RoleSessionName STS accepts: every other character a hyphen, at most 64, at least 2."""
    name = _NOT_NAME_CHAR.sub("-", text)[:SESSION_NAME_MAX_CHARS]
    return name if len(name) >= 2 else name.ljust(2, "-")
