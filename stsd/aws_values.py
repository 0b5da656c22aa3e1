"""The formats AWS accepts for the values stsd sends to STS (AWS's API reference), checked before any call.
One definition for project files, ~/.aws/config profiles and daemon settings; use with `fullmatch`.
Standard library only: the client validates project files too."""

from __future__ import annotations

import re

_ROLE_NAME = r"[\w+=,.@-]{1,64}"
ROLE_ARN = re.compile(rf"arn:aws(?:-[a-z]+)*:iam::\d{{12}}:role/(?:[\w+=,.@-]+/)*{_ROLE_NAME}", re.ASCII)
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)
MFA_SERIAL = re.compile(r"[\w+=/:,.@-]{9,256}", re.ASCII)
REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", re.ASCII)
MFA_CODE = re.compile(r"\d{6}", re.ASCII)  # GetSessionToken TokenCode: the 6 digits a device shows

# GetSessionToken DurationSeconds for an IAM user (the root user is held to 900..3600 by STS itself).
SESSION_TOKEN_MIN_SECONDS = 900
SESSION_TOKEN_MAX_SECONDS = 129600
SESSION_TOKEN_DEFAULT_SECONDS = 43200
