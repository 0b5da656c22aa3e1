"""The formats AWS accepts for the values stsd sends to STS (AWS-FACTS.md), checked before any call.
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
